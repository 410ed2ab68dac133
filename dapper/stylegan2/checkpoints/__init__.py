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

import json
import os
from pathlib import Path

import torch

from ..networks import Discriminator, Generator
from .ada import ada_state
from .common import (
    CAR_RE,
    LSUN_CAR_CONTENT_BOX,
    NETWORK_CLASSES,
    CheckpointError,
    NetworkState,
    UnsafeCheckpointError,
    detect_format,
    existing_file,
)
from .native import dapper_paths, dapper_state, save_discriminator, save_generator
from .rosinality import rosinality_state, torch_load
from .tf import tf_state
from .unpickle import restricted_unpickle

__all__ = [
    "CheckpointError",
    "LSUN_CAR_CONTENT_BOX",
    "NetworkState",
    "UnsafeCheckpointError",
    "dapper_paths",
    "detect_format",
    "load_discriminator",
    "load_generator",
    "load_state",
    "save_discriminator",
    "save_generator",
]

# ---------------------------------------------------------------------------------------------
# Public API


def load_state(path, network: str = "G_ema") -> NetworkState:
    """Read one network of a checkpoint as an ada-layout state dict plus init kwargs.

    ``network`` picks ``"G_ema"`` (the averaged generator used for sampling; default), ``"G"``
    or ``"D"`` in formats that hold several; dapper files hold one network and ignore it
    unless it asks for a different class.
    """
    path = existing_file(path)
    kind = detect_format(path)
    if kind == "pickle":
        data = restricted_unpickle(path)
        if isinstance(data, tuple):
            return tf_state(path, data, network)
        return ada_state(path, data, network)
    if kind in ("torch-zip", "torch-legacy"):
        return rosinality_state(path, torch_load(path), network)
    st = dapper_state(path, kind)
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
    if any(CAR_RE.search(Path(h).name.lower()) for h in hints if h):
        return LSUN_CAR_CONTENT_BOX
    return None


def _build(st: NetworkState, kwargs: dict, device) -> torch.nn.Module:
    cls = NETWORK_CLASSES[st.class_name]
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


def load_generator(path, device="cpu", content_box=None, network: str = "G_ema",
                   cpu_bf16: int | str | None = None) -> Generator:
    """Load a generator from any supported checkpoint (see the module docstring).

    ``content_box``: ``None`` applies the rule in the module docstring (LSUN car at 512 px ->
    ``(0, 64, 512, 448)``), a tuple ``(x0, y0, x1, y1)`` in canvas pixels sets it, ``"full"``
    forces the full square. Returns ``Generator`` in eval mode with ``requires_grad`` off,
    on ``device``; ``G(z, c, truncation_psi, truncation_cutoff, noise_mode)`` -> NCHW in [-1, 1].

    ``cpu_bf16``: how many of the highest resolutions run under bfloat16 autocast on the CPU
    (:meth:`Generator.set_cpu_bf16`), about twice as fast on a CPU with native bfloat16, at about
    50 dB PSNR to float32 (``bench/generator_bf16.py``); 0 or ``None`` (the default, which training,
    checkpoint checks and the embedded world's hashes rely on): the official float32 numerics.
    ``"auto"`` (what real mode's notebooks and commands load with): for a stylegan2-ada-pytorch
    ``.pkl`` the blocks it runs in float16 on a GPU (its ``num_fp16_res``, 4 in every ada training
    config, 0 for one trained with ``--fp32``), for a TensorFlow ``.pkl`` or rosinality ``.pt`` (no
    float16 blocks) ada's four, for dapper's own files 0 (the embedded world's generators, trained and
    measured in float32); ``$DAPPER_GENERATOR_BF16`` (a number of resolutions), when set, decides
    ``"auto"`` instead. The choice is part of the generator's hash (:func:`dapper.utils.weights_hash`),
    so no cache mixes the two numerics.
    """
    path = existing_file(path)
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
    G = _build(st, kwargs, device)
    G.set_cpu_bf16(_cpu_bf16_resolutions(cpu_bf16, st.format, syn.get("num_fp16_res")))
    return G


ADA_FP16_RES = 4  # stylegan2-ada-pytorch's num_fp16_res in every training config


def _cpu_bf16_resolutions(asked, fmt: str, num_fp16_res: int | None) -> int:
    """How many resolutions ``load_generator`` runs in bfloat16 on the CPU (its ``cpu_bf16``)."""
    if asked is None:
        return 0
    if asked == "auto":
        env = os.environ.get("DAPPER_GENERATOR_BF16", "").strip()
        if env:
            try:
                return _check_resolutions(int(env), "DAPPER_GENERATOR_BF16")
            except ValueError:
                raise ValueError(f"DAPPER_GENERATOR_BF16 must be a number of resolutions >= 0 (0: float32), "
                                 f"got {env!r}") from None
        if fmt == "dapper":
            return 0
        if fmt == "ada-pkl" and num_fp16_res is not None:  # the file's own choice, 0 (trained --fp32) included
            return _check_resolutions(int(num_fp16_res), "num_fp16_res")
        return ADA_FP16_RES  # TensorFlow and rosinality files have no float16 blocks: ada's four
    if isinstance(asked, bool) or not isinstance(asked, int):
        raise ValueError(f"cpu_bf16 must be a number of resolutions, 'auto' or None, got {asked!r}")
    return _check_resolutions(asked, "cpu_bf16")


def _check_resolutions(n: int, what: str) -> int:
    if n < 0:
        raise ValueError(f"{what} must be a number of resolutions >= 0, got {n}")
    return n


def load_discriminator(path, device="cpu", network: str = "D") -> Discriminator:
    """Load a discriminator (ada ``D``, TensorFlow ``D``, rosinality ``d`` or a dapper file)."""
    st = load_state(path, network)
    if st.class_name != "Discriminator":
        raise CheckpointError(path, f"network {network!r} is a {st.class_name}")
    return _build(st, json.loads(json.dumps(st.init_kwargs)), device)


