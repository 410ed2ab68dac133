"""Files of the small helper networks (oracles, annotators, perceptual network, encoder): one
``NAME.safetensors`` with ``NAME.json`` beside it.

The JSON holds the configuration (architecture, how it was trained, held-out scores) and the
sha256 of the weights file; the same configuration is kept in the safetensors header. Reading
checks both files exist (else the error names the command that makes them), that the JSON parses,
that the weights are the ones the JSON was written for, and that the safetensors file is whole.
Nothing in either file is ever executed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from safetensors import SafetensorError

from dapper.utils import atomic_write_bytes

__all__ = ["ModelFileError", "save_model", "read_model", "config_path"]


class ModelFileError(ValueError):
    """A helper network's file is damaged or does not belong to its JSON."""


def config_path(path) -> Path:
    """The JSON beside ``NAME.safetensors``."""
    return Path(path).with_suffix(".json")


def save_model(module, config: dict, path) -> Path:
    """Write ``module``'s state dict to ``path`` (safetensors, ``config`` in its header) and
    ``config`` plus the weights' sha256 to the JSON beside it, each atomically. Returns ``path``."""
    from safetensors.torch import save

    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    config = {k: v for k, v in config.items() if k != "sha256"}
    blob = save(state, metadata={"config": json.dumps(config)})
    config["sha256"] = hashlib.sha256(blob).hexdigest()
    atomic_write_bytes(path, blob)
    atomic_write_bytes(config_path(path), (json.dumps(config, indent=1) + "\n").encode())
    return path


def read_model(path, what: str, command: str) -> tuple[dict, dict]:
    """``(state dict, config)`` of the helper network at ``path``. ``what`` names it and
    ``command`` says how to make it, in the errors: FileNotFoundError when either file is missing,
    :class:`ModelFileError` when the JSON does not parse, the weights' sha256 differs from the
    one the JSON records, or the safetensors file is truncated or corrupt."""
    from safetensors.torch import load

    path = Path(path)
    cfg_path = config_path(path)
    if not path.is_file() or not cfg_path.is_file():
        raise FileNotFoundError(f"{what} {path} (and its {cfg_path.name}) not found; make it with `{command}`")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{cfg_path}: not valid JSON ({exc}); remake it with `{command}`") from None
    blob = path.read_bytes()
    recorded = config.get("sha256")
    if recorded and hashlib.sha256(blob).hexdigest() != recorded:
        raise ModelFileError(f"{path}: the weights are not the ones {cfg_path.name} was written for (sha256 "
                             f"differs: replaced or damaged); remake them with `{command}`")
    try:
        state = load(blob)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: truncated or corrupt safetensors file ({exc}); "
                             f"remake it with `{command}`") from None
    return state, config
