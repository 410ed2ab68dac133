"""dapper's own format: ``<name>.safetensors`` (the state dict) with ``<name>.json`` beside it;
the same JSON is kept in the safetensors header, so the weights file alone still loads."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from dapper.utils import atomic_write_bytes

from ..networks import Discriminator, Generator
from .common import (
    DAPPER_FORMAT,
    DAPPER_FORMAT_VERSION,
    NETWORK_CLASSES,
    CheckpointError,
    NetworkState,
    bind_kwargs,
    detect_format,
    plain,
)


def dapper_paths(path: Path) -> tuple[Path, Path]:
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


def dapper_state(path: Path, kind: str) -> NetworkState:
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
        beside = dapper_paths(path)[1]
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
                                  f"{dapper_paths(weights)[1].name} beside it and none in its "
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
    if cls not in NETWORK_CLASSES or not isinstance(config.get("init_kwargs"), dict):
        raise CheckpointError(path, f"config names class {cls!r} / lacks init_kwargs")
    kwargs = bind_kwargs(path, cls, [], config["init_kwargs"])
    return NetworkState(cls, kwargs, sd, "dapper", str(weights), dict(config.get("metadata") or {}))


def _read_json(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(path, f"config is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(path, "config is not a JSON object")
    return config


def _save_network(net: torch.nn.Module, path, metadata: dict | None) -> Path:
    cls = type(net).__name__
    if cls not in NETWORK_CLASSES or not isinstance(getattr(net, "init_kwargs", None), dict):
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
    weights, config_path = dapper_paths(Path(path).expanduser())
    config = {
        "format": DAPPER_FORMAT,
        "format_version": DAPPER_FORMAT_VERSION,
        "class_name": cls,
        "init_kwargs": plain(init_kwargs),
        "weights": weights.name,
        "metadata": plain(dict(metadata or {})),
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

