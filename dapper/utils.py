"""Small helpers every notebook and module needs: device, seeding, cache folder, atomic writes.

torch is imported inside the functions that need it, so that the report runner and the
``python -m dapper`` dispatcher (which import this module) start quickly.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

PROFILES = ("quick", "full")
DATASETS = ("toycars", "stanford_cars")


def weights_hash(module) -> str:
    """sha256 over a torch module's state dict (names, dtypes, shapes and bytes), 64 hex digits: the
    one id of a generator (or any network) in caches, results and checkpoints. Two modules hash
    equal exactly when they hold the same weights, whatever file they came from."""
    import hashlib

    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def repo_root() -> Path:
    """The repository checkout this package lives in (the folder holding ``dapper/``)."""
    return Path(__file__).resolve().parent.parent


def get_device(prefer: str | None = None):
    """Pick the torch device: CUDA when present, else CPU.

    ``prefer="cpu"`` forces the CPU; ``prefer="cuda"`` (or ``"cuda:1"``) insists on a GPU and
    raises if none is visible. Without ``prefer``, the environment variable ``DAPPER_DEVICE``
    is honoured, so a whole papermill run can be pinned to the CPU without editing notebooks.
    """
    import torch

    choice = prefer if prefer is not None else os.environ.get("DAPPER_DEVICE") or None
    if choice is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(choice)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {choice!r} was asked for but torch sees no CUDA GPU; "
            "use prefer='cpu' (or unset DAPPER_DEVICE) to run on the CPU"
        )
    return device


def seed_everything(seed: int) -> int:
    """Seed python's ``random``, numpy's global generator and torch (CPU and every GPU).

    Returns the seed so callers can record it next to their results.
    """
    import numpy as np
    import torch

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # numpy only takes 32-bit seeds
    torch.manual_seed(seed)  # also seeds every CUDA device
    # Only affects subprocesses (hash randomisation is fixed at interpreter start), e.g. workers.
    os.environ["PYTHONHASHSEED"] = str(seed)
    return seed


def display_path(path) -> str:
    """``path`` as it should be recorded in results, captions and logs: relative to the repo root
    (POSIX separators) when it lies inside the repo, so committed outputs name no local folder;
    anything else (a user's checkpoint elsewhere) as given."""
    p = Path(path)
    try:
        return p.resolve().relative_to(repo_root().resolve()).as_posix()
    except ValueError:
        return str(path)


def cache_dir(*parts: str) -> Path:
    """A folder for derived, re-creatable data (projections, renders); created if missing.

    The root is ``$DAPPER_CACHE`` when set, else ``<repo root>/.cache`` (ignored by git).
    ``cache_dir("projections", "toycars")`` -> ``<root>/projections/toycars``.
    """
    root = os.environ.get("DAPPER_CACHE")
    base = Path(root).expanduser() if root else repo_root() / ".cache"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def reports_dir(*parts: str) -> Path:
    """Where notebooks write outputs: ``reports_dir("figures")``, ``reports_dir("results")``.

    The root is ``$DAPPER_REPORTS`` when set (``make report`` sets it to ``<repo>/reports``,
    ``make test`` to a scratch folder so quick test runs never overwrite the real report),
    else ``<repo root>/reports``. Created if missing.
    """
    root = os.environ.get("DAPPER_REPORTS")
    base = Path(root).expanduser() if root else repo_root() / "reports"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _temp_path_beside(path: Path) -> Path:
    # Same folder so os.replace is an atomic rename on one filesystem; the real suffix is kept
    # last because writers such as PIL and pandas pick the format from the file extension.
    fd, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    return Path(name)


def atomic_save(path: str | os.PathLike, writer_fn: Callable[[Path], object]) -> Path:
    """Write ``path`` all at once: ``writer_fn(tmp_path)`` writes a temp file that then replaces it.

    A run killed mid-write leaves either the old file or none, never a truncated one, so a
    resumed run can trust every file it finds. The temp file sits in the same folder, has the
    same extension, and is removed if ``writer_fn`` raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path_beside(path)
    try:
        writer_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_save`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return atomic_save(path, write)


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
