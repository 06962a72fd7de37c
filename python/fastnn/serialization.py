"""``fastnn.save`` / ``fastnn.load``: checkpoints as ``.npz`` files, never pickled.

What is saved: arrays (each as its own ``.npy`` member, named by its path in the
object, e.g. ``model/0.weight`` or ``optimizer/state/0/exp_avg``), numbers, strings,
bools, None, and dicts (str or int keys), lists and tuples of these: a model's
``state_dict()``, an optimizer's, a scheduler's, nested as you like. The nesting is
kept as JSON in one more member, ``__fastnn__``. ``load`` reads with
``allow_pickle=False`` only, so a file holding an object array is refused rather than
unpickled (unpickling can run code).
"""

import json
import os

import numpy as np

__all__ = ["save", "load"]

_SKELETON = "__fastnn__"


def _encode(obj, path, arrays):
    """obj as JSON, its arrays moved to `arrays` (member name -> array)."""
    from .nn.parameter import Parameter

    if isinstance(obj, Parameter):
        obj = obj.data
    if not isinstance(obj, np.ndarray) and hasattr(obj, "__cuda_array_interface__"):
        import cupy

        obj = cupy.asnumpy(obj)  # a GPU array is saved as its host copy; load() gives NumPy arrays
    if isinstance(obj, (np.ndarray, np.generic)):
        if obj.dtype.hasobject or obj.dtype.kind == "V":
            raise TypeError(f"cannot save {path or 'the object'}: an array of dtype {obj.dtype} "
                            "(only plain numeric, bool and string arrays are saved, never pickled)")
        name = path or "array"
        while name in arrays or name == _SKELETON:
            name += "_"
        arrays[name] = np.asarray(obj)
        return {"__array__" if isinstance(obj, np.ndarray) else "__scalar__": name}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict):
        items = []
        for key, value in obj.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"cannot save {path or 'the object'}: dict keys must be str or int, "
                                f"got {type(key).__name__}")
            items.append([key, _encode(value, f"{path}/{key}" if path else str(key), arrays)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        values = [_encode(v, f"{path}/{i}" if path else str(i), arrays) for i, v in enumerate(obj)]
        return {"__tuple__": values} if isinstance(obj, tuple) else values
    raise TypeError(f"cannot save {path or 'the object'}: a {type(obj).__name__} (fastnn.save writes "
                    "arrays, numbers, strings, None, and dicts, lists and tuples of them)")


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    ((tag, value),) = obj.items()
    if tag == "__array__":
        return arrays[value]
    if tag == "__scalar__":
        return arrays[value][()]
    if tag == "__tuple__":
        return tuple(_decode(v, arrays) for v in value)
    return {key: _decode(v, arrays) for key, v in value}


def save(obj, f):
    """Write obj (a state dict, or dicts/lists/tuples of state dicts, arrays, numbers,
    strings, None) to f, a path (written as given: no '.npz' is appended) or a binary
    file object. Everything is checked before the file is opened: an unsupported
    object raises TypeError naming where it is, and nothing is written."""
    arrays = {}
    skeleton = json.dumps(_encode(obj, "", arrays))
    arrays[_SKELETON] = np.array(skeleton)
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as file:
            np.savez(file, **arrays)
    else:
        np.savez(f, **arrays)


def load(f):
    """Read what ``save`` wrote (a path or a binary file object), arrays as NumPy arrays.
    A plain ``numpy.savez`` file loads as a dict of its arrays. Never unpickles: a file
    holding an object array raises ValueError."""
    data = np.load(f, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{f!r} is a single .npy array, not a .npz file")
    with data:
        arrays = {}
        for name in data.files:
            try:
                arrays[name] = data[name]
            except ValueError as exc:
                if "allow_pickle" not in str(exc):
                    raise
                raise ValueError(f"{f!r}: member {name!r} is an object array; fastnn.load never "
                                 "unpickles (that could run code)") from None
            if not isinstance(arrays[name], np.ndarray):
                raise ValueError(f"{f!r}: member {name!r} is not a .npy array")
    if _SKELETON not in arrays:
        return arrays
    skeleton = arrays.pop(_SKELETON)
    return _decode(json.loads(str(skeleton[()])), arrays)
