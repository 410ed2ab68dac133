"""The toycars source generator: the StyleGAN2 engine (:mod:`dapper.stylegan2.train`) trained on the
embedded world's unlabeled source renders.

    python -m dapper train-gan --config checkpoints/source_gan_v2_train.json --out runs/source_gan_v2 \\
        --export checkpoints/source_gan_v2 --snapshot-minutes 30

(:mod:`dapper.cli.train_gan`) gives the engine the named sources and feature networks below: a
config whose ``dataset`` is ``"toycars-source"`` trains on ``dataset_size`` source renders at the
config's resolution (rendered once, then cached); any other ``dataset`` is a ``.npy`` file of uint8
images [N, H, W, 3]. ``projected_features: "perceptual"`` adds a projected discriminator on the
frozen perceptual network.
"""

from __future__ import annotations

import numpy as np

from dapper.data import toycars
from dapper.inversion.perceptual import load_feature_net
from dapper.stylegan2 import train as engine

__all__ = ["FEATURE_NETS", "SOURCES", "perceptual_features", "toycars_source"]


def toycars_source(cfg: engine.TrainConfig, progress: bool = True) -> np.ndarray:
    """uint8 [dataset_size, R, R, 3]: the toycars source set for a training config."""
    return toycars.source_dataset(cfg.dataset_size, size=cfg.resolution, seed=cfg.data_seed, progress=progress)


def perceptual_features(device):
    """The projection's perceptual network (``checkpoints/perceptual_toycars``: trained on source
    renders, never on the oracles' data), frozen: the features a projected discriminator may use."""
    return load_feature_net(device=device)


SOURCES = {"toycars-source": toycars_source}
FEATURE_NETS = {"perceptual": perceptual_features}
