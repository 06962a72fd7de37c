"""``Module``: the base class of every layer, with torch.nn.Module's names.

There is no autograd: a layer's ``forward(x)`` keeps what its ``backward(dy)`` needs
(each layer's docstring says what), and ``backward`` returns the gradient with respect
to the input and adds the parameters' gradients to their ``.grad``. A layer keeps the
state of its last forward only, so use a layer instance once per forward pass.
"""

import numbers
from collections import OrderedDict, namedtuple
from collections.abc import Mapping

import numpy as np

from .parameter import Parameter

__all__ = ["Module"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def is_array(value):
    """A NumPy array, or a GPU array (CuPy: anything with __cuda_array_interface__)."""
    return isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__")


def array_module(x):
    """numpy for NumPy arrays, cupy for CuPy arrays: layers compute with the input's library."""
    if isinstance(x, np.ndarray):
        return np
    import cupy  # only reached for GPU arrays

    return cupy


def factory_dtype(dtype):
    """The ``dtype=`` argument of a layer: None (float32, torch's default) or a float dtype."""
    if dtype is None:
        return np.dtype(np.float32)
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if d not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {d}")
    return d


def check_bool(value, name):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_int(value, name, minimum=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = "What load_state_dict(strict=False) left out: missing and unexpected keys."


def _copy_into(target, value):
    """target[...] = value, across devices (a state dict saved on the CPU loads into a GPU model)."""
    if isinstance(target, np.ndarray) and not isinstance(value, np.ndarray):
        target[...] = value.get()
    elif not isinstance(target, np.ndarray):
        import cupy

        target[...] = cupy.asarray(value)
    else:
        target[...] = value


def _indent(text, spaces):
    lines = text.split("\n")
    return "\n".join(lines[:1] + [" " * spaces + line for line in lines[1:]])


def _is_device(value):
    if not isinstance(value, str):
        return False
    kind, sep, index = value.partition(":")
    return value == "cpu" or (kind == "cuda" and (not sep or index.isdigit()))


def _mover(device):
    """The function that puts an array on `device` (itself if it is there already)."""
    if device == "cpu":
        return lambda a: a if isinstance(a, np.ndarray) else a.get()
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError(f"to({device!r}) needs CuPy (pip install cupy-cuda13x): {exc}") from None
    index = int(device.partition(":")[2] or cupy.cuda.Device().id)

    def to_gpu(a):
        if not isinstance(a, np.ndarray) and a.device.id == index:
            return a
        with cupy.cuda.Device(index):
            return cupy.array(a, copy=True)
    return to_gpu


def _moved(array, move, dtype):
    """array on the target device (move) with the target dtype; itself if nothing changes."""
    if array is None:
        return None
    if move is not None:
        array = move(array)
    if dtype is not None and array.dtype != dtype:
        array = array.astype(dtype)
    return array


class Module:
    """Base class of layers: parameters, buffers and child modules registered by
    assignment (``self.fc = Linear(...)``), as in torch.

    Subclasses implement ``forward(x)`` and ``backward(dy, *, input_grad=True)``.
    ``backward`` returns dx (None when ``input_grad=False``: the first layer of a network
    need not compute it) and accumulates parameter gradients into ``.grad``
    (``zero_grad()`` resets them). Calling ``backward`` before ``forward``, or twice
    after one forward, raises RuntimeError: a layer frees what it kept once its
    backward has run.
    """

    _saved = None  # what the last forward kept for backward; None once backward used it

    def __init__(self):
        d = self.__dict__
        d["training"] = True
        d["_parameters"] = {}
        d["_buffers"] = {}
        d["_modules"] = {}

    # ------------------------------------------------------------- the computation

    def forward(self, *args):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dy, *, input_grad=True):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _saved_state(self, input_grad=True):
        """What forward kept: RuntimeError before forward or after the backward used it.
        A backward sets ``_saved`` to None once its checks pass (a refused call keeps it).
        Also checks backward's input_grad flag."""
        if input_grad is not True and input_grad is not False:
            raise TypeError(f"input_grad must be a bool, got {type(input_grad).__name__}")
        saved = self._saved
        if saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward "
                               "(or twice after one forward)")
        return saved

    def _take_saved(self, input_grad=True):
        """What forward kept, used up now (for backwards that check nothing first)."""
        saved = self._saved_state(input_grad)
        self._saved = None
        return saved

    # ---------------------------------------------------------------- registration

    def __setattr__(self, name, value):
        d = self.__dict__
        params = d.get("_parameters")
        if params is None:
            raise AttributeError("cannot assign attributes before Module.__init__() is called")
        buffers, modules = d["_buffers"], d["_modules"]
        if isinstance(value, Parameter):
            buffers.pop(name, None)
            modules.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as parameter '{name}' "
                                "(fastnn.nn.Parameter or None expected)")
            params[name] = None
        elif name in modules:
            if value is not None:
                raise TypeError(f"cannot assign {type(value).__name__} as child module '{name}' "
                                "(fastnn.nn.Module or None expected)")
            modules[name] = None
        elif name in buffers:
            if value is not None and not is_array(value):
                raise TypeError(f"cannot assign {type(value).__name__} as buffer '{name}' "
                                "(an array or None expected)")
            buffers[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Register a Parameter (or None: the layer has no such parameter, e.g. bias=False)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"cannot assign {type(param).__name__} as parameter '{name}' "
                            "(fastnn.nn.Parameter or None expected)")
        self._parameters[name] = param
        object.__setattr__(self, name, param)

    def register_buffer(self, name, tensor):
        """Register an array that is state but not a parameter (running statistics): it is
        in ``state_dict()`` and cast by ``to()``. None means the buffer is absent."""
        if tensor is not None and not is_array(tensor):
            raise TypeError(f"cannot assign {type(tensor).__name__} as buffer '{name}' "
                            "(an array or None expected)")
        self._buffers[name] = tensor
        object.__setattr__(self, name, tensor)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{type(module).__name__} is not a Module subclass")
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"module name must be a non-empty str without '.', got {name!r}")
        self._modules[name] = module
        object.__setattr__(self, name, module)

    # ------------------------------------------------------------------ traversal

    def named_modules(self, memo=None, prefix=""):
        """(dotted name, module) for this module and every descendant, each once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is not None:
                yield from module.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def named_parameters(self, prefix="", recurse=True):
        """(torch's dotted name, Parameter), each Parameter once, in registration order."""
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix="", recurse=True):
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn):
        """fn(module) for every child (recursively), then for self; returns self."""
        for module in self.children():
            module.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------- training

    def train(self, mode=True):
        """Training mode (mode=True) or evaluation mode for this module and every descendant."""
        check_bool(mode, "mode")
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter: a frozen parameter gets no gradient
        and optimizers leave it untouched. Returns self."""
        check_bool(requires_grad, "requires_grad")
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none=True):
        """Drop every parameter's gradient (set_to_none=True, torch's default) or fill it with 0."""
        check_bool(set_to_none, "set_to_none")
        for p in self.parameters():
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.fill(0)

    # ---------------------------------------------------------------- state dicts

    def state_dict(self, destination=None, prefix="", keep_vars=False):
        """Parameters and buffers by torch's dotted names (``0.weight``,
        ``1.running_mean``, ``1.num_batches_tracked``, ...), in registration order.
        The values are the live arrays, not copies (``keep_vars=True``: the Parameters
        themselves)."""
        destination = OrderedDict() if destination is None else destination
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.data
        for name, b in self._buffers.items():
            if b is not None:
                destination[prefix + name] = b
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters and buffers (in place: views and optimizers
        keep seeing them). Every check runs before anything is copied: a missing or
        unexpected key (strict=True), a value that is not an array (TypeError), a wrong
        shape (ValueError) or dtype (TypeError; cast the model with ``to()``) raises an
        error naming the key, and nothing is loaded. Returns
        ``IncompatibleKeys(missing_keys, unexpected_keys)``."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
        check_bool(strict, "strict")
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            problems = []
            if missing:
                problems.append("missing key(s) " + ", ".join(repr(k) for k in missing))
            if unexpected:
                problems.append("unexpected key(s) " + ", ".join(repr(k) for k in unexpected))
            raise ValueError(f"error loading state_dict into {type(self).__name__}: "
                             + "; ".join(problems))
        copies = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            array = target.data if isinstance(target, Parameter) else target
            if isinstance(value, np.generic):  # a NumPy scalar: a 0-d array
                value = np.asarray(value)
            if not is_array(value):
                raise TypeError(f"state_dict[{key!r}] must be an array, got {type(value).__name__}")
            if value.shape != array.shape:
                raise ValueError(f"state_dict[{key!r}] has shape {tuple(value.shape)} but the "
                                 f"model's has {array.shape}")
            if value.dtype != array.dtype:
                raise TypeError(f"state_dict[{key!r}] has dtype {value.dtype} but the model's has "
                                f"{array.dtype} (cast the model with .to(dtype), or the array)")
            copies.append((array, value))
        for array, value in copies:
            _copy_into(array, value)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------ dtype and device

    def to(self, *args, dtype=None, device=None):
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)``: move every parameter,
        gradient and buffer to a device ('cpu': NumPy arrays; 'cuda' or 'cuda:N': CuPy
        arrays on GPU N, the current one for 'cuda') and cast the floating ones to
        float32 or float64, all together. Parameter objects stay the same, so build the
        optimizer after the move: its state stays where it was. Returns self."""
        for arg in args:
            if _is_device(arg):
                device = arg
            else:
                dtype = arg
        move = None
        if device is not None:
            if not _is_device(device):
                raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
            move = _mover(device)
        if dtype is not None:
            dtype = factory_dtype(dtype)
        for module in self.modules():
            for p in module._parameters.values():
                if p is None:
                    continue
                data, grad = _moved(p.data, move, dtype), _moved(p.grad, move, dtype)
                if data is not p.data or grad is not p.grad:
                    p.grad = None
                    p.data = data
                    p.grad = grad
            for name, b in list(module._buffers.items()):
                if b is not None:
                    moved = _moved(b, move, dtype if b.dtype in FLOAT_DTYPES else None)
                    if moved is not b:
                        setattr(module, name, moved)
        return self

    def double(self):
        """Cast parameters and buffers to float64."""
        return self.to(np.float64)

    def float(self):
        """Cast parameters and buffers to float32."""
        return self.to(np.float32)

    # ----------------------------------------------------------------------- repr

    def extra_repr(self):
        """The layer's settings, shown inside its repr's parentheses."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        extra_lines = extra.split("\n") if extra else []
        child_lines = [f"({name}): " + _indent(repr(module), 2)
                       for name, module in self._modules.items()]
        lines = extra_lines + child_lines
        body = ""
        if len(extra_lines) == 1 and not child_lines:
            body = extra_lines[0]
        elif lines:
            body = "\n  " + "\n  ".join(lines) + "\n"
        return f"{type(self).__name__}({body})"


# ------------------------------------------------------------- checks for layers


def check_input(layer, x, dtype=None):
    """TypeError naming the layer unless x is an array of ``dtype`` (None: float32 or
    float64). Returns x, C-contiguous (a copy only if it was not: the kernels need it)."""
    if not is_array(x):
        raise TypeError(f"{type(layer).__name__}: expected an array input (numpy.ndarray or cupy.ndarray), "
                        f"got {type(x).__name__}")
    if dtype is None:
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{type(layer).__name__}: expected a float32 or float64 input, got {x.dtype}")
    elif x.dtype != dtype:
        raise TypeError(f"{type(layer).__name__}: expected a {dtype} input (the layer's dtype; "
                        f".to(dtype) casts a layer), got {x.dtype}")
    return x if x.flags.c_contiguous else array_module(x).ascontiguousarray(x)


def check_grad(layer, dy, shape, dtype):
    """dy must match the forward output: TypeError/ValueError naming the layer. Returns
    dy, C-contiguous (a copy only if it was not)."""
    if not is_array(dy):
        raise TypeError(f"{type(layer).__name__}.backward: expected an array dy, got {type(dy).__name__}")
    if dy.dtype != dtype:
        raise TypeError(f"{type(layer).__name__}.backward: expected dy of dtype {dtype} (the "
                        f"output's), got {dy.dtype}")
    if dy.shape != shape:
        raise ValueError(f"{type(layer).__name__}.backward: expected dy of shape {tuple(shape)} (the "
                         f"output's), got {tuple(dy.shape)}")
    return dy if dy.flags.c_contiguous else array_module(dy).ascontiguousarray(dy)
