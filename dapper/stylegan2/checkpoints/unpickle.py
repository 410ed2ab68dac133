"""A restricted unpickler: every global a pickle names is looked up in a whitelist of harmless
stand-ins; anything else (os.system, builtins.eval, a network class...) is refused, and nothing
stored in the file is ever run."""

from __future__ import annotations

import collections
import io
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from .common import CheckpointError, UnsafeCheckpointError, torch_refusal


class PersistentRecord:
    """What a ``torch_utils.persistence`` object becomes: data only, no class, no code."""

    __slots__ = ("class_name", "init_args", "init_kwargs", "state")

    def __init__(self, class_name, init_args, init_kwargs, state):
        self.class_name = class_name
        self.init_args = init_args
        self.init_kwargs = init_kwargs
        self.state = state

    def __setstate__(self, state):  # a BUILD opcode aimed at a record gets nothing
        raise pickle.UnpicklingError("unexpected state for a persistent object")

    def __repr__(self):
        return f"<persistent {self.class_name}>"


def _reconstruct_persistent_obj(meta):
    # Stand-in for torch_utils.persistence._reconstruct_persistent_obj. The real one exec()s
    # meta['module_src']; this one keeps the class name and the object's __dict__ only.
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("persistent object metadata is not a class record")
    class_name = meta.get("class_name")
    state = meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise pickle.UnpicklingError("persistent object metadata lacks class_name/state")
    return PersistentRecord(
        class_name, state.get("_init_args", ()), state.get("_init_kwargs", {}), state
    )


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a dict, nothing more."""

    def __setstate__(self, state):
        pass


class TFNetworkStub:
    """Stand-in for ``dnnlib.tflib.network.Network``: keeps the pickled state dict only.

    The real ``__setstate__`` exec()s ``build_module_src``; this one never looks at it.
    """

    __slots__ = ("state",)

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("TensorFlow network state is not a dict")
        self.state = state

    def tf_params(self) -> dict:
        """All variables of this network and its components: ``{"synthesis/4x4/Conv/weight": arr}``."""
        params = {}

        def collect(prefix, net, depth):
            if depth > 8:
                raise pickle.UnpicklingError("TensorFlow networks nested too deeply")
            for item in net.state.get("variables", []):
                name, value = item
                params[prefix + str(name)] = value
            for name, comp in dict(net.state.get("components", {})).items():
                if not isinstance(comp, TFNetworkStub):
                    raise pickle.UnpicklingError(f"component {name!r} is not a network")
                collect(f"{prefix}{name}/", comp, depth + 1)

        collect("", self, 0)
        return params


def _quiet_storage_load(data: bytes):
    # Stand-in for torch.storage._load_from_bytes, which torch.load()s the bytes with
    # weights_only=False; here they go through torch's own safe unpickler instead.
    if not isinstance(data, bytes | bytearray):
        raise pickle.UnpicklingError("tensor storage payload is not bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise _UnsafeGlobal(f"a tensor storage payload was refused by torch: {torch_refusal(exc)}") from None
    if not isinstance(storage, torch.TypedStorage | torch.UntypedStorage):
        raise pickle.UnpicklingError("tensor storage payload does not hold a storage")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    # Backward hooks and metadata that torch would attach are dropped on purpose.
    if not isinstance(storage, torch.TypedStorage | torch.UntypedStorage):
        raise pickle.UnpicklingError("tensor built from something that is not a storage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch._utils._rebuild_tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter data is not a tensor")
    return data


def _rebuild_from_type(func, cls, args, state):
    # Tensor subclasses pickle as (_rebuild_from_type_v2, (func, type, args, state)); only the
    # plain tensor rebuilders above may be called, and the subclass is dropped.
    if func not in (_rebuild_tensor, _rebuild_parameter) or cls not in (
        torch.Tensor,
        torch.nn.Parameter,
    ):
        raise _UnsafeGlobal(f"tensor rebuilt through {func!r} as {cls!r}")
    return func(*args)


def _np_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise _UnsafeGlobal(f"array of type {subtype!r}")
    if isinstance(dtype, bytes):
        dtype = dtype.decode("ascii")
    return np.ndarray(shape, dtype=np.dtype(dtype))


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise _UnsafeGlobal("numpy scalar of object type")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _np_dtype(spec, align=False, copy=False):
    dt = np.dtype(spec, align=bool(align))
    if dt.hasobject:
        raise _UnsafeGlobal("numpy object dtype")
    return dt


class _UnsafeGlobal(pickle.UnpicklingError):
    pass


_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch", "Size"): torch.Size,
    ("torch.storage", "_load_from_bytes"): _quiet_storage_load,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _np_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetworkStub,
}
for _name in ("float16", "bfloat16", "float32", "float64", "int64", "int32", "uint8", "bool"):
    _SAFE_GLOBALS[("torch", _name)] = getattr(torch, _name)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise _UnsafeGlobal(f"refused global {module}.{name}") from None

    def persistent_load(self, pid):
        raise _UnsafeGlobal("refused persistent id (not a plain pickle)")


def restricted_unpickle(path: Path):
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f).load()
    except _UnsafeGlobal as exc:
        raise UnsafeCheckpointError(
            path, f"{exc}; a network pickle needs tensors and init arguments only, so nothing "
            "was imported or executed"
        ) from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, RuntimeError, MemoryError) as exc:
        raise CheckpointError(path, f"pickle is truncated or corrupt ({type(exc).__name__}: "
                              f"{exc})") from None


