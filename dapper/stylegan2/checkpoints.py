"""Read and write StyleGAN2 checkpoints without executing anything stored in the file.

Formats are recognised by their content (magic bytes, zip header, pickle opcodes), never by the
file name:

``ada-pkl``
    stylegan2-ada-pytorch network pickles (``network-snapshot-*.pkl``, also the official
    pickles converted from TensorFlow by NVIDIA). They hold ``torch_utils.persistence`` objects
    whose class source code is embedded in the file; that code is never run. A restricted
    unpickler turns each persistent object into a plain record (class name, init arguments,
    parameters, buffers, child records) and the state dict is rebuilt from the records.
``tf-pkl``
    the original TensorFlow StyleGAN2 pickles (a tuple ``(G, D, Gs)`` of
    ``dnnlib.tflib.network.Network``). Variables are converted to the stylegan2-ada-pytorch
    layout with the official conventions: dense weights transposed, convolution weights
    ``[kh, kw, in, out] -> [out, in, kh, kw]`` (and flipped for the upsampling convolutions),
    ``mod_bias + 1`` for the affine layers, ``noiseN`` buffers per layer.
``rosinality-pt``
    ``torch.save`` dicts of rosinality/stylegan2-pytorch (``g_ema``, ``g``, ``d``,
    ``latent_avg``), read with ``torch.load(weights_only=True)``; channel counts, the number of
    mapping layers and the resolution are inferred from tensor shapes.
``dapper``
    dapper's own format: ``<name>.safetensors`` (the state dict) with ``<name>.json`` beside it
    (class name, init kwargs, metadata such as how the network was trained). The same JSON is
    also kept in the safetensors header, so the weights file alone still loads.

Every loader ends in the same place: an ada-layout state dict and the init kwargs of
:class:`~dapper.stylegan2.networks.Generator` / ``Discriminator``, loaded with
``load_state_dict(strict=True)``. Problems raise :class:`CheckpointError` (a ``ValueError``)
naming the file; files that try to smuggle in code raise :class:`UnsafeCheckpointError`.

Content box rule (the official LSUN car model draws 512x384 content inside a 512x512 canvas):
when ``content_box`` is not given, a foreign checkpoint at 512 px whose file name or recorded
training-set path says "car" (``stylegan2-car-config-f.pkl``, ``lsun_car``, ``cars``...) gets
``content_box=(0, 64, 512, 448)``; everything else gets the full square. dapper files keep the box
they were saved with. Pass ``content_box=(x0, y0, x1, y1)`` or ``content_box="full"`` to override.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import inspect
import io
import json
import math
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import ops
from .networks import Discriminator, Generator, MappingNetwork

__all__ = [
    "CheckpointError",
    "LSUN_CAR_CONTENT_BOX",
    "NetworkState",
    "UnsafeCheckpointError",
    "detect_format",
    "load_discriminator",
    "load_generator",
    "load_state",
    "save_discriminator",
    "save_generator",
]

LSUN_CAR_CONTENT_BOX = (0, 64, 512, 448)
DAPPER_FORMAT = "dapper-stylegan2"
DAPPER_FORMAT_VERSION = 1

_NETWORK_CLASSES = {"Generator": Generator, "Discriminator": Discriminator}
# A whole word "car"/"cars" (also "lsuncar"), so that "cartoon" or "scar" do not count.
_CAR_RE = re.compile(r"(?<![a-z])(lsun)?cars?(?![a-z])")


class CheckpointError(ValueError):
    """A checkpoint file cannot be read: unknown format, truncated, or does not fit the network."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class UnsafeCheckpointError(CheckpointError):
    """The file asks to import or call something a weights file never needs; nothing was run."""


@dataclass
class NetworkState:
    """One network read from a checkpoint, in the stylegan2-ada-pytorch layout.

    ``state_dict`` maps ada parameter/buffer names to CPU tensors; ``init_kwargs`` are the
    keyword arguments of ``Generator`` or ``Discriminator`` (``class_name``). Converted formats
    may lack the ``*.resample_filter`` buffers, which follow from the init kwargs.
    ``metadata`` holds what the file says about itself (dataset path, how it was trained...).
    """

    class_name: str
    init_kwargs: dict
    state_dict: dict[str, torch.Tensor]
    format: str
    path: str
    metadata: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Format detection

_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")


def detect_format(path) -> str:
    """Name the container format of ``path`` from its first bytes.

    Returns ``"pickle"``, ``"torch-zip"``, ``"torch-legacy"``, ``"safetensors"`` or ``"json"``;
    raises :class:`CheckpointError` for anything else (empty files included).
    """
    path = _existing_file(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        raise CheckpointError(path, "file is empty")
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head[:4] == b"\x80\x02\x8a\x0a" and head[4:14] == _TORCH_LEGACY_MAGIC:
        return "torch-legacy"
    if len(head) >= 9 and head[8:9] == b"{":
        # safetensors: 8-byte little-endian header length, then a JSON header. Text files
        # decode to an absurd length here, so they never pass the size test.
        header_len = int.from_bytes(head[:8], "little")
        if 2 <= header_len <= size - 8:
            return "safetensors"
        if header_len < 2**32:
            raise CheckpointError(path, "safetensors header is longer than the file (truncated?)")
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head.lstrip()[:1] == b"{":
        return "json"
    raise CheckpointError(
        path,
        f"unknown checkpoint format (first bytes {head[:12]!r}); expected a stylegan2-ada-pytorch "
        "or TensorFlow .pkl, a rosinality .pt, or a dapper .safetensors/.json",
    )


def _existing_file(path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        # save_generator takes a bare stem; accept the same stem when loading
        for suffix in (".json", ".safetensors"):
            candidate = path.with_name(path.name + suffix)
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    return path


# ---------------------------------------------------------------------------------------------
# Restricted unpickler: every global a pickle names is looked up in a whitelist of harmless
# stand-ins. Anything else (os.system, builtins.eval, a network class...) is refused.


class _PersistentRecord:
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
    return _PersistentRecord(
        class_name, state.get("_init_args", ()), state.get("_init_kwargs", {}), state
    )


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a dict, nothing more."""

    def __setstate__(self, state):
        pass


class _TFNetworkStub:
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
                if not isinstance(comp, _TFNetworkStub):
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
            raise _UnsafeGlobal(f"a tensor storage payload was refused by torch: {exc}") from None
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
    ("dnnlib.tflib.network", "Network"): _TFNetworkStub,
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


def _restricted_unpickle(path: Path):
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


# ---------------------------------------------------------------------------------------------
# Helpers shared by the converters


def _plain(obj, depth=0):
    """EasyDicts, OrderedDicts, tuples, numpy scalars -> JSON-friendly dicts/lists/numbers."""
    if depth > 20:
        raise ValueError("init arguments nested too deeply")
    if isinstance(obj, dict):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v, depth + 1) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise ValueError(f"unexpected value of type {type(obj).__name__} in init arguments")


def _as_tensor(path, name, value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        # a copy: native byte order, C order, writable, and 0-d arrays stay 0-d
        return torch.from_numpy(np.array(value, dtype=value.dtype.newbyteorder("="), order="C"))
    if isinstance(value, np.generic | float):
        return torch.tensor(np.asarray(value))
    raise CheckpointError(path, f"{name} is a {type(value).__name__}, not an array")


def _bind_kwargs(path, class_name, args, kwargs) -> dict:
    cls = _NETWORK_CLASSES[class_name]
    try:
        bound = inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as exc:
        raise CheckpointError(path, f"{class_name} arguments in the file do not fit dapper's "
                              f"{class_name}: {exc}") from None
    return dict(bound.arguments)


# ---------------------------------------------------------------------------------------------
# stylegan2-ada-pytorch pickles


def _record_state_dict(path, record: _PersistentRecord) -> dict[str, torch.Tensor]:
    sd = {}
    seen = set()

    def walk(rec, prefix, depth):
        if depth > 32 or id(rec) in seen:
            raise CheckpointError(path, "module tree is cyclic or too deep")
        seen.add(id(rec))
        st = rec.state
        skip = st.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for name, t in dict(st.get(group) or {}).items():
                if t is None or (group == "_buffers" and name in skip):
                    continue
                sd[prefix + str(name)] = _as_tensor(path, prefix + str(name), t)
        for name, child in dict(st.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, _PersistentRecord):
                raise CheckpointError(path, f"submodule {prefix}{name} is not a network record")
            walk(child, f"{prefix}{name}.", depth + 1)
        seen.discard(id(rec))

    walk(record, "", 0)
    return sd


def _ada_state(path, data, network) -> NetworkState:
    if not isinstance(data, dict):
        raise CheckpointError(path, f"pickle holds a {type(data).__name__}, not a network dict")
    rec = data.get(network)
    if not isinstance(rec, _PersistentRecord):
        nets = sorted(k for k, v in data.items() if isinstance(v, _PersistentRecord))
        raise CheckpointError(path, f"no network {network!r} in the pickle (it holds {nets})")
    if rec.class_name not in _NETWORK_CLASSES:
        raise CheckpointError(path, f"network {network!r} is a {rec.class_name}, which dapper "
                              "cannot build")
    try:
        args = _plain(list(rec.init_args or ()))
        kwargs = _plain(dict(rec.init_kwargs or {}))
    except ValueError as exc:
        raise CheckpointError(path, f"init arguments of {network!r}: {exc}") from None
    kwargs = _bind_kwargs(path, rec.class_name, args, kwargs)
    sd = _record_state_dict(path, rec)
    if any(k.startswith("synthesis.input.") for k in sd):
        raise CheckpointError(path, "this is a StyleGAN3 generator, which dapper does not support")
    meta = {}
    tsk = data.get("training_set_kwargs")
    if isinstance(tsk, dict):
        try:
            meta["training_set_kwargs"] = _plain(tsk)
        except ValueError:
            pass
    return NetworkState(rec.class_name, kwargs, sd, "ada-pkl", str(path), meta)


# ---------------------------------------------------------------------------------------------
# Original TensorFlow pickles

_TF_G_KNOWN = {"truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure",
               "dlatent_avg_beta"}
_TF_D_KNOWN = {"structure"}


def _tf_kwarg(kwargs, known, name, default=None):
    known.add(name)
    value = kwargs.get(name, default)
    return default if value is None else value


def _tf_generator_kwargs(path, static_kwargs: dict) -> dict:
    kw = dict(static_kwargs)
    known = set(_TF_G_KNOWN)

    def get(name, default=None):
        return _tf_kwarg(kw, known, name, default)

    w_avg_beta = kw.get("w_avg_beta", kw.get("dlatent_avg_beta", 0.995))
    known.add("w_avg_beta")
    out = dict(
        z_dim=get("latent_size", 512),
        c_dim=get("label_size", 0),
        w_dim=get("dlatent_size", 512),
        img_resolution=get("resolution", 1024),
        img_channels=get("num_channels", 3),
        mapping_kwargs=dict(
            num_layers=get("mapping_layers", 8),
            embed_features=kw.get("label_fmaps"),
            layer_features=kw.get("mapping_fmaps"),
            activation=get("mapping_nonlinearity", "lrelu"),
            lr_multiplier=get("mapping_lrmul", 0.01),
            # TF's None means "never update", which is beta 1
            w_avg_beta=1 if w_avg_beta is None else w_avg_beta,
        ),
        synthesis_kwargs=dict(
            # TF fmap_base counts feature maps at stage 1 (8x8 is stage 2): ada's base is twice it
            channel_base=get("fmap_base", 16384) * 2,
            channel_max=get("fmap_max", 512),
            num_fp16_res=get("num_fp16_res", 0),
            conv_clamp=kw.get("conv_clamp"),
            architecture=get("architecture", "skip"),
            resample_filter=list(get("resample_kernel", [1, 3, 3, 1])),
            use_noise=get("use_noise", True),
            activation=get("nonlinearity", "lrelu"),
        ),
    )
    known.update({"label_fmaps", "mapping_fmaps", "conv_clamp"})
    if get("fmap_decay", 1.0) != 1.0 or get("fmap_min", 1) != 1:
        raise CheckpointError(path, "TensorFlow generator uses fmap_decay/fmap_min, which the "
                              "ada layout cannot express")
    unknown = sorted(set(kw) - known)
    if unknown:
        raise CheckpointError(path, f"TensorFlow generator has settings dapper cannot convert: "
                              f"{unknown}")
    return out


def _tf_generator_state(path, params: dict, kwargs: dict) -> dict[str, torch.Tensor]:
    def p(name):
        if name not in params:
            raise CheckpointError(path, f"TensorFlow variable {name!r} is missing")
        return np.asarray(params[name])

    sd = {}

    def put(key, arr):
        sd[key] = _as_tensor(path, key, np.array(arr, dtype=np.float32, order="C"))

    res_log2 = int(math.log2(kwargs["img_resolution"]))
    syn = kwargs["synthesis_kwargs"]
    arch = syn["architecture"]
    # The "orig" TF networks name their output layers by level of detail.
    if arch != "orig" and "synthesis/ToRGB_lod0/weight" in params:
        arch = syn["architecture"] = "orig"
    put("mapping.w_avg", p("dlatent_avg"))
    if kwargs["c_dim"] > 0:
        put("mapping.embed.weight", p("mapping/LabelEmbed/weight").T)
        put("mapping.embed.bias", p("mapping/LabelEmbed/bias"))
    for i in range(kwargs["mapping_kwargs"]["num_layers"]):
        put(f"mapping.fc{i}.weight", p(f"mapping/Dense{i}/weight").T)
        put(f"mapping.fc{i}.bias", p(f"mapping/Dense{i}/bias"))

    def modconv(key, tf, noise_index, flip):
        w = p(f"{tf}/weight")
        if flip:  # TF upsamples with a transposed conv on the flipped kernel
            w = w[::-1, ::-1]
        put(f"{key}.weight", w.transpose(3, 2, 0, 1))
        put(f"{key}.bias", p(f"{tf}/bias"))
        put(f"{key}.affine.weight", p(f"{tf}/mod_weight").T)
        put(f"{key}.affine.bias", p(f"{tf}/mod_bias") + 1)  # TF adds the 1 at run time
        if syn["use_noise"]:
            put(f"{key}.noise_const", p(f"synthesis/noise{noise_index}")[0, 0])
            put(f"{key}.noise_strength", p(f"{tf}/noise_strength"))

    for log2 in range(2, res_log2 + 1):
        r = 2 ** log2
        key, tf = f"synthesis.b{r}", f"synthesis/{r}x{r}"
        if r == 4:
            put(f"{key}.const", p(f"{tf}/Const/const")[0])
            modconv(f"{key}.conv1", f"{tf}/Conv", 0, False)
        else:
            modconv(f"{key}.conv0", f"{tf}/Conv0_up", 2 * log2 - 5, True)
            modconv(f"{key}.conv1", f"{tf}/Conv1", 2 * log2 - 4, False)
        if arch == "skip" or log2 == res_log2:
            rgb = "synthesis/ToRGB_lod0" if arch == "orig" else f"{tf}/ToRGB"
            put(f"{key}.torgb.weight", p(f"{rgb}/weight").transpose(3, 2, 0, 1))
            put(f"{key}.torgb.bias", p(f"{rgb}/bias"))
            put(f"{key}.torgb.affine.weight", p(f"{rgb}/mod_weight").T)
            put(f"{key}.torgb.affine.bias", p(f"{rgb}/mod_bias") + 1)
        if arch == "resnet" and r > 4:
            put(f"{key}.skip.weight", p(f"{tf}/Skip/weight")[::-1, ::-1].transpose(3, 2, 0, 1))
    return sd


def _tf_discriminator_kwargs(path, static_kwargs: dict) -> dict:
    kw = dict(static_kwargs)
    known = set(_TF_D_KNOWN)

    def get(name, default=None):
        return _tf_kwarg(kw, known, name, default)

    out = dict(
        c_dim=get("label_size", 0),
        img_resolution=get("resolution", 1024),
        img_channels=get("num_channels", 3),
        architecture=get("architecture", "resnet"),
        channel_base=get("fmap_base", 16384) * 2,
        channel_max=get("fmap_max", 512),
        num_fp16_res=get("num_fp16_res", 0),
        conv_clamp=kw.get("conv_clamp"),
        cmap_dim=kw.get("mapping_fmaps"),
        block_kwargs=dict(
            activation=get("nonlinearity", "lrelu"),
            resample_filter=list(get("resample_kernel", [1, 3, 3, 1])),
            freeze_layers=get("freeze_layers", 0),
        ),
        mapping_kwargs=dict(
            num_layers=get("mapping_layers", 0),
            embed_features=kw.get("mapping_fmaps"),
            layer_features=kw.get("mapping_fmaps"),
            activation=get("nonlinearity", "lrelu"),
            lr_multiplier=get("mapping_lrmul", 0.1),
        ),
        epilogue_kwargs=dict(
            # D_stylegan2's own default is 4 (legacy.py's None would mean the whole batch)
            mbstd_group_size=get("mbstd_group_size", 4),
            mbstd_num_channels=get("mbstd_num_features", 1),
            activation=get("nonlinearity", "lrelu"),
        ),
    )
    known.update({"conv_clamp", "mapping_fmaps"})
    unknown = sorted(set(kw) - known)
    if unknown:
        raise CheckpointError(path, f"TensorFlow discriminator has settings dapper cannot "
                              f"convert: {unknown}")
    return out


def _tf_discriminator_state(path, params: dict, kwargs: dict) -> dict[str, torch.Tensor]:
    def p(name):
        if name not in params:
            raise CheckpointError(path, f"TensorFlow variable {name!r} is missing")
        return np.asarray(params[name])

    sd = {}

    def put(key, arr):
        sd[key] = _as_tensor(path, key, np.array(arr, dtype=np.float32, order="C"))

    def conv(key, tf, bias=True):
        put(f"{key}.weight", p(f"{tf}/weight").transpose(3, 2, 0, 1))
        if bias:
            put(f"{key}.bias", p(f"{tf}/bias"))

    def dense(key, tf):
        put(f"{key}.weight", p(f"{tf}/weight").T)
        put(f"{key}.bias", p(f"{tf}/bias"))

    res = kwargs["img_resolution"]
    arch = kwargs["architecture"]
    if "FromRGB_lod0/weight" in params:
        arch = kwargs["architecture"] = "orig"
        params = dict(params)
        for name, value in list(params.items()):
            m = re.fullmatch(r"FromRGB_lod(\d+)/(.*)", name)
            if m:
                r = res >> int(m.group(1))
                params[f"{r}x{r}/FromRGB/{m.group(2)}"] = value
    r = res
    while r > 4:
        key, tf = f"b{r}", f"{r}x{r}"
        if r == res or arch == "skip":
            conv(f"{key}.fromrgb", f"{tf}/FromRGB")
        conv(f"{key}.conv0", f"{tf}/Conv0")
        conv(f"{key}.conv1", f"{tf}/Conv1_down")
        if arch == "resnet":
            conv(f"{key}.skip", f"{tf}/Skip", bias=False)
        r //= 2
    if kwargs["c_dim"] > 0:
        dense("mapping.embed", "LabelEmbed")
        for i in range(kwargs["mapping_kwargs"]["num_layers"]):
            dense(f"mapping.fc{i}", f"Mapping{i}")
    if arch == "skip":
        conv("b4.fromrgb", "4x4/FromRGB")
    conv("b4.conv", "4x4/Conv")
    dense("b4.fc", "4x4/Dense0")
    dense("b4.out", "Output")
    return sd


def _tf_state(path, data, network) -> NetworkState:
    if not (isinstance(data, tuple) and len(data) == 3
            and all(isinstance(n, _TFNetworkStub) for n in data)):
        raise CheckpointError(path, "pickle is neither a stylegan2-ada-pytorch network dict nor "
                              "a TensorFlow (G, D, Gs) tuple")
    index = {"G": 0, "D": 1, "G_ema": 2, "Gs": 2}.get(network)
    if index is None:
        raise CheckpointError(path, f"no network {network!r}; TensorFlow pickles hold G, D, G_ema")
    net = data[index]
    version = net.state.get("version")
    if not isinstance(version, int) or version < 4:
        raise CheckpointError(path, f"TensorFlow network version {version!r} is too old "
                              "(StyleGAN2 pickles are version 4 or later)")
    static = net.state.get("static_kwargs") or {}
    if not isinstance(static, dict):
        raise CheckpointError(path, "TensorFlow static_kwargs is not a dict")
    try:
        static = _plain(static)
    except ValueError as exc:
        raise CheckpointError(path, f"TensorFlow static_kwargs: {exc}") from None
    try:
        params = net.tf_params()
    except (pickle.UnpicklingError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"TensorFlow variables are malformed: {exc}") from None
    if index == 1:
        kwargs = _tf_discriminator_kwargs(path, static)
        sd = _tf_discriminator_state(path, params, kwargs)
        cls = "Discriminator"
    else:
        kwargs = _tf_generator_kwargs(path, static)
        sd = _tf_generator_state(path, params, kwargs)
        cls = "Generator"
    return NetworkState(cls, kwargs, sd, "tf-pkl", str(path), {"tf_name": net.state.get("name")})


# ---------------------------------------------------------------------------------------------
# rosinality/stylegan2-pytorch


def _fit_channels(path, channels: dict[int, int]) -> tuple[int, int]:
    """(channel_base, channel_max) with min(base // res, max) == channels[res] for every res."""
    cmax = max(channels.values())
    top = max(channels)
    base = channels[top] * top if channels[top] < cmax else cmax * top
    if all(min(base // r, cmax) == c for r, c in channels.items()):
        return base, cmax
    raise CheckpointError(path, f"channel counts per resolution {dict(sorted(channels.items()))} "
                          "cannot be expressed as min(channel_base // res, channel_max)")


def _check_blur(path, sd, key, gain):
    if key not in sd:
        return
    want = ops.setup_filter([1, 3, 3, 1]) * gain
    k = sd[key].float()
    if k.shape != want.shape or not torch.allclose(k, want, atol=1e-6):
        raise CheckpointError(path, f"{key} is not the [1,3,3,1] filter dapper supports")


def _rosinality_generator_kwargs(path, sd) -> dict:
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    if n_mlp == 0 or "input.input" not in sd:
        raise CheckpointError(path, "not a rosinality generator state dict (no style.1.weight "
                              "or input.input)")
    if any(k.startswith("dwt") or k.startswith("iwt") for k in sd):
        raise CheckpointError(path, "this is a SWAGAN generator, which dapper does not support")
    style_dim = sd["style.1.weight"].shape[1]
    channels = {4: sd["input.input"].shape[1]}
    i = 0
    while f"to_rgbs.{i}.conv.weight" in sd:
        channels[2 ** (i + 3)] = sd[f"to_rgbs.{i}.conv.weight"].shape[2]
        i += 1
    size = 2 ** (i + 2)
    base, cmax = _fit_channels(path, channels)
    return dict(
        z_dim=style_dim, c_dim=0, w_dim=style_dim, img_resolution=size,
        img_channels=sd["to_rgb1.conv.weight"].shape[1],
        mapping_kwargs=dict(num_layers=n_mlp, lr_multiplier=0.01),
        synthesis_kwargs=dict(channel_base=base, channel_max=cmax),
    )


def _rosinality_generator_state(path, sd, kwargs, latent_avg) -> dict[str, torch.Tensor]:
    def g(key):
        if key not in sd:
            raise CheckpointError(path, f"rosinality key {key!r} is missing")
        return sd[key].detach().float()

    out = {}
    for i in range(kwargs["mapping_kwargs"]["num_layers"]):
        out[f"mapping.fc{i}.weight"] = g(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = g(f"style.{i + 1}.bias")
    out["synthesis.b4.const"] = g("input.input")[0]

    def styled(dst, src, noise):
        out[f"{dst}.weight"] = g(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = g(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = g(f"{src}.conv.modulation.bias")
        out[f"{dst}.noise_strength"] = g(f"{src}.noise.weight").reshape([])
        out[f"{dst}.bias"] = g(f"{src}.activate.bias")
        out[f"{dst}.noise_const"] = g(f"noises.noise_{noise}")[0, 0]

    def torgb(dst, src):
        out[f"{dst}.weight"] = g(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = g(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = g(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = g(f"{src}.bias").reshape(-1)

    styled("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    res_log2 = int(math.log2(kwargs["img_resolution"]))
    for log2 in range(3, res_log2 + 1):
        i = log2 - 3
        b = f"synthesis.b{2 ** log2}"
        # rosinality already stores the upsampling kernel flipped, as ada does
        styled(f"{b}.conv0", f"convs.{2 * i}", 2 * log2 - 5)
        styled(f"{b}.conv1", f"convs.{2 * i + 1}", 2 * log2 - 4)
        torgb(f"{b}.torgb", f"to_rgbs.{i}")
        _check_blur(path, sd, f"convs.{2 * i}.conv.blur.kernel", 4)
        _check_blur(path, sd, f"to_rgbs.{i}.upsample.kernel", 4)
    if latent_avg is not None:
        out["mapping.w_avg"] = latent_avg.detach().float().reshape(-1)
    return out


def _estimate_w_avg(kwargs, sd, n=4096) -> torch.Tensor:
    # rosinality training checkpoints carry no latent average; truncation needs one, so it is
    # estimated as rosinality's own mean_latent does (4096 samples), with a fixed seed.
    mapping = MappingNetwork(kwargs["z_dim"], 0, kwargs["w_dim"], num_ws=None, w_avg_beta=None,
                             **kwargs["mapping_kwargs"])
    mapping.load_state_dict({k[len("mapping."):]: v for k, v in sd.items()
                             if k.startswith("mapping.fc")})
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = torch.randn([n, kwargs["z_dim"]], generator=gen)
        return mapping(z, None).mean(dim=0)


def _rosinality_discriminator_state(path, sd) -> tuple[dict, dict]:
    if "convs.0.0.weight" not in sd or "final_linear.1.weight" not in sd:
        raise CheckpointError(path, "not a rosinality discriminator state dict")

    def g(key):
        if key not in sd:
            raise CheckpointError(path, f"rosinality key {key!r} is missing")
        return sd[key].detach().float()

    n_blocks = 0
    while f"convs.{n_blocks + 1}.conv1.0.weight" in sd:
        n_blocks += 1
    res = 2 ** (n_blocks + 2)
    channels = {}
    out = {f"b{res}.fromrgb.weight": g("convs.0.0.weight"),
           f"b{res}.fromrgb.bias": g("convs.0.1.bias")}
    r = res
    for k in range(1, n_blocks + 1):
        channels[r] = sd[f"convs.{k}.conv1.0.weight"].shape[0]
        out[f"b{r}.conv0.weight"] = g(f"convs.{k}.conv1.0.weight")
        out[f"b{r}.conv0.bias"] = g(f"convs.{k}.conv1.1.bias")
        out[f"b{r}.conv1.weight"] = g(f"convs.{k}.conv2.1.weight")
        out[f"b{r}.conv1.bias"] = g(f"convs.{k}.conv2.2.bias")
        out[f"b{r}.skip.weight"] = g(f"convs.{k}.skip.1.weight")
        _check_blur(path, sd, f"convs.{k}.conv2.0.kernel", 1)
        r //= 2
    channels[4] = sd["final_conv.0.weight"].shape[0]
    out["b4.conv.weight"] = g("final_conv.0.weight")
    out["b4.conv.bias"] = g("final_conv.1.bias")
    out["b4.fc.weight"] = g("final_linear.0.weight")
    out["b4.fc.bias"] = g("final_linear.0.bias")
    out["b4.out.weight"] = g("final_linear.1.weight")
    out["b4.out.bias"] = g("final_linear.1.bias")
    base, cmax = _fit_channels(path, channels)
    kwargs = dict(c_dim=0, img_resolution=res, img_channels=sd["convs.0.0.weight"].shape[1],
                  architecture="resnet", channel_base=base, channel_max=cmax,
                  epilogue_kwargs=dict(mbstd_group_size=4, mbstd_num_channels=1))
    return kwargs, out


def _torch_load(path: Path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # rosinality training checkpoints store their argparse options; a Namespace only
            # ever receives attributes, so allowing it runs nothing.
            with torch.serialization.safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        raise UnsafeCheckpointError(
            path, f"torch refused to load it as weights only ({' '.join(first[:3])[:400]}); "
            "nothing was executed") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"torch file is truncated or corrupt ({type(exc).__name__}: "
                              f"{str(exc).strip()[:300]})") from None


def _rosinality_state(path, data, network) -> NetworkState:
    if not isinstance(data, dict):
        raise CheckpointError(path, f"torch file holds a {type(data).__name__}, not a dict")
    if "style.1.weight" in data:  # a bare generator state dict
        data = {"g_ema": data}
    key = {"G_ema": "g_ema", "G": "g", "D": "d"}.get(network)
    if key is None or not isinstance(data.get(key), dict):
        found = sorted(k for k in ("g_ema", "g", "d") if isinstance(data.get(k), dict))
        if not found:
            raise CheckpointError(path, "torch file is not a rosinality checkpoint (no g_ema, g "
                                  "or d state dict)")
        raise CheckpointError(path, f"no network {network!r} in the file (it holds {found})")
    sd = data[key]
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(path, f"{key} entries are not tensors: {bad[:3]}")
    meta = {}
    if isinstance(data.get("args"), argparse.Namespace):
        try:
            meta["train_args"] = _plain(vars(data["args"]))
        except ValueError:
            pass
    if key == "d":
        kwargs, out = _rosinality_discriminator_state(path, sd)
        return NetworkState("Discriminator", kwargs, out, "rosinality-pt", str(path), meta)
    kwargs = _rosinality_generator_kwargs(path, sd)
    latent_avg = data.get("latent_avg")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise CheckpointError(path, "latent_avg is not a tensor")
    out = _rosinality_generator_state(path, sd, kwargs, latent_avg)
    if latent_avg is None:
        try:
            out["mapping.w_avg"] = _estimate_w_avg(kwargs, out)
        except RuntimeError as exc:
            raise CheckpointError(path, f"mapping weights do not fit: {exc}") from None
        meta["w_avg"] = "estimated from 4096 samples, seed 0 (the file has no latent_avg)"
    return NetworkState("Generator", kwargs, out, "rosinality-pt", str(path), meta)


# ---------------------------------------------------------------------------------------------
# dapper safetensors + JSON


def _dapper_paths(path: Path) -> tuple[Path, Path]:
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def _dapper_state(path: Path, kind: str) -> NetworkState:
    from safetensors import SafetensorError, safe_open

    if kind == "json":
        config = _read_json(path)
        name = config.get("weights") or path.stem + ".safetensors"
        if not isinstance(name, str) or Path(name).name != name:
            raise CheckpointError(path, f"config names weights {name!r}; a bare file name beside "
                                  "the config is expected")
        weights = path.with_name(name)
        if not weights.is_file():
            raise FileNotFoundError(f"{path}: weights file {str(weights)!r} named by the config "
                                    "does not exist")
        if detect_format(weights) != "safetensors":
            raise CheckpointError(weights, "weights file is not safetensors")
    else:
        weights = path
        config = None
        beside = _dapper_paths(path)[1]
        if beside.is_file():
            config = _read_json(beside)
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(weights, f"safetensors file is truncated or corrupt ({exc})") from None
    if config is not None and config.get("sha256"):
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()
        if digest != config["sha256"]:
            raise CheckpointError(weights, "weights do not match the sha256 in their JSON config "
                                  "(the file was replaced or damaged)")
    if config is None:
        if "dapper_config" not in header:
            raise CheckpointError(weights, "safetensors file has no dapper config (no "
                                  f"{_dapper_paths(weights)[1].name} beside it and none in its "
                                  "header); save networks with save_generator")
        try:
            config = json.loads(header["dapper_config"])
        except json.JSONDecodeError as exc:
            raise CheckpointError(weights, f"config in the header is not JSON ({exc})") from None
    if config.get("format") != DAPPER_FORMAT:
        raise CheckpointError(path, f"config format is {config.get('format')!r}, expected "
                              f"{DAPPER_FORMAT!r}")
    if int(config.get("format_version", 0)) > DAPPER_FORMAT_VERSION:
        raise CheckpointError(path, f"config format_version {config.get('format_version')} is "
                              "newer than this dapper understands")
    cls = config.get("class_name")
    if cls not in _NETWORK_CLASSES or not isinstance(config.get("init_kwargs"), dict):
        raise CheckpointError(path, f"config names class {cls!r} / lacks init_kwargs")
    kwargs = _bind_kwargs(path, cls, [], config["init_kwargs"])
    return NetworkState(cls, kwargs, sd, "dapper", str(weights), dict(config.get("metadata") or {}))


def _read_json(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(path, f"config is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(path, "config is not a JSON object")
    return config


# ---------------------------------------------------------------------------------------------
# Public API


def load_state(path, network: str = "G_ema") -> NetworkState:
    """Read one network of a checkpoint as an ada-layout state dict plus init kwargs.

    ``network`` picks ``"G_ema"`` (the averaged generator used for sampling; default), ``"G"``
    or ``"D"`` in formats that hold several; dapper files hold one network and ignore it
    unless it asks for a different class.
    """
    path = _existing_file(path)
    kind = detect_format(path)
    if kind == "pickle":
        data = _restricted_unpickle(path)
        if isinstance(data, tuple):
            return _tf_state(path, data, network)
        return _ada_state(path, data, network)
    if kind in ("torch-zip", "torch-legacy"):
        return _rosinality_state(path, _torch_load(path), network)
    st = _dapper_state(path, kind)
    want = "Discriminator" if network == "D" else "Generator"
    if st.class_name != want:
        raise CheckpointError(path, f"file holds a {st.class_name}, not a {want}")
    return st


def _auto_content_box(st: NetworkState, path: Path):
    res = st.init_kwargs.get("img_resolution")
    if res != 512:
        return None
    hints = [path.name, str(st.metadata.get("dataset", ""))]
    tsk = st.metadata.get("training_set_kwargs") or {}  # ada: the dataset it was trained on
    hints.append(str(tsk.get("path", "")))
    hints.append(str((st.metadata.get("train_args") or {}).get("path", "")))  # rosinality
    if any(_CAR_RE.search(Path(h).name.lower()) for h in hints if h):
        return LSUN_CAR_CONTENT_BOX
    return None


def _build(st: NetworkState, kwargs: dict, device) -> torch.nn.Module:
    cls = _NETWORK_CLASSES[st.class_name]
    try:
        net = cls(**kwargs)
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(st.path, f"cannot build {st.class_name} from the file's settings "
                              f"{kwargs}: {exc}") from None
    expected = net.state_dict()
    sd = dict(st.state_dict)
    if st.format in ("tf-pkl", "rosinality-pt"):
        # these formats do not store the FIR filters; they follow from resample_filter
        for k, v in expected.items():
            if k.endswith("resample_filter") and k not in sd:
                sd[k] = v
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [f"{k}: file {list(sd[k].shape)} vs network {list(v.shape)}"
             for k, v in expected.items() if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[:3]})")
        if wrong:
            parts.append(f"shape mismatch {wrong[:3]}")
        raise CheckpointError(st.path, f"weights do not fit {st.class_name}: " + "; ".join(parts))
    with torch.no_grad():
        net.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=True)
    net.checkpoint_metadata = dict(st.metadata, format=st.format, path=st.path)
    return net.eval().requires_grad_(False).to(device)


def load_generator(path, device="cpu", content_box=None, network: str = "G_ema") -> Generator:
    """Load a generator from any supported checkpoint (see the module docstring).

    ``content_box``: ``None`` applies the rule in the module docstring (LSUN car at 512 px ->
    ``(0, 64, 512, 448)``), a tuple ``(x0, y0, x1, y1)`` in canvas pixels sets it, ``"full"``
    forces the full square. Returns ``Generator`` in eval mode with ``requires_grad`` off,
    on ``device``; ``G(z, c, truncation_psi, truncation_cutoff, noise_mode)`` -> NCHW in [-1, 1].
    """
    path = _existing_file(path)
    if network == "D":
        raise ValueError("use load_discriminator for 'D'")
    st = load_state(path, network)
    if st.class_name != "Generator":
        raise CheckpointError(path, f"network {network!r} is a {st.class_name}")
    kwargs = json.loads(json.dumps(st.init_kwargs))  # deep copy, plain containers
    syn = kwargs.setdefault("synthesis_kwargs", {}) or {}
    kwargs["synthesis_kwargs"] = syn
    if isinstance(content_box, str):
        if content_box != "full":
            raise ValueError(f"content_box must be a 4-tuple, None or 'full', got {content_box!r}")
        syn.pop("content_box", None)
    elif content_box is not None:
        syn["content_box"] = [int(v) for v in content_box]
    elif st.format != "dapper":
        box = _auto_content_box(st, path)
        if box is not None:
            syn["content_box"] = list(box)
    return _build(st, kwargs, device)


def load_discriminator(path, device="cpu", network: str = "D") -> Discriminator:
    """Load a discriminator (ada ``D``, TensorFlow ``D``, rosinality ``d`` or a dapper file)."""
    st = load_state(path, network)
    if st.class_name != "Discriminator":
        raise CheckpointError(path, f"network {network!r} is a {st.class_name}")
    return _build(st, json.loads(json.dumps(st.init_kwargs)), device)


def _save_network(net: torch.nn.Module, path, metadata: dict | None) -> Path:
    from safetensors.torch import save as st_save

    from ..utils import atomic_write_bytes

    cls = type(net).__name__
    if cls not in _NETWORK_CLASSES or not isinstance(getattr(net, "init_kwargs", None), dict):
        raise TypeError(f"can only save dapper Generator/Discriminator modules, got {cls}")
    init_kwargs = dict(net.init_kwargs)
    if cls == "Generator":
        box = tuple(net.content_box)
        syn = dict(init_kwargs.get("synthesis_kwargs") or {})
        if box == (0, 0, net.img_resolution, net.img_resolution):
            syn.pop("content_box", None)
        else:
            syn["content_box"] = list(box)
        init_kwargs["synthesis_kwargs"] = syn
    weights, config_path = _dapper_paths(Path(path).expanduser())
    config = {
        "format": DAPPER_FORMAT,
        "format_version": DAPPER_FORMAT_VERSION,
        "class_name": cls,
        "init_kwargs": _plain(init_kwargs),
        "weights": weights.name,
        "metadata": _plain(dict(metadata or {})),
    }
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    blob = st_save(tensors, metadata={"dapper_config": json.dumps(config)})
    config["sha256"] = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(weights, blob)
    atomic_write_bytes(config_path, (json.dumps(config, indent=2) + "\n").encode("utf-8"))
    return weights


def save_generator(G: Generator, path, metadata: dict | None = None) -> Path:
    """Write ``<name>.safetensors`` + ``<name>.json``; ``path`` may end in either or neither.

    ``metadata`` (JSON-able) records e.g. how the network was trained. Returns the weights path.
    """
    return _save_network(G, path, metadata)


def save_discriminator(D: Discriminator, path, metadata: dict | None = None) -> Path:
    """Like :func:`save_generator`, for a ``Discriminator``."""
    return _save_network(D, path, metadata)
