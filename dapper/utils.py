"""Small helpers every notebook and module needs: device, seeding, cache folder, atomic writes.

torch is imported inside the functions that need it, so that the report runner and the
``python -m dapper`` dispatcher (which import this module) start quickly.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

_HASHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> (fingerprint, hash)


def json_digest(obj, length: int | None = None, default=None) -> str:
    """sha256 hex digest of ``obj`` as JSON with sorted keys (its first ``length`` digits; all 64 when
    None): the one way a dict of settings becomes a cache or store key. ``default``: json.dumps'
    fallback for values JSON has no type for (None: such a value raises)."""
    import hashlib

    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=default).encode()).hexdigest()
    return digest if length is None else digest[:length]


def weights_hash(module, fresh: bool = False) -> str:
    """sha256 over a torch module's state dict (names, dtypes, shapes and bytes), 64 hex digits: the
    one id of a generator (or any network) in caches, results and checkpoints. Two modules hash
    equal exactly when they hold the same weights, whatever file they came from, and compute with
    them alike: a module's ``numerics`` (a generator whose float16 blocks run in bfloat16 on the CPU,
    :meth:`dapper.stylegan2.networks.Generator.set_cpu_bf16`) enters the hash; the official numerics
    (``""``) leave it as the weights alone give it.

    Computed once per module and state: the hash is kept with a fingerprint of every tensor's
    storage and version counter (an in-place change, ``load_state_dict`` or a new ``.data`` changes
    it), so the many callers of one run (caches, ids, rows) pay for one pass over the weights.
    Writes that bypass the version counter are not seen: an in-place op on ``p.data`` or a write
    through ``p.detach().numpy()``; code that changes weights that way passes ``fresh=True``."""
    import hashlib

    import torch

    state = module.state_dict()
    numerics = getattr(module, "numerics", "")  # a generator's float16 blocks in bfloat16 on the CPU
    fingerprint = tuple((name, t.data_ptr(), t._version, t.dtype, tuple(t.shape), str(t.device))
                        for name, t in state.items()) + (numerics,)
    try:
        known = _HASHED.get(module)
    except TypeError:  # not weak-referenceable: hashed every time
        known = None
    if known is not None and known[0] == fingerprint and not fresh:
        return known[1]
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    if numerics:  # the same weights computed otherwise are another network to every cache
        h.update(f"|numerics|{numerics}".encode())
    digest = h.hexdigest()
    try:
        _HASHED[module] = (fingerprint, digest)
    except TypeError:
        pass
    return digest


def torch_modules_of(obj) -> list:
    """The torch modules an object computes with: itself when it is one, else its attributes that are."""
    import torch

    if isinstance(obj, torch.nn.Module):
        return [obj]
    return [v for v in vars(obj).values() if isinstance(v, torch.nn.Module)] if hasattr(obj, "__dict__") else []


def instrument_id(instrument) -> str:
    """Content id (12 hex digits) of one of the method's instruments (a pose annotator, a vehicle
    detector) for cache keys: its recorded ``config["sha256"]`` (the weights file's, or for a user's
    estimator its source file's and weights') with the rest of its config (thresholds, sizes);
    an instrument without one is identified by the weights of its torch modules, never by a name,
    so other weights under the same class give other keys."""
    import hashlib

    config = dict(getattr(instrument, "config", None) or {})
    if not config.get("sha256"):
        config["sha256"] = "|".join(weights_hash(m) for m in torch_modules_of(instrument)) or repr(type(instrument))
    config.pop("heldout", None)  # measurements of the instrument, not what it computes with
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def file_sha256(path) -> str:
    """sha256 of a file's bytes, 64 hex digits (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the block with ``n`` torch threads, then restore the count it had."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def image_key(image, mask=None) -> str:
    """Content id of one image and its optional mask, 16 hex digits: sha256 over the dtype, shape and
    bytes of ``image`` (a numpy array or a torch tensor, on any device) and of ``mask`` (as bool).
    The one key of an image in projection caches, synthetic sets and leakage checks."""
    import hashlib

    import numpy as np

    def array(x):
        return x.detach().cpu().contiguous().numpy() if hasattr(x, "detach") else np.ascontiguousarray(x)

    a = array(image)
    h = hashlib.sha256(f"{a.dtype}|{a.shape}|".encode())
    h.update(a.tobytes())
    if mask is not None:
        m = array(mask).astype(bool)
        h.update(f"mask|{m.shape}|".encode())
        h.update(np.packbits(m).tobytes())
    return h.hexdigest()[:16]


def repo_root() -> Path:
    """The repository checkout this package lives in (the folder holding ``dapper/``)."""
    return Path(__file__).resolve().parent.parent


def default_generator_path():
    """The shipped toycars source GAN, the world-v2 generator (``checkpoints/source_gan_v2``, trained
    in legs by ``make source-gan``); before its first export, the latest snapshot of
    ``runs/source_gan_v2``. Raises FileNotFoundError naming both."""
    shipped = Path(repo_root()) / "checkpoints" / "source_gan_v2.safetensors"
    interim = Path(repo_root()) / "runs" / "source_gan_v2" / "generator_ema.safetensors"
    for path in (shipped, interim):
        if path.exists():
            return path
    raise FileNotFoundError(f"no source generator: expected {shipped} (make source-gan writes it)")


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


_DAMAGED_SAID: set[str] = set()


def damaged_cache(path: str | os.PathLike, error: BaseException) -> None:
    """Say that a cache file could not be read and is remade (never trusted); once per cache folder
    and process, so a folder of many damaged files (a full disk, a killed copy) is one warning."""
    import logging

    folder = str(Path(path).parent)
    if folder in _DAMAGED_SAID:
        return
    _DAMAGED_SAID.add(folder)
    logging.getLogger("dapper").warning("damaged cache file %s (%s: %s): remade; other damaged files in %s are "
                                        "remade without a word", path, type(error).__name__, error, folder)


def read_cached_arrays(path: str | os.PathLike) -> dict | None:
    """The arrays of an ``.npz`` cache file (no pickles), or None when it is missing or damaged (said
    once, see :func:`damaged_cache`)."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file is remade, never trusted
        damaged_cache(path, exc)
        return None


def cached_arrays(path: str | os.PathLike, make: Callable[[], dict]) -> dict:
    """The arrays cached at ``path`` (``.npz``), or ``make()``'s, saved there atomically first.
    The one "load or make and save" of the package's array caches: a damaged file is remade."""
    import numpy as np

    found = read_cached_arrays(path)
    if found is not None:
        return found
    arrays = make()
    atomic_save(path, lambda p: np.savez(p, **arrays))
    return arrays


def reports_root() -> Path:
    """``$DAPPER_REPORTS`` when set, else ``<repo root>/reports`` (not created)."""
    root = os.environ.get("DAPPER_REPORTS")
    return Path(root).expanduser() if root else repo_root() / "reports"


def reports_dir(*parts: str) -> Path:
    """Where notebooks write outputs: ``reports_dir("figures")``, ``reports_dir("results")``.

    The root is ``$DAPPER_REPORTS`` when set (``make report`` sets it to ``<repo>/reports``,
    ``make test`` to a scratch folder so quick test runs never overwrite the real report),
    else ``<repo root>/reports``. Created if missing.
    """
    path = reports_root().joinpath(*parts)
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


