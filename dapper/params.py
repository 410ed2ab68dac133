"""The notebooks' parameters: the profiles and datasets they accept, and the check every notebook
runs on its papermill parameters before anything else."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PROFILES", "DATASETS", "check_params"]

PROFILES = ("quick", "full")
DATASETS = ("toycars", "stanford_cars")
_NOT_GIVEN = object()


def check_params(
    profile: str,
    dataset: str,
    data_root: str | os.PathLike | None = _NOT_GIVEN,
    network: str | os.PathLike | None = _NOT_GIVEN,
) -> None:
    """Validate a notebook's papermill parameters; raise with a message naming the bad one.

    ``profile`` is ``quick`` or ``full``; ``dataset`` is ``toycars`` or ``stanford_cars``;
    ``data_root`` and ``network`` (real-mode paths) must exist when given, and a notebook passes
    both (None when unset): real mode then needs them, and ``network`` must be a checkpoint file,
    which is checked here, before anything runs.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {', '.join(PROFILES)}")
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not one of {', '.join(DATASETS)}")
    if dataset == "stanford_cars":
        missing = [name for name, value in (("data_root", data_root), ("network", network)) if value is None]
        if missing:
            raise ValueError(
                f"dataset='stanford_cars' needs {' and '.join(missing)}: the Stanford Cars folder and a StyleGAN2 "
                "checkpoint, e.g. make report DATASET=stanford_cars REPORT_ARGS=\"-p data_root /data/stanford_cars "
                "-p network /models/stylegan2-car-config-f.pkl\"")
    data_root = None if data_root is _NOT_GIVEN else data_root
    network = None if network is _NOT_GIVEN else network
    if data_root is not None and not Path(data_root).expanduser().is_dir():
        raise FileNotFoundError(
            f"data_root={str(data_root)!r} is not a folder; point it at the extracted "
            "Stanford Cars data (devkit layout or torchvision layout)"
        )
    if network is not None and not Path(network).expanduser().is_file():
        raise FileNotFoundError(
            f"network={str(network)!r} is not a file; point it at a StyleGAN2 checkpoint "
            "(stylegan2-ada-pytorch or TF .pkl, rosinality .pt, or a dapper .safetensors)"
        )
    if network is not None:
        from dapper.stylegan2.checkpoints import CheckpointError, detect_format

        try:
            detect_format(Path(network).expanduser())
        except CheckpointError as e:
            raise ValueError(f"network={str(network)!r} is not a StyleGAN2 checkpoint: {e}") from e
