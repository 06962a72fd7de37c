"""``Sequential``: layers applied in order, their backwards in reverse."""

from collections import OrderedDict

from .activation import ReLU
from .module import Module
from .normalization import _BatchNorm

__all__ = ["Sequential"]


class Sequential(Module):
    """``Sequential(m0, m1, ...)`` or ``Sequential(OrderedDict(name=module, ...))``:
    forward runs the modules in order, backward runs their backwards in reverse.

    A BatchNorm layer followed directly by a ReLU layer runs as one fused batch-norm +
    ReLU kernel (one pass over memory fewer; the same result bit for bit). Indexing
    (an int gives a module, a slice a Sequential), ``len``, iteration and ``append`` work
    as in torch. A layer keeps one forward's state, so a module may appear only once."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(args):
                if not isinstance(module, Module):
                    raise TypeError(f"Sequential: argument {i} is a {type(module).__name__}, not a Module")
                self.add_module(str(i), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[index][1]

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x):
        modules = list(self._modules.values())
        if len({id(m) for m in modules}) != len(modules):
            raise ValueError("Sequential: a module appears more than once; a layer keeps the state of "
                             "one forward, so use a separate instance for each place")
        ran = []  # the modules whose backward runs, in forward order
        i = 0
        while i < len(modules):
            module = modules[i]
            if (isinstance(module, _BatchNorm) and module.activation is None and i + 1 < len(modules)
                    and type(modules[i + 1]) is ReLU):
                x = module._forward(x, "relu")
                i += 2
            else:
                x = module(x)
                i += 1
            ran.append(module)
        self._saved = ran
        return x

    def backward(self, dy, *, input_grad=True):
        ran = self._take_saved(input_grad)
        for module in reversed(ran[1:]):
            dy = module.backward(dy)
        if not ran:
            return dy if input_grad else None
        # the first module is asked to skip dx only when the caller does not want it
        return ran[0].backward(dy) if input_grad else ran[0].backward(dy, input_grad=False)
