"""StyleGAN2 in plain PyTorch: networks with official numerics, safe checkpoint loading, training.

``load_generator(path)`` reads stylegan2-ada-pytorch / TensorFlow ``.pkl``, rosinality ``.pt`` and
dapper's own safetensors checkpoints without executing code from the file.
"""

from .networks import Discriminator, Generator, synthesize

__all__ = ["Discriminator", "Generator", "load_generator", "save_generator", "synthesize"]


def __getattr__(name):
    # Loaders live in checkpoints.py; imported on first use so that networks import alone.
    if name in ("load_generator", "save_generator", "load_discriminator", "save_discriminator", "load_state",
                "CheckpointError"):
        from . import checkpoints

        return getattr(checkpoints, name)
    raise AttributeError(name)
