"""StyleGAN2 in plain PyTorch: networks with official numerics, safe checkpoint loading, training.

``load_generator(path)`` reads stylegan2-ada-pytorch / TensorFlow ``.pkl``, rosinality ``.pt`` and
dapper's own safetensors checkpoints without executing code from the file.
"""

from .networks import Discriminator, Generator

__all__ = ["Discriminator", "Generator", "default_generator_path", "load_generator", "save_generator"]


def default_generator_path():
    """The shipped toycars source GAN (``checkpoints/source_gan``); while it is being trained,
    the latest snapshot of ``runs/source_gan``. Raises FileNotFoundError naming both."""
    from pathlib import Path

    from ..utils import repo_root

    shipped = Path(repo_root()) / "checkpoints" / "source_gan.safetensors"
    interim = Path(repo_root()) / "runs" / "source_gan" / "generator_ema.safetensors"
    for path in (shipped, interim):
        if path.exists():
            return path
    raise FileNotFoundError(f"no source generator: expected {shipped} (make source-gan writes it)")


def __getattr__(name):
    # Loaders live in checkpoints.py; imported on first use so that networks import alone.
    if name in ("load_generator", "save_generator", "load_discriminator", "save_discriminator", "load_state",
                "CheckpointError"):
        from . import checkpoints

        return getattr(checkpoints, name)
    raise AttributeError(name)
