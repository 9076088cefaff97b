"""A restricted unpickler: reads checkpoint pickles without ever running code from the file.

Why: `torch.load(weights_only=True)` refuses some real release checkpoints because they keep plain
Python objects beside the tensors (DINO's `argparse.Namespace` args and numpy scalars in its optimizer
state; VICReg/Barlow Twins full checkpoints reference their `exclude_bias_and_norm` function in the
LARS param groups). This unpickler reads those safely:

- it admits only an allow-list of callables: plain containers, torch's tensor/storage rebuild
  functions, torch dtypes and devices, numpy arrays, scalars and dtypes;
- `argparse.Namespace` becomes a `SafeNamespace` (attribute and item access, nothing else);
  `pathlib` paths become strings;
- any other global becomes an inert placeholder type. It is never imported. The pickle may keep it
  as a value, or build a data-only instance of it (NEWOBJ + BUILD, how plain objects are pickled),
  but any attempt to *call* it (REDUCE, the opcode every pickle exploit relies on) is refused with
  `UnsafePickleError`, before anything runs.

It is also a drop-in `pickle_module` for `torch.load(..., weights_only=False, pickle_module=...)`,
so torch still handles its zip and legacy containers while every global goes through `find_class`.
"""

from __future__ import annotations

import collections
import io
import pickle
from typing import Any, BinaryIO

__all__ = ["Unpickler", "load", "loads", "UnsafePickleError", "SafeNamespace", "ForeignObject", "is_foreign"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked to call something outside the allow-list."""


class SafeNamespace(dict):
    """Stands in for `argparse.Namespace`: the saved arguments, readable as attributes or items."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.update(state)

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in self.items())})"


class ForeignObject:
    """A data-only instance of a class the unpickler does not know (the class is never imported)."""

    _foreign_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "ForeignObject":
        obj = object.__new__(cls)
        object.__setattr__(obj, "_args", args)
        object.__setattr__(obj, "_state", None)
        return obj

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "_state", state)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError(f"refused to call an instance of {self._foreign_name}")

    def __reduce__(self):  # never re-pickled as the foreign class
        raise TypeError(f"cannot pickle a placeholder for {self._foreign_name}")

    def __repr__(self) -> str:
        return f"<foreign {self._foreign_name}>"


class _ForeignMeta(type):
    """Metaclass of placeholder types: calling the type (the REDUCE opcode) is refused."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError(f"the file asks to call {cls._foreign_name}, which is not a tensor, array or plain container")

    def __repr__(cls) -> str:
        return f"<foreign global {cls._foreign_name}>"


_FOREIGN_TYPES: dict[str, type] = {}


def _foreign_type(module: str, name: str) -> type:
    qualname = f"{module}.{name}"
    if qualname not in _FOREIGN_TYPES:
        _FOREIGN_TYPES[qualname] = _ForeignMeta(name.rpartition(".")[2] or "Foreign", (ForeignObject,), {"_foreign_name": qualname})
    return _FOREIGN_TYPES[qualname]


def is_foreign(obj: Any) -> bool:
    """True for placeholders (types or instances) of globals that were not admitted."""
    return isinstance(obj, ForeignObject) or isinstance(obj, _ForeignMeta)


def _path_to_str(*parts: Any) -> str:
    """pathlib paths pickle as `PosixPath(*parts)`: keep them as plain strings."""
    import posixpath

    if not all(isinstance(p, str) for p in parts):
        raise UnsafePickleError("a pickled path holds something other than strings")
    return posixpath.join(*parts) if parts else "."


def _safe_newobj(cls: Any, *args: Any) -> Any:
    """`copyreg.__newobj__`, for placeholder and SafeNamespace types only."""
    if isinstance(cls, type) and issubclass(cls, (ForeignObject, SafeNamespace)):
        return cls.__new__(cls, *args)
    raise UnsafePickleError(f"refused copyreg.__newobj__ on {cls!r}")


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """`copyreg._reconstructor` (protocol 0/1 objects), for placeholder types built on `object`."""
    if base is object and isinstance(cls, type) and issubclass(cls, (ForeignObject, SafeNamespace)):
        return cls.__new__(cls)
    raise UnsafePickleError(f"refused copyreg._reconstructor on {cls!r}")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object: everything the unpickler may hand to the pickle."""
    import builtins

    import numpy as np
    import torch
    import torch._utils

    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "defaultdict"): collections.defaultdict,
        ("collections", "Counter"): collections.Counter,
        ("_codecs", "encode"): __import__("_codecs").encode,  # protocol-2 bytes: encode(str, "latin1")
        ("copyreg", "__newobj__"): _safe_newobj,
        ("copyreg", "_reconstructor"): _safe_reconstructor,
        ("argparse", "Namespace"): SafeNamespace,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
    }
    for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "complex", "int", "float", "bool", "str", "slice", "range", "object"):
        allowed[("builtins", name)] = getattr(builtins, name)
        allowed[("__builtin__", name)] = getattr(builtins, name)  # Python 2 pickles
    for mod in ("pathlib", "pathlib._local"):
        for name in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"):
            allowed[(mod, name)] = _path_to_str
    # torch: the tensor rebuild functions that torch's own weights_only loader admits.
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                 "_rebuild_parameter_with_state", "_rebuild_meta_tensor_no_storage"):
        if hasattr(torch._utils, name):
            allowed[("torch._utils", name)] = getattr(torch._utils, name)
    for name in dir(torch):
        value = getattr(torch, name, None)
        if isinstance(value, torch.dtype):
            allowed[("torch", name)] = value
        elif name.endswith("Storage") and isinstance(value, type):
            allowed[("torch", name)] = value
    if hasattr(torch, "storage") and hasattr(torch.storage, "UntypedStorage"):
        allowed[("torch.storage", "UntypedStorage")] = torch.storage.UntypedStorage
    # numpy: arrays, scalars and dtypes, under both the numpy 1 and numpy 2 module paths.
    core = getattr(np, "_core", None) or np.core
    multiarray = core.multiarray
    numeric = core.numeric
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{prefix}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):
            allowed[(f"{prefix}.numeric", "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    dtypes_mod = getattr(np, "dtypes", None)
    if dtypes_mod is not None:
        for name in dir(dtypes_mod):
            value = getattr(dtypes_mod, name)
            if isinstance(value, type) and issubclass(value, np.dtype):
                allowed[("numpy.dtypes", name)] = value
    return allowed


_ALLOWED: dict[tuple[str, str], Any] | None = None


def allowed_globals() -> dict[tuple[str, str], Any]:
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = _allowed_globals()
    return _ALLOWED


class Unpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` never imports anything outside the allow-list."""

    def __init__(self, file: BinaryIO, *args: Any, **kwargs: Any) -> None:
        super().__init__(file, *args, **kwargs)
        self.foreign_globals: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        obj = allowed_globals().get((module, name))
        if obj is not None:
            return obj
        self.foreign_globals.add(f"{module}.{name}")
        return _foreign_type(module, name)


def load(file: BinaryIO, **kwargs: Any) -> Any:
    """`pickle.load` through the restricted unpickler (the `pickle_module.load` torch calls)."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    return load(io.BytesIO(data), **kwargs)
