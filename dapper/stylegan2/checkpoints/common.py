"""What every checkpoint format shares: errors, the network state all loaders return, container
detection, and the helpers that turn foreign values into tensors and init kwargs."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..networks import Discriminator, Generator

LSUN_CAR_CONTENT_BOX = (0, 64, 512, 448)
DAPPER_FORMAT = "dapper-stylegan2"
DAPPER_FORMAT_VERSION = 1

NETWORK_CLASSES = {"Generator": Generator, "Discriminator": Discriminator}
# A whole word "car"/"cars" (also "lsuncar"), so that "cartoon" or "scar" do not count.
CAR_RE = re.compile(r"(?<![a-z])(lsun)?cars?(?![a-z])")


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
    path = existing_file(path)
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


def existing_file(path) -> Path:
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
# Helpers shared by the converters


def plain(obj, depth=0):
    """EasyDicts, OrderedDicts, tuples, numpy scalars -> JSON-friendly dicts/lists/numbers."""
    if depth > 20:
        raise ValueError("init arguments nested too deeply")
    if isinstance(obj, dict):
        return {str(k): plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v, depth + 1) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise ValueError(f"unexpected value of type {type(obj).__name__} in init arguments")


def as_tensor(path, name, value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray) and not value.dtype.hasobject:
        # a copy: native byte order, C order, writable, and 0-d arrays stay 0-d
        return torch.from_numpy(np.array(value, dtype=value.dtype.newbyteorder("="), order="C"))
    if isinstance(value, np.generic | float):
        return torch.tensor(np.asarray(value))
    raise CheckpointError(path, f"{name} is a {type(value).__name__}, not an array")


def bind_kwargs(path, class_name, args, kwargs) -> dict:
    cls = NETWORK_CLASSES[class_name]
    try:
        bound = inspect.signature(cls).bind(*args, **kwargs)
    except TypeError as exc:
        raise CheckpointError(path, f"{class_name} arguments in the file do not fit dapper's "
                              f"{class_name}: {exc}") from None
    return dict(bound.arguments)


def torch_refusal(exc: Exception) -> str:
    """What torch's weights-only unpickler refused, without its advice to load the file with
    ``weights_only=False`` (which would run the file's code): the refused global, or a plain phrase."""
    text = str(exc)
    # torch words it in several ways across versions; each names the global on a line of its own
    found = re.search(r"(?:WeightsUnpickler error: |Trying to load )?([^\n]*(?:GLOBAL|global)[^\n]*)", text)
    reason = (found.group(1) if found else "").split(" Please ")[0].split(" Check the ")[0].strip()
    if "weights_only" in reason:
        reason = ""
    return reason[:300] or "objects other than tensors"
