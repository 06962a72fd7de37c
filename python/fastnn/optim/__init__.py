"""Optimizers with torch.optim's names, defaults and update rules, over ``fastnn.nn.Parameter``.

One native call updates every parameter of a group (per dtype) in one pass over memory
(``fastnn/optim_math.h`` holds the rules). Beyond torch: ``grad_scale`` (gradients are
divided by it inside the kernel) and ``skip_if_nonfinite`` (a step whose gradients hold
inf or NaN changes nothing and ``step()`` returns False), both per-group options.
``state_dict_to_arrays`` / ``state_dict_from_arrays`` turn a state dict into a flat dict
of arrays that ``numpy.savez`` writes and ``numpy.load(..., allow_pickle=False)`` reads.
"""

import math
import numbers
from collections import defaultdict

import numpy as np

from .. import _backend
from ..nn import Parameter
from ..nn.module import array_module
from ..nn.parameter import on_gpu
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "lr_scheduler",
           "state_dict_to_arrays", "state_dict_from_arrays"]


def _number(group, key):
    v = group[key]
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{key} must be a real number, got {type(v).__name__}")
    return float(v)


def _at_least_zero(group, *keys):
    for key in keys:
        v = _number(group, key)
        if not v >= 0:
            raise ValueError(f"Invalid {key} value: {v} ({key} must be >= 0)")


def _common_checks(group):
    _at_least_zero(group, "lr")
    scale = group["grad_scale"]
    if scale is not None and not (_number(group, "grad_scale") > 0 and math.isfinite(scale)):
        raise ValueError(f"Invalid grad_scale value: {scale} (grad_scale must be a finite number > 0, or None)")


def _bad_grad(where, g, d):
    if on_gpu(d) and not on_gpu(g):
        raise TypeError(f"{where} must be a cupy.ndarray (the parameter is on the GPU), got {type(g).__name__}")
    if not on_gpu(d) and not isinstance(g, np.ndarray):
        raise TypeError(f"{where} must be a numpy.ndarray, got {type(g).__name__}")
    if g.dtype != d.dtype:
        raise TypeError(f"{where} has dtype {g.dtype} but the parameter has {d.dtype}")
    if g.shape != d.shape:
        raise ValueError(f"{where} has shape {g.shape} but the parameter has {d.shape}")
    raise ValueError(f"{where} must be C-contiguous")


def _all_finite(grads):
    """No gradient holds inf or NaN (for GPU arrays: reads the device flag, a sync)."""
    finite = _backend.select("optim_all_finite", grad=grads[0]).optim_all_finite(grads)
    return bool(finite)


class Optimizer:
    """Base class: parameter groups, ``step``, ``zero_grad``, state dicts.

    A subclass names its rule (``_rule``), checks a group's hyper-parameters
    (``_check_group``) and turns a group into the native call's arguments (``_prepare``)."""

    _rule = None
    _counts_steps = True  # state["step"] (every rule but SGD)

    def __init__(self, params, defaults):
        self.defaults = dict(defaults, grad_scale=defaults.get("grad_scale", 1.0),
                             skip_if_nonfinite=defaults.get("skip_if_nonfinite", False))
        self.state = defaultdict(dict)  # Parameter -> {name: array or step}, as torch
        self.param_groups = []
        if isinstance(params, (Parameter, np.ndarray)):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Parameters or dicts, but got {type(params).__name__}")
        params = list(params)
        if len(params) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])

    def add_param_group(self, param_group):
        """Add a group (a dict with 'params' and any per-group hyper-parameters)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but "
                            "the ordering of parameters in sets will change between runs. "
                            "Please use a list instead.")
        elif params is None:
            raise ValueError("param_group must have a 'params' entry")
        params = list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError("optimizer can only optimize fastnn.nn.Parameter objects, but one of "
                                f"the params is {type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter appears more than once in the group")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group):
        _common_checks(group)

    def zero_grad(self, set_to_none=True):
        """Drop every gradient (set_to_none=True, torch's default) or fill them with 0."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad.fill(0)

    def step(self, closure=None):
        """One update of every parameter that has a gradient and requires_grad (the
        others, and their state, are left untouched, as torch does). Returns True, or False
        when a group with skip_if_nonfinite found inf or NaN in a gradient: then no
        parameter, state or step count changed. A closure, if given, is called first
        (to recompute the gradients); its loss is not returned."""
        if closure is not None:
            closure()
        plan = []
        for gi, group in enumerate(self.param_groups):
            by_dtype = {}
            for pi, p in enumerate(group["params"]):
                g, d = p._grad, p._data  # noqa: SLF001 (hot loop: no property calls)
                if g is None or not p.requires_grad:  # left untouched, as torch does
                    continue
                if not ((isinstance(g, np.ndarray) or on_gpu(g)) and on_gpu(g) == on_gpu(d)
                        and g.dtype == d.dtype and g.shape == d.shape and g.flags.c_contiguous):
                    _bad_grad(f"param_groups[{gi}]['params'][{pi}].grad", g, d)
                by_dtype.setdefault(d.dtype, []).append(p)
            self._check_group(group)
            plan.append((group, list(by_dtype.values())))
        calls = [(group, ps) for group, batches in plan for ps in batches]
        if len(calls) == 1:  # the kernel scans the gradients itself, in the same thread team
            group, ps = calls[0]
            return self._step_group(group, ps, bool(group["skip_if_nonfinite"]))
        for group, ps in calls:
            if group["skip_if_nonfinite"] and not _all_finite([p._grad for p in ps]):
                return False
        for group, ps in calls:
            self._step_group(group, ps, False)
        return True

    def _step_group(self, group, ps, check_finite):
        """One native call; False (and nothing changed) if check_finite found inf/NaN."""
        states = [self.state.get(p, {}) for p in ps]
        fresh = []  # (parameter, state name, new array): kept once the kernel ran
        state, scalars, has_state, hyper = self._prepare(group, ps, states, fresh)
        hyper.update(lr=float(group["lr"]), weight_decay=float(group["weight_decay"]),
                     maximize=bool(group["maximize"]),
                     grad_scale=1.0 if group["grad_scale"] is None else float(group["grad_scale"]))
        params = [p._data for p in ps]
        backend = _backend.select("optim_step", param=params[0])
        applied = backend.optim_step(self._rule, params, [p._grad for p in ps], state, scalars, has_state,
                                     hyper, check_finite)
        # GPU: a device flag (None without the check); reading it waits for the GPU, which
        # only a step with skip_if_nonfinite asks for (the step counts live on the host)
        if applied is not None and not bool(applied):
            return False
        for p, key, value in fresh:
            self.state[p][key] = value
        if self._counts_steps:
            for p in ps:
                st = self.state[p]
                st["step"] = st.get("step", 0) + 1
        return True

    def _prepare(self, group, ps, states, fresh):
        """The native call's rule-specific arguments, all named: the state arrays the
        update uses ({name: [array per parameter]}), the per-parameter scalars ({name:
        [float per parameter]}), has_state flags (SGD) and the hyper-parameters besides
        lr, weight_decay, maximize and grad_scale. New state arrays go to ``fresh``."""
        raise NotImplementedError

    @staticmethod
    def _state(st, key, p, fresh, fill=0.0):
        """st[key], or a new array of `fill` (added to the state after the step)."""
        if key in st:
            return st[key]
        value = array_module(p.data).full(p.shape, fill, dtype=p.dtype)
        fresh.append((p, key, value))
        return value

    # ------------------------------------------------------------------ state dicts

    def state_dict(self):
        """torch's layout: {'state': {index: {name: array or step}}, 'param_groups':
        [group with 'params' as indices]}. Parameters are numbered in group order.
        The arrays are the live state (copy them to keep a snapshot)."""
        index, groups = {}, []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {}
        for group in self.param_groups:
            for p in group["params"]:
                if self.state.get(p):
                    state[index[id(p)]] = dict(self.state[p])
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore from ``state_dict()`` or its flat array form (``state_dict_to_arrays``,
        e.g. a ``numpy.load`` result). Arrays are copied into the parameters' dtype."""
        if "state" not in state_dict or "param_groups" not in state_dict:
            state_dict = state_dict_from_arrays(state_dict)
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        by_index = {}
        for group, sg in zip(self.param_groups, saved):
            if len(sg["params"]) != len(group["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match "
                                 "the size of optimizer's group")
            by_index.update(zip(sg["params"], group["params"]))
        new_state = defaultdict(dict)
        for i, st in state_dict["state"].items():
            p = by_index.get(int(i))
            if p is None:
                raise ValueError(f"loaded state dict has state for parameter {i}, which no group holds")
            entry = {}
            for key, v in st.items():
                if key == "step":
                    entry[key] = int(v)
                    continue
                v = v if on_gpu(v) else np.asarray(v)
                if v.shape != p.shape:
                    raise ValueError(f"state of parameter {i}: {key} has shape {v.shape} but the "
                                     f"parameter has {p.shape}")
                entry[key] = array_module(p.data).array(v, dtype=p.dtype, order="C", copy=True)
            new_state[p] = entry
        new_groups = []
        for group, sg in zip(self.param_groups, saved):
            ng = dict(self.defaults)
            ng.update({k: v for k, v in sg.items() if k != "params"})
            ng["params"] = group["params"]
            self._check_group(ng)
            new_groups.append(ng)
        self.state = new_state
        self.param_groups[:] = new_groups


def state_dict_to_arrays(state_dict):
    """A state dict (optimizer's) as a flat dict of NumPy arrays, keys
    'state.<i>.<name>' and 'param_groups.<g>.<key>': ``numpy.savez(f, **arrays)``."""
    out = {}
    for i, st in state_dict["state"].items():
        for key, v in st.items():
            out[f"state.{i}.{key}"] = np.asarray(v)
    for g, group in enumerate(state_dict["param_groups"]):
        for key, v in group.items():
            if v is None:  # grad_scale=None
                continue
            out[f"param_groups.{g}.{key}"] = np.asarray(v, dtype=np.int64) if key == "params" else np.asarray(v)
    return out


def state_dict_from_arrays(arrays):
    """The inverse of ``state_dict_to_arrays`` (takes any mapping, e.g. numpy.load's)."""
    state, groups = {}, {}
    for name in arrays.keys():
        kind, idx, key = name.split(".", 2)
        v = np.asarray(arrays[name])
        if kind == "state":
            state.setdefault(int(idx), {})[key] = v
        elif kind == "param_groups":
            if key == "params":
                v = [int(x) for x in v.reshape(-1)]
            elif v.ndim == 0:
                v = v.item()
            else:
                v = tuple(v.tolist())
            groups.setdefault(int(idx), {})[key] = v
        else:
            raise ValueError(f"unexpected key {name!r} in a flat optimizer state dict")
    return {"state": state, "param_groups": [groups[g] for g in sorted(groups)]}


class SGD(Optimizer):
    """torch.optim.SGD: momentum (buffer starts as the first gradient), dampening,
    nesterov, weight_decay (L2), maximize. State: 'momentum_buffer' (momentum != 0)."""

    _rule = "sgd"
    _counts_steps = False

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False, grad_scale=1.0, skip_if_nonfinite=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize, grad_scale=grad_scale,
                                      skip_if_nonfinite=skip_if_nonfinite))

    def _check_group(self, group):
        _common_checks(group)
        _at_least_zero(group, "momentum", "weight_decay")
        _number(group, "dampening")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening "
                             f"(nesterov=True, momentum={group['momentum']}, "
                             f"dampening={group['dampening']})")

    def _prepare(self, group, ps, states, fresh):
        bufs, has = [], []
        if group["momentum"] != 0:
            for p, st in zip(ps, states):
                has.append("momentum_buffer" in st)
                bufs.append(st["momentum_buffer"] if has[-1] else array_module(p.data).empty_like(p.data))
                if not has[-1]:  # the kernel fills it with the gradient
                    fresh.append((p, "momentum_buffer", bufs[-1]))
        hyper = dict(momentum=float(group["momentum"]), dampening=float(group["dampening"]),
                     nesterov=bool(group["nesterov"]))
        return ({"momentum_buffer": bufs} if group["momentum"] != 0 else {}), {}, has, hyper


class Adagrad(Optimizer):
    """torch.optim.Adagrad: lr_decay, weight_decay (L2), initial_accumulator_value, eps,
    maximize. State: 'step', 'sum'."""

    _rule = "adagrad"

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, *, maximize=False, grad_scale=1.0, skip_if_nonfinite=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize, grad_scale=grad_scale,
                                      skip_if_nonfinite=skip_if_nonfinite))

    def _check_group(self, group):
        _common_checks(group)
        _at_least_zero(group, "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def _prepare(self, group, ps, states, fresh):
        sums, coef = [], []
        lr, lr_decay = float(group["lr"]), float(group["lr_decay"])
        for p, st in zip(ps, states):
            sums.append(self._state(st, "sum", p, fresh, float(group["initial_accumulator_value"])))
            coef.append(-(lr / (1 + st.get("step", 0) * lr_decay)))  # torch: step - 1 after its += 1
        return {"sum": sums}, {"neg_clr": coef}, [], dict(eps=float(group["eps"]))


class RMSprop(Optimizer):
    """torch.optim.RMSprop: alpha, eps, weight_decay (L2), momentum, centered, maximize.
    State: 'step', 'square_avg', 'momentum_buffer' (momentum > 0), 'grad_avg' (centered)."""

    _rule = "rmsprop"

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False, grad_scale=1.0, skip_if_nonfinite=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize,
                                      grad_scale=grad_scale, skip_if_nonfinite=skip_if_nonfinite))

    def _check_group(self, group):
        _common_checks(group)
        _at_least_zero(group, "eps", "momentum", "weight_decay", "alpha")

    def _prepare(self, group, ps, states, fresh):
        names = ["square_avg"] + (["momentum_buffer"] if group["momentum"] > 0 else []) + \
            (["grad_avg"] if group["centered"] else [])
        state = {name: [self._state(st, name, p, fresh) for p, st in zip(ps, states)] for name in names}
        hyper = dict(alpha=float(group["alpha"]), eps=float(group["eps"]),
                     momentum=float(group["momentum"]), centered=bool(group["centered"]))
        return state, {}, [], hyper


class Adam(Optimizer):
    """torch.optim.Adam: betas, eps, weight_decay (L2 added to the gradient, or
    decoupled as AdamW with decoupled_weight_decay=True), amsgrad, maximize.
    State: 'step', 'exp_avg', 'exp_avg_sq', 'max_exp_avg_sq' (amsgrad)."""

    _rule = "adam"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False, grad_scale=1.0,
                 skip_if_nonfinite=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      grad_scale=grad_scale, skip_if_nonfinite=skip_if_nonfinite))

    def _check_group(self, group):
        _common_checks(group)
        _at_least_zero(group, "eps", "weight_decay")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            if isinstance(b, bool) or not isinstance(b, numbers.Real):
                raise TypeError(f"betas[{i}] must be a real number, got {type(b).__name__}")
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b} (betas must be in [0, 1))")

    def _prepare(self, group, ps, states, fresh):
        names = ["exp_avg", "exp_avg_sq"] + (["max_exp_avg_sq"] if group["amsgrad"] else [])
        state = {name: [self._state(st, name, p, fresh) for p, st in zip(ps, states)] for name in names}
        neg_step, bc2_sqrt, coefs = [], [], {}
        lr = float(group["lr"])
        beta1, beta2 = (float(b) for b in group["betas"])
        for st in states:
            step = st.get("step", 0) + 1
            if step not in coefs:  # torch's float64 host math, once per distinct step count
                coefs[step] = (-(lr / (1 - beta1 ** step)), (1 - beta2 ** step) ** 0.5)
            neg_step.append(coefs[step][0])
            bc2_sqrt.append(coefs[step][1])
        hyper = dict(beta1=beta1, beta2=beta2, eps=float(group["eps"]), amsgrad=bool(group["amsgrad"]),
                     decoupled=bool(group["decoupled_weight_decay"]))
        return state, {"neg_step_size": neg_step, "bias_correction2_sqrt": bc2_sqrt}, [], hyper


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (p *= 1 - lr * weight_decay
    before the update), default weight_decay=1e-2."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, grad_scale=1.0, skip_if_nonfinite=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, grad_scale=grad_scale,
                         skip_if_nonfinite=skip_if_nonfinite)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
