"""Load untrusted PyTorch / fairseq checkpoints without executing code.

A fairseq checkpoint is a `torch.save` pickle of a dict such as

    {"args": argparse.Namespace | None, "cfg": omegaconf.DictConfig | dict, "model": state_dict,
     "optimizer_history": [...], "extra_state": {...}, ...}

`torch.load(weights_only=True)` refuses it (the `cfg` / `args` objects are not tensors), and a
plain `torch.load` would run whatever the pickle asks for. `load_untrusted_checkpoint` uses a
restricted unpickler instead:

- tensors, storages, `OrderedDict`, `argparse.Namespace`, numpy arrays / scalars / dtypes and
  plain builtin containers are rebuilt as usual;
- objects of the configuration libraries that such files carry (`omegaconf.*`, `fairseq.*`,
  `hydra.*`, `avhubert.*`, `typing.*`, `enum.*`, `pathlib.*`) become inert `OpaqueObject`s that only
  record their constructor arguments and pickled state; their classes are never imported and no
  method of theirs runs;
- every other global (`os.system`, `builtins.eval`, `subprocess.Popen`, ...) is refused with an
  `UnsafeCheckpointError` that names it.
"""

from __future__ import annotations

import argparse
import codecs
import collections
import copyreg
import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

# Modules whose objects are replaced by inert placeholders (configuration objects, never code we need).
OPAQUE_MODULE_PREFIXES = ("omegaconf", "fairseq", "hydra", "avhubert", "hubert", "typing", "enum", "pathlib")

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("argparse", "Namespace"): argparse.Namespace,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "bool"): bool,
    ("builtins", "str"): str,
    ("builtins", "bytes"): bytes,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("builtins", "object"): object,
    # protocol 2 pickles bytes as _codecs.encode(text, "latin1"); old-style objects via copyreg
    ("_codecs", "encode"): codecs.encode,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
}
# Python 2 names that protocol-2 pickles (torch.save's default) use
_MODULE_ALIASES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
# torch dtypes are pickled as globals, e.g. torch.float32
_ALLOWED_GLOBALS.update(
    {("torch", name): getattr(torch, name) for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)}
)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray

    out: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = multiarray._reconstruct
        out[(mod, "scalar")] = multiarray.scalar
    # numpy >= 1.25 pickles dtypes as numpy.dtypes.Float64DType etc.
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in dir(dtypes):
            if name.endswith("DType"):
                out[("numpy.dtypes", name)] = getattr(dtypes, name)
    return {k: v for k, v in out.items() if v is not None}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint asks for a global that is neither data nor a known configuration object."""


class OpaqueObject:
    """Inert stand-in for a configuration object (omegaconf / fairseq / ...) found in a checkpoint.

    Attributes: `qualified_name` ("module.Class"), `args` (constructor arguments, if any) and
    `state` (what the pickle stored as the object's state, usually a dict).
    """

    qualified_name = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args, **kwargs):  # REDUCE calls cls(*args): record only
        self.args = args

    def __setstate__(self, state) -> None:  # BUILD: record only, never interpret
        self.state = state

    def __repr__(self) -> str:
        return f"OpaqueObject({self.qualified_name})"


_OPAQUE_CLASSES: dict[str, type] = {}


def _opaque_class(module: str, name: str) -> type:
    qualified = f"{module}.{name}"
    if qualified not in _OPAQUE_CLASSES:
        _OPAQUE_CLASSES[qualified] = type(name, (OpaqueObject,), {"qualified_name": qualified})
    return _OPAQUE_CLASSES[qualified]


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` only returns allow-listed data classes and inert placeholders."""

    _numpy: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str):
        module = _MODULE_ALIASES.get(module, module)
        key = (module, name)
        if key in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[key]
        if module.startswith("numpy"):
            if RestrictedUnpickler._numpy is None:
                RestrictedUnpickler._numpy = _numpy_globals()
            if key in RestrictedUnpickler._numpy:
                return RestrictedUnpickler._numpy[key]
        if module.split(".")[0] in OPAQUE_MODULE_PREFIXES:
            return _opaque_class(module, name)
        raise UnsafeCheckpointError(
            f"refusing to load global {module}.{name}: the checkpoint would execute code or build an object "
            "that a weights file does not need. Only tensors, plain containers and configuration objects "
            f"(modules {', '.join(OPAQUE_MODULE_PREFIXES)}) are accepted."
        )


class _RestrictedPickleModule:
    """A `pickle_module` for `torch.load` (it needs `Unpickler` and `load`)."""

    Unpickler = RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError
    __name__ = "av_fusion_models.safe_checkpoint"

    @staticmethod
    def load(file, **kwargs):
        return RestrictedUnpickler(file, **kwargs).load()


def load_untrusted_checkpoint(path: str | os.PathLike | io.BytesIO, map_location: str | torch.device = "cpu") -> Any:
    """Load a `torch.save` file (zip or legacy format) from an untrusted source without executing code.

    Tries `torch.load(weights_only=True)` first; files with configuration objects inside (fairseq
    checkpoints) go through `RestrictedUnpickler`. Raises `UnsafeCheckpointError` naming the
    refused global when the file asks for anything else, `FileNotFoundError` when it is missing and
    `ValueError` naming the file when it is not a readable torch checkpoint (truncated, HTML, ...).
    """
    if not isinstance(path, io.BytesIO):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist (give the path of a .pt file)")
    unreadable = (RuntimeError, EOFError, pickle.UnpicklingError)  # truncated zip, empty file, not a pickle

    def not_a_checkpoint(err: Exception) -> ValueError:
        return ValueError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err}). "
                          "Download it again, or check that the path points at the .pt file itself.")

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # also what weights_only says about fairseq's config objects: try below
        if isinstance(path, io.BytesIO):
            path.seek(0)
    except (RuntimeError, EOFError) as err:
        raise not_a_checkpoint(err) from None
    try:
        return torch.load(path, map_location=map_location, weights_only=False, pickle_module=_RestrictedPickleModule)
    except UnsafeCheckpointError as err:
        raise UnsafeCheckpointError(f"{path}: {err}") from None
    except unreadable as err:
        raise not_a_checkpoint(err) from None
