"""Differentiable augmentation of the discriminator's inputs (DiffAugment, Zhao et al. 2020).

The same random transform family is applied to real and generated images wherever the
discriminator sees them, in the generator's step too, so gradients reach the generator through
the transform and the generator is never asked to draw the augmentation itself. Three policies,
with the amounts of the paper:

* ``color``: brightness shift in [-0.5, 0.5), saturation scale in [0, 2), contrast scale in
  [0.5, 1.5), each drawn per image;
* ``translation``: an integer shift of up to 1/8 of the side in x and y, zero filled;
* ``cutout``: a square of half the side set to zero at a random place (it may cross the border).

Images are float NCHW in [-1, 1]. ``policy`` is a comma-separated list of these names, applied in
the order given; ``""`` applies nothing.
"""

from __future__ import annotations

import torch

__all__ = ["POLICIES", "diff_augment", "parse_policy"]


def _rand(x: torch.Tensor, *shape, generator=None) -> torch.Tensor:
    return torch.rand((x.shape[0], *shape), device=x.device, dtype=x.dtype, generator=generator)


def _color(x: torch.Tensor, generator=None) -> torch.Tensor:
    x = x + (_rand(x, 1, 1, 1, generator=generator) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, 1, 1, 1, generator=generator) * 2) + mean
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand(x, 1, 1, 1, generator=generator) + 0.5) + mean


def _shifted_index(n: int, size: int, shift: torch.Tensor) -> torch.Tensor:
    """[B, size] source rows for a shift per image; out-of-range rows point at the zero pad (index size)."""
    src = torch.arange(size, device=shift.device)[None, :] - shift[:, None]
    return torch.where((src >= 0) & (src < size), src, torch.full_like(src, size))


def _translation(x: torch.Tensor, ratio: float = 0.125, generator=None) -> torch.Tensor:
    b, c, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b,), device=x.device, generator=generator)
    dx = torch.randint(-sx, sx + 1, (b,), device=x.device, generator=generator)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1))  # one zero row and column, the shift's fill
    rows = _shifted_index(b, h, dy)[:, :, None].expand(b, h, w)
    cols = _shifted_index(b, w, dx)[:, None, :].expand(b, h, w)
    batch = torch.arange(b, device=x.device)[:, None, None].expand(b, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, ratio: float = 0.5, generator=None) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # the square's centre anywhere on the image (the official draws it so: part may fall outside)
    cy = torch.randint(0, h + (1 - ch % 2), (b,), device=x.device, generator=generator)
    cx = torch.randint(0, w + (1 - cw % 2), (b,), device=x.device, generator=generator)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= (cy - ch // 2)[:, None]) & (ys < (cy - ch // 2 + ch)[:, None])
    in_x = (xs >= (cx - cw // 2)[:, None]) & (xs < (cx - cw // 2 + cw)[:, None])
    keep = ~(in_y[:, :, None] & in_x[:, None, :])
    return x * keep[:, None].to(x.dtype)


POLICIES = {"color": _color, "translation": _translation, "cutout": _cutout}


def parse_policy(policy: str) -> list[str]:
    """The policy's names in order; a clear error for one that does not exist."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown DiffAugment policies {unknown}; choose from {sorted(POLICIES)}")
    return names


def diff_augment(x: torch.Tensor, policy: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` [N, C, H, W] with the policy's transforms drawn independently per image; differentiable in x."""
    for name in parse_policy(policy):
        x = POLICIES[name](x, generator=generator)
    return x.contiguous()
