"""A projected discriminator (Sauer et al., Projected GANs Converge Faster, 2021), small and at the
generator's own resolution.

A frozen feature network (one the caller owns; the engine knows none) maps an image to feature maps
at several scales. Each map goes through a fixed random 1x1 convolution (cross-channel mixing,
never trained) and then to a small trainable discriminator of its own (strided convolutions with
spectral norm down to 4x4, then one logit per position from a 1x1 convolution that starts at zero,
so a fresh head says nothing to a generator that is already trained). The logits of all scales are averaged per
image. Trained with the hinge loss, as in the paper; the feature network's weights never change,
but gradients flow through it to the generator.

Simplifications against the paper, for a 64 px CPU generator: no cross-scale mixing (the maps
enter their heads as they are), no upsampling of the input to the feature network's training size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["ProjectedDiscriminator", "hinge_d_loss", "hinge_g_loss"]


def _head(channels: int, size: int, width: int) -> nn.Sequential:
    """Strided 4x4 convolutions from ``size`` px down to 4 px (at least one), then a 1x1 logit."""
    layers, c = [], channels
    while True:
        layers += [spectral_norm(nn.Conv2d(c, width, 4, 2, 1)), nn.LeakyReLU(0.2)]
        c, size = width, size // 2
        if size <= 4:
            break
    logit = nn.Conv2d(c, 1, 1)
    # zero at the start: a fresh head says nothing to a generator that is already trained, and
    # speaks as it learns (spectral norm would divide by the zero norm, so this layer goes without)
    nn.init.zeros_(logit.weight)
    nn.init.zeros_(logit.bias)
    layers.append(logit)
    return nn.Sequential(*layers)


class ProjectedDiscriminator(nn.Module):
    """``features``: a module whose ``layers(x)`` gives the list of feature maps [N, C_l, H_l, W_l]
    for images x [N, 3, R, R] in [-1, 1] (frozen here). ``mix_channels``: channels each scale is
    mixed to; ``width``: channels of each head."""

    def __init__(self, features: nn.Module, resolution: int, mix_channels: int = 64, width: int = 64,
                 seed: int = 0):
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        with torch.no_grad():
            maps = self.features.layers(torch.zeros(1, 3, resolution, resolution))
        gen = torch.Generator().manual_seed(seed)
        mixes, heads = [], []
        for f in maps:
            mix = nn.Conv2d(f.shape[1], mix_channels, 1, bias=False)
            # fixed random mixing: Kaiming-uniform like a fresh layer, drawn from its own seed
            bound = (3.0 / f.shape[1]) ** 0.5
            mix.weight.data = (torch.rand(mix.weight.shape, generator=gen) * 2 - 1) * bound
            mixes.append(mix.requires_grad_(False))
            heads.append(_head(mix_channels, f.shape[-1], width))
        self.mixes = nn.ModuleList(mixes)
        self.heads = nn.ModuleList(heads)

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.eval()  # batch-norm statistics of the feature network stay as trained
        return self

    def trainable_parameters(self):
        return list(self.heads.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit per image [N]: the mean over every scale's positions."""
        logits = [head(mix(f)).flatten(1).mean(1)
                  for f, mix, head in zip(self.features.layers(x), self.mixes, self.heads)]
        return torch.stack(logits, 1).mean(1)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()
