"""Statistics of a generator's W space and the image distances that inversion minimises."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dapper.utils import weights_hash

__all__ = ["WStatistics", "w_statistics", "masked_mse"]


@dataclass(frozen=True)
class WStatistics:
    """Of ``n`` latents w = mapping(z), z ~ N(0, I): ``mean`` [w_dim], per-dimension ``std``
    [w_dim] (unbiased) and ``spread``, the RMS distance of a w to the mean (a scalar: the size
    of a step to a different vehicle, the official projector's noise scale)."""

    mean: torch.Tensor
    std: torch.Tensor
    spread: float
    n: int
    seed: int


_MEMO: dict = {}


@torch.no_grad()
def w_statistics(G, n: int = 10000, seed: int = 123, batch_size: int = 2000, g_hash: str | None = None) -> WStatistics:
    """:class:`WStatistics` of ``G`` from ``n`` latents drawn with ``seed`` (123, as the official
    projector) on the CPU, mapped in batches of ``batch_size`` on ``G``'s device; memoised per
    generator weights (``g_hash``: their :func:`dapper.utils.weights_hash` when the caller has it),
    ``n`` and ``seed``."""
    key = (g_hash or weights_hash(G), n, seed)
    if key not in _MEMO:
        device = next(G.parameters()).device
        z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        c_dim = getattr(G, "c_dim", 0)
        c = torch.zeros(n, c_dim, device=device) if c_dim else None
        ws = torch.cat([G.mapping(z[a:a + batch_size], None if c is None else c[a:a + batch_size])[:, 0]
                        for a in range(0, n, batch_size)]).float().cpu()
        mean = ws.mean(0)
        spread = float((ws - mean).square().sum(1).mean().sqrt())
        std = ws.double().std(0, unbiased=n > 1).float() if n > 1 else torch.zeros_like(mean)
        _MEMO[key] = WStatistics(mean, std, spread, n, seed)
    return _MEMO[key]


def masked_mse(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of images ``x`` and ``y`` [B, 3, R, R] inside the mask ``m``
    [B, 1, R, R] (float), per image: [B]."""
    return ((x - y).square() * m).sum(dim=(1, 2, 3)) / (3 * m.sum(dim=(1, 2, 3)).clamp_min(1))
