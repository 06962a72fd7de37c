"""Optimizers with torch.optim's names, defaults and update rules, over ``fastnn.nn.Parameter``.

One native call per ``step()`` updates every parameter of every group: it checks all of
them first (a refused step changes no parameter, state array or step count in any
group), runs one multi-tensor kernel call per group (per dtype), each a single pass over
memory (``fastnn/optim_math.h`` holds the rules), and then records the step counts, with
no Python code running in between. Beyond torch: ``grad_scale`` (gradients are divided
by it inside the kernel) and ``skip_if_nonfinite`` (a step whose gradients hold inf or
NaN changes nothing and ``step()`` returns False), both per-group options. Stricter than
torch: flags must be bools, hyper-parameters finite and in range, unknown group keys are
errors. ``state_dict_to_arrays`` / ``state_dict_from_arrays`` turn a state dict into a
flat dict of arrays that ``numpy.savez`` writes and ``numpy.load(..., allow_pickle=False)``
reads, every group value exactly.
"""

import ast
import math
import numbers
from collections import defaultdict
from collections.abc import Mapping

import numpy as np

from .. import _backend, _cpu
from ..nn import Parameter
from ..nn.module import array_module
from ..nn.parameter import on_gpu
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Adadelta", "lr_scheduler",
           "state_dict_to_arrays", "state_dict_from_arrays"]


# ------------------------------------------------------------------ group value checks
# Each takes where the value is (group index and key, for messages) and the value.

def _where(index, key):
    return f"param_groups[{index}][{key!r}]"


def _real(index, key, v):
    if type(v) is not float and type(v) is not int:  # (the common case, without isinstance)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"{_where(index, key)} must be a real number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{_where(index, key)} must be a finite number, got {v!r}")
    return v


def _at_least_zero(index, key, v):
    if not _real(index, key, v) >= 0:
        raise ValueError(f"{_where(index, key)} must be >= 0, got {float(v)!r}")


def _unit_interval(index, key, v):
    if not 0 <= _real(index, key, v) <= 1:
        raise ValueError(f"{_where(index, key)} must be in [0, 1], got {float(v)!r}")


def _flag(index, key, v):
    if v is not True and v is not False and not isinstance(v, np.bool_):
        raise TypeError(f"{_where(index, key)} must be a bool, got {type(v).__name__} {v!r}")


def _grad_scale(index, key, v):
    if v is not None and not _real(index, key, v) > 0:
        raise ValueError(f"{_where(index, key)} must be a finite number > 0, or None, got {float(v)!r}")


def _betas(index, key, v):
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise ValueError(f"{_where(index, key)} must be a pair (beta1, beta2), got {v!r}")
    for i, b in enumerate(v):
        if type(b) is not float and (isinstance(b, (bool, np.bool_)) or not isinstance(b, numbers.Real)):
            raise TypeError(f"{_where(index, key)}[{i}] must be a real number, got {type(b).__name__}")
        if not 0 <= float(b) < 1:
            raise ValueError(f"{_where(index, key)}[{i}] must be in [0, 1), got {float(b)!r}")


# Every optimizer's groups take these; a scheduler adds initial_lr.
_COMMON = dict(lr=_at_least_zero, weight_decay=_at_least_zero, maximize=_flag, grad_scale=_grad_scale,
               skip_if_nonfinite=_flag)
_OPTIONAL = dict(initial_lr=_at_least_zero)


class Optimizer:
    """Base class: parameter groups, ``step``, ``zero_grad``, state dicts.

    A subclass names its native rule (``_rule``), the checks of its group keys beyond the
    common ones (``_checks``: key -> check), and the native call's hyper-parameters of a
    group (``_hyper``)."""

    _rule = None
    _checks = {}
    _group_checks = _COMMON  # _COMMON and _checks, made for each subclass

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._group_checks = dict(_COMMON, **cls._checks)

    def __init__(self, params, defaults):
        self.defaults = dict(defaults, grad_scale=defaults.get("grad_scale", 1.0),
                             skip_if_nonfinite=defaults.get("skip_if_nonfinite", False))
        self.state = defaultdict(dict)  # Parameter -> {name: array or step}, as torch
        self.param_groups = []
        self._cache = _cpu.OptimCache()  # what the native step keeps between steps
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
        """Add a group (a dict with 'params' and any per-group hyper-parameters). Refused
        (and nothing added) if a parameter is already in a group or shares memory with
        another parameter: a step would update that memory twice."""
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
        self._check_group(group, len(self.param_groups))
        paths = [(gi, pi) for gi, g in enumerate(self.param_groups + [group]) for pi in range(len(g["params"]))]
        datas = [p._data for g in self.param_groups for p in g["params"]] + [p._data for p in params]
        hit = _cpu.optim_find_overlap(datas)
        if hit is not None:
            (gi, pi), (gj, pj) = paths[hit[0]], paths[hit[1]]
            raise ValueError(f"param_groups[{gj}]['params'][{pj}] shares memory with "
                             f"param_groups[{gi}]['params'][{pi}]; a step would update it twice")
        self.param_groups.append(group)

    def _check_group(self, group, index):
        """Every key of the group known and its value valid; the messages name the key as
        param_groups[index]['key']."""
        checks = self._group_checks
        for key, value in group.items():
            check = checks.get(key) or _OPTIONAL.get(key)
            if check is not None:
                check(index, key, value)
            elif key != "params":
                raise ValueError(f"param_groups[{index}] has an unknown key {key!r}; {type(self).__name__} "
                                 f"takes {', '.join(checks)}")
        if not checks.keys() <= group.keys():
            missing = next(key for key in checks if key not in group)
            raise ValueError(f"param_groups[{index}] has no {missing!r}")

    def _hyper(self, group):
        """The native call's hyper-parameters of a group (every key the rule takes)."""
        scale = group["grad_scale"]
        return dict(lr=group["lr"], weight_decay=group["weight_decay"], maximize=group["maximize"],
                    grad_scale=1.0 if scale is None else scale)

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
        (to recompute the gradients); its loss is not returned.

        Every group is checked (its values, and every parameter's data, gradient and state:
        dtype, shape, layout, writeability, overlaps) before any is written; an error names
        the array as param_groups[g]['params'][i].grad (or .data, or state[...]['name'])."""
        if closure is not None:
            closure()
        groups = self.param_groups
        for index, group in enumerate(groups):
            self._check_group(group, index)
        first = next((g["params"][0] for g in groups if g["params"]), None)
        native = _backend.select("optim_step", param=None if first is None else first._data)
        return native.optim_step(self._rule, [g["params"] for g in groups], [self._hyper(g) for g in groups],
                                 [g["skip_if_nonfinite"] for g in groups], self.state, self._cache)

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
        e.g. a ``numpy.load`` result). Every group takes the saved values (and must have
        exactly this optimizer's keys: another optimizer's state dict is refused); state
        arrays are copied into the parameters' dtype. Anything wrong is a ValueError
        naming it, and then nothing is loaded."""
        if not isinstance(state_dict, Mapping) and not hasattr(state_dict, "keys"):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        if "state" not in state_dict or "param_groups" not in state_dict:
            state_dict = state_dict_from_arrays(state_dict)
        saved, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved, (list, tuple)) or not isinstance(saved_state, Mapping):
            raise ValueError("state_dict['param_groups'] must be a list and state_dict['state'] a dict")
        if len(saved) != len(self.param_groups):
            raise ValueError(f"loaded state dict has {len(saved)} parameter groups, the optimizer "
                             f"{len(self.param_groups)} (a different number of parameter groups)")
        by_index, new_groups = {}, []
        checks = self._group_checks
        for g, (group, sg) in enumerate(zip(self.param_groups, saved)):
            if not isinstance(sg, Mapping) or "params" not in sg:
                raise ValueError(f"loaded param_groups[{g}] must be a dict with 'params'")
            indices = [_index(f"loaded param_groups[{g}]['params']", i) for i in sg["params"]]
            if len(indices) != len(group["params"]):
                raise ValueError(f"loaded param_groups[{g}] has {len(indices)} parameters, the optimizer's "
                                 f"{len(group['params'])} (doesn't match the size of optimizer's group)")
            foreign = [k for k in sg if k != "params" and k not in checks and k not in _OPTIONAL]
            if foreign:
                raise ValueError(f"loaded param_groups[{g}] has {foreign[0]!r}, which {type(self).__name__}'s "
                                 "groups do not have: is it another optimizer's state dict?")
            ng = {k: v for k, v in sg.items() if k != "params"}
            ng["params"] = group["params"]
            self._check_group(ng, g)
            new_groups.append(ng)
            for i, p in zip(indices, group["params"]):
                if by_index.setdefault(i, p) is not p:
                    raise ValueError(f"loaded state dict numbers two parameters {i}")
        names = _cpu.optim_state_names(self._rule)
        new_state = defaultdict(dict)
        for i, st in saved_state.items():
            p = by_index.get(_index("a loaded state index", i))
            if p is None:
                raise ValueError(f"loaded state dict has state for parameter {i}, which no group holds")
            if not isinstance(st, Mapping):
                raise ValueError(f"loaded state[{i}] must be a dict, got {type(st).__name__}")
            entry = {}
            for key, v in st.items():
                where = f"loaded state[{i}][{key!r}]"
                if key not in names:
                    raise ValueError(f"{where}: {type(self).__name__} keeps no {key!r} (it keeps "
                                     f"{', '.join(names)}): is it another optimizer's state dict?")
                entry[key] = _step(where, v) if key == "step" else _state_array(where, v, p)
            new_state[p] = entry
        self.state = new_state
        self.param_groups[:] = new_groups


def _index(where, v):
    """A parameter index: an int or NumPy integer (0-d arrays too), not a bool."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise ValueError(f"{where} must hold integer indices, got {v!r}")
    return int(v)


def _step(where, v):
    """A saved step count: an integer >= 0 (a float, even 3.0, is refused)."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or not 0 <= v <= 2**53:
        raise ValueError(f"{where} must be an integer in [0, 2**53], got {v!r}")
    return int(v)


def _state_array(where, v, p):
    """A saved state array, copied into the parameter's dtype (as torch casts it) and
    array library (NumPy or CuPy: load_state_dict copies across devices)."""
    a = v if on_gpu(v) else np.asarray(v)
    if a.dtype.kind != "f":
        raise ValueError(f"{where} must be a float array, got dtype {a.dtype}")
    if a.shape != p.shape:
        raise ValueError(f"{where} has shape {a.shape} but the parameter has {p.shape}")
    return array_module(p.data).array(a, dtype=p.dtype, order="C", copy=True)


# ------------------------------------------------------------------ flat state dicts

_FLAT_KEYS = "keys are 'state.<index>.<name>' and 'param_groups.<index>.<key>'"


def _plain(v):
    """v with NumPy scalars made Python ones, inside tuples and lists too."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (tuple, list)):
        return type(v)(_plain(x) for x in v)
    return v


def _group_value_array(v):
    """A group value as an array: a bool, int or float as a 0-d array of that kind; any
    other value (None, a tuple, a list, nested ones) as its Python literal in a 0-d str
    array, which ast.literal_eval reads back exactly."""
    if isinstance(v, (bool, np.bool_)):
        return np.asarray(v, np.bool_)
    if isinstance(v, numbers.Integral):
        return np.asarray(v, np.int64)
    if isinstance(v, numbers.Real):
        return np.asarray(v, np.float64)
    text = repr(_plain(v))
    try:
        if ast.literal_eval(text) != _plain(v):
            raise ValueError
    except (ValueError, SyntaxError):
        raise ValueError(f"cannot store the group value {v!r} as an array") from None
    return np.asarray(text)


def _group_value(name, a):
    """The inverse of _group_value_array."""
    if a.ndim == 0 and a.dtype.kind == "U":
        try:
            return ast.literal_eval(str(a[()]))
        except (ValueError, SyntaxError):
            raise ValueError(f"cannot read {name!r}: {str(a[()])!r} is not a Python literal") from None
    if a.ndim == 0 and a.dtype.kind in "biuf":
        return a.item()
    raise ValueError(f"cannot read {name!r}: a group value is a 0-d array, got shape {a.shape} of {a.dtype}")


def state_dict_to_arrays(state_dict):
    """A state dict (optimizer's) as a flat dict of NumPy arrays, keys
    'state.<i>.<name>' and 'param_groups.<g>.<key>': ``numpy.savez(f, **arrays)``
    (GPU state arrays are copied to the host).
    Group values come back exactly (``state_dict_from_arrays``): numbers and bools as
    0-d arrays of their kind, None, tuples and lists as their Python literal."""
    out = {}
    for i, st in state_dict["state"].items():
        for key, v in st.items():
            out[f"state.{i}.{key}"] = v.get() if on_gpu(v) else np.asarray(v)  # (GPU state: copied to the host)
    for g, group in enumerate(state_dict["param_groups"]):
        for key, v in group.items():
            out[f"param_groups.{g}.{key}"] = (np.asarray(v, dtype=np.int64) if key == "params"
                                              else _group_value_array(v))
    return out


def state_dict_from_arrays(arrays):
    """The inverse of ``state_dict_to_arrays`` (takes any mapping, e.g. numpy.load's).
    A key it cannot parse, or a value it cannot read, is a ValueError naming the key."""
    state, groups = {}, {}
    for name in arrays.keys():
        parts = str(name).split(".", 2)
        if (len(parts) != 3 or parts[0] not in ("state", "param_groups") or not parts[1].isascii()
                or not parts[1].isdigit() or not parts[2]):
            raise ValueError(f"cannot parse the key {name!r} of a flat optimizer state dict ({_FLAT_KEYS})")
        kind, idx, key = parts[0], int(parts[1]), parts[2]
        v = np.asarray(arrays[name])
        if kind == "state":
            state.setdefault(idx, {})[key] = v
        elif key == "params":
            if v.ndim != 1 or v.dtype.kind not in "iu":
                raise ValueError(f"cannot read {name!r}: parameter indices are a 1-d integer array, "
                                 f"got shape {v.shape} of {v.dtype}")
            groups.setdefault(idx, {})[key] = [int(x) for x in v]
        else:
            groups.setdefault(idx, {})[key] = _group_value(name, v)
    if sorted(groups) != list(range(len(groups))):
        missing = min(set(range(len(groups) + 1)) - set(groups))
        raise ValueError(f"the flat optimizer state dict has no keys 'param_groups.{missing}.*' "
                         f"but has param_groups {sorted(groups)}")
    return {"state": state, "param_groups": [groups[g] for g in range(len(groups))]}


# ------------------------------------------------------------------ the optimizers


class SGD(Optimizer):
    """torch.optim.SGD: momentum (buffer starts as the first gradient), dampening,
    nesterov, weight_decay (L2), maximize. State: 'momentum_buffer' (momentum != 0)."""

    _rule = "sgd"
    _checks = dict(momentum=_at_least_zero, dampening=_unit_interval, nesterov=_flag)

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False,
                 *, maximize=False, grad_scale=1.0, skip_if_nonfinite=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize, grad_scale=grad_scale,
                                      skip_if_nonfinite=skip_if_nonfinite))

    def _check_group(self, group, index):
        super()._check_group(group, index)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"param_groups[{index}]: Nesterov momentum requires a momentum and zero "
                             f"dampening (nesterov=True, momentum={group['momentum']!r}, "
                             f"dampening={group['dampening']!r})")

    def _hyper(self, group):
        return dict(super()._hyper(group), momentum=group["momentum"], dampening=group["dampening"],
                    nesterov=group["nesterov"])


class Adagrad(Optimizer):
    """torch.optim.Adagrad: lr_decay, weight_decay (L2), initial_accumulator_value, eps,
    maximize. State: 'step', 'sum'."""

    _rule = "adagrad"
    _checks = dict(lr_decay=_at_least_zero, initial_accumulator_value=_at_least_zero, eps=_at_least_zero)

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, *, maximize=False, grad_scale=1.0, skip_if_nonfinite=False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, maximize=maximize, grad_scale=grad_scale,
                                      skip_if_nonfinite=skip_if_nonfinite))

    def _hyper(self, group):
        return dict(super()._hyper(group), lr_decay=group["lr_decay"], eps=group["eps"],
                    initial_accumulator_value=group["initial_accumulator_value"])


class RMSprop(Optimizer):
    """torch.optim.RMSprop: alpha, eps, weight_decay (L2), momentum, centered, maximize.
    State: 'step', 'square_avg', 'momentum_buffer' (momentum > 0), 'grad_avg' (centered)."""

    _rule = "rmsprop"
    _checks = dict(alpha=_unit_interval, eps=_at_least_zero, momentum=_at_least_zero, centered=_flag)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, *, maximize=False, grad_scale=1.0, skip_if_nonfinite=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize,
                                      grad_scale=grad_scale, skip_if_nonfinite=skip_if_nonfinite))

    def _hyper(self, group):
        return dict(super()._hyper(group), alpha=group["alpha"], eps=group["eps"], momentum=group["momentum"],
                    centered=group["centered"])


class Adam(Optimizer):
    """torch.optim.Adam: betas, eps, weight_decay (L2 added to the gradient, or
    decoupled as AdamW with decoupled_weight_decay=True), amsgrad, maximize.
    State: 'step', 'exp_avg', 'exp_avg_sq', 'max_exp_avg_sq' (amsgrad)."""

    _rule = "adam"
    _checks = dict(betas=_betas, eps=_at_least_zero, amsgrad=_flag, decoupled_weight_decay=_flag)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=False, grad_scale=1.0,
                 skip_if_nonfinite=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize,
                                      decoupled_weight_decay=decoupled_weight_decay,
                                      grad_scale=grad_scale, skip_if_nonfinite=skip_if_nonfinite))

    def _hyper(self, group):
        beta1, beta2 = group["betas"]
        return dict(super()._hyper(group), beta1=beta1, beta2=beta2, eps=group["eps"], amsgrad=group["amsgrad"],
                    decoupled=group["decoupled_weight_decay"])


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (p *= 1 - lr * weight_decay
    before the update), default weight_decay=1e-2. Its groups keep
    decoupled_weight_decay=True (so Adam's state dict, with False, is refused)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, grad_scale=1.0, skip_if_nonfinite=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True, grad_scale=grad_scale,
                         skip_if_nonfinite=skip_if_nonfinite)

    def _check_group(self, group, index):
        super()._check_group(group, index)
        if not group["decoupled_weight_decay"]:  # (a bool: Adam's checks ran)
            raise ValueError(f"param_groups[{index}]['decoupled_weight_decay'] must be True for AdamW "
                             "(Adam's decoupled_weight_decay=False groups are Adam's)")


class Adadelta(Optimizer):
    """torch.optim.Adadelta: rho, eps, weight_decay (L2), maximize; lr scales the
    update (default 1.0). State: 'step', 'square_avg', 'acc_delta'."""

    _rule = "adadelta"
    _checks = dict(rho=_unit_interval, eps=_at_least_zero)

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, maximize=False,
                 grad_scale=1.0, skip_if_nonfinite=False):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                                      maximize=maximize, grad_scale=grad_scale,
                                      skip_if_nonfinite=skip_if_nonfinite))

    def _hyper(self, group):
        return dict(super()._hyper(group), rho=group["rho"], eps=group["eps"])
