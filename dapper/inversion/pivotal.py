"""Pivotal tuning: fine-tune the generator's synthesis network so that it redraws a few real images
exactly from their projections (the *pivots*), keeping W and the mapping fixed.

A projection into a generator that cannot draw a vehicle's details loses its identity before any
edit; tuning the synthesis weights around the pivots lets edits near them (a perturbation, a
turn) start from the real vehicle. One tuned generator serves a set of images at once (for
example all training shots of a class), so edits between and around those shots share it::

    tuned, info = tune_generator(G, images, ws, PivotalSettings(steps=100))

``images``: uint8 [N, R, R, 3] or float [N, 3, R, R] in [-1, 1] at the generator's resolution;
``ws``: their projections [N, num_ws, w_dim]. The loss per image is the pixel MSE plus the
perceptual distance of :mod:`dapper.inversion.perceptual` (the projection's loss), summed over the
images; Adam on the synthesis weights only, with the generator's constant noise. ``G`` itself is
never changed: the result is a copy, in eval mode and frozen. ``info`` records the steps, the
loss before and after (both in eval mode) and what the steps cost: ``cpu_seconds`` (this process's CPU time,
every thread) and ``wall_seconds`` (what counts on a GPU).

:func:`tune_generator_cached` keeps the tuned synthesis weights (safetensors, no code) under
``cache_dir("pivotal", ...)``, keyed by the generator, the settings and the exact pivots, so a
study that is rerun or resumed does not tune again.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from dapper.inversion import perceptual
from dapper.inversion.latents import masked_mse
from dapper.inversion.perceptual import load_perceptual
from dapper.utils import (
    atomic_save,
    cache_dir,
    damaged_cache,
    file_sha256,
    image_key,
    json_digest,
    torch_threads,
    weights_hash,
)

__all__ = ["PivotalSettings", "tune_generator", "tune_generator_cached"]


@dataclass(frozen=True)
class PivotalSettings:
    """steps: Adam steps over all images (``batch_size`` per step, cycling); lr: Adam learning
    rate; pixel_weight, perceptual_weight: the loss's terms; vgg16_weights, lpips_weights: local
    VGG16-LPIPS files (None: the shipped toycars feature network); seed: the batch order."""

    steps: int = 100
    lr: float = 1e-3
    batch_size: int = 16
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0
    vgg16_weights: str | None = None
    lpips_weights: str | None = None
    seed: int = 0

    def __post_init__(self):
        if self.steps < 0 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError(f"pivotal tuning needs steps >= 0, lr > 0 and batch_size >= 1, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)


def _as_float_images(images, resolution: int) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    if x.dtype == torch.uint8:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"uint8 images must be [N, H, W, 3], got {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1
    x = x.float()
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (resolution, resolution):
        raise ValueError(f"images must be at the generator's {resolution} px ([N, 3, {resolution}, {resolution}] "
                         f"or uint8 [N, {resolution}, {resolution}, 3]), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("images hold non-finite values")
    return x


def tune_generator(G, images, ws, settings: PivotalSettings | None = None, perceptual=None,
                   progress: bool = False, masks=None) -> tuple[torch.nn.Module, dict]:
    """A copy of ``G`` whose synthesis network is tuned to redraw ``images`` from ``ws`` (see the
    module docstring). ``masks``: bool [N, R, R], the pixels that count (real photos on the canvas:
    the photo, not the letterbox bars); outside them the generated image is replaced by the target
    before the perceptual network sees it, as in projection. Returns ``(tuned generator, info)``."""
    s = settings or PivotalSettings()
    device = next(G.parameters()).device
    res = int(G.img_resolution)
    x = _as_float_images(images, res).to(device)
    ws = torch.as_tensor(ws, dtype=torch.float32).to(device)
    if ws.ndim != 3 or ws.shape[0] != len(x) or ws.shape[1:] != (G.num_ws, G.w_dim):
        raise ValueError(f"ws must be [{len(x)}, {G.num_ws}, {G.w_dim}], got {tuple(ws.shape)}")
    if not torch.isfinite(ws).all():
        raise ValueError("ws hold non-finite values")
    m = None
    if masks is not None:
        m = torch.as_tensor(np.asarray(masks, dtype=bool)).to(device)
        if m.shape != (len(x), res, res):
            raise ValueError(f"masks must be bool [{len(x)}, {res}, {res}], got {tuple(m.shape)}")
        m = m[:, None].float()
    if perceptual is None and s.perceptual_weight > 0:
        perceptual = load_perceptual(s.vgg16_weights, s.lpips_weights, device=device)
    tuned = copy.deepcopy(G).eval()
    for p in tuned.parameters():
        p.requires_grad_(False)
    params = [p for p in tuned.synthesis.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=s.lr, betas=(0.9, 0.999))
    with torch.no_grad():
        target_feats = perceptual.features(x) if s.perceptual_weight > 0 else None

    def loss_of(idx) -> torch.Tensor:
        out = tuned.synthesis(ws[idx], noise_mode="const")
        if m is None:
            loss = s.pixel_weight * (out - x[idx]).square().flatten(1).mean(1)
        else:
            loss = s.pixel_weight * masked_mse(out, x[idx], m[idx])
            out = out * m[idx] + x[idx] * (1 - m[idx])  # the bars are the target's: no perceptual pull there
        if target_feats is not None:
            loss = loss + s.perceptual_weight * (perceptual.features(out) - target_feats[idx]).square().sum(1)
        return loss

    everything = torch.arange(len(x), device=device)

    def mean_loss() -> float:  # in eval mode, before and after alike
        with torch.no_grad():
            return float(torch.cat([loss_of(everything[a:a + s.batch_size])
                                    for a in range(0, len(x), s.batch_size)]).mean())

    before = mean_loss()
    tuned.train()
    rng = np.random.default_rng(s.seed)
    order = np.empty(0, dtype=np.int64)
    steps = range(s.steps)
    if progress:
        steps = tqdm(steps, desc="pivotal tuning", unit="step")
    t0, w0 = time.process_time(), time.perf_counter()
    for _ in steps:
        if len(order) < min(s.batch_size, len(x)):
            order = np.concatenate([order, rng.permutation(len(x))])
        idx, order = torch.as_tensor(order[:s.batch_size], device=device), order[s.batch_size:]
        loss = loss_of(idx).sum()
        if not torch.isfinite(loss):
            raise FloatingPointError("pivotal tuning diverged (non-finite loss); lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    seconds, wall = time.process_time() - t0, time.perf_counter() - w0
    tuned.eval()
    for p in tuned.parameters():
        p.requires_grad_(False)
    return tuned, {"steps": s.steps, "n_images": len(x), "loss_before": before, "loss_after": mean_loss(),
                   "cpu_seconds": seconds, "wall_seconds": wall, "settings": s.to_dict()}


@functools.lru_cache(maxsize=16)
def _file_digest(path: str, stamp: tuple) -> str:
    return file_sha256(path)


def _digest(path) -> str | None:
    """sha256 of a file (read once per file version in a process); None for None."""
    if path is None:
        return None
    st = os.stat(path)
    return _file_digest(str(Path(path).resolve()), (st.st_mtime_ns, st.st_size))


def _cache_key(G, images, ws, settings: PivotalSettings, masks=None) -> str:
    """What a tuning's result depends on: the generator's weights, the settings (the perceptual
    network's files by content), the code that tunes and the exact pivots."""
    code = hashlib.sha256(Path(__file__).read_bytes() + Path(perceptual.__file__).read_bytes()).hexdigest()
    key = {"generator": weights_hash(G), "settings": settings.to_dict(), "code": code,
           "vgg16": _digest(settings.vgg16_weights), "lpips": _digest(settings.lpips_weights),
           "images": image_key(images), "ws": image_key(np.asarray(ws, np.float32))}
    if masks is not None:  # only then: the keys of unmasked tunings stay as they were
        key["masks"] = image_key(np.asarray(masks, dtype=np.uint8))
    return json_digest(key, 24)


def tune_generator_cached(G, images, ws, settings: PivotalSettings | None = None, perceptual=None,
                          progress: bool = False, masks=None) -> tuple[torch.nn.Module, dict]:
    """:func:`tune_generator` whose result is kept in (and read back from) the cache: the same
    generator, settings, images and projections give the same tuned weights without tuning again
    (``info["cached"]`` says which; a cached result's ``cpu_seconds`` are those of its tuning).
    On the CPU it tunes with one torch thread, so that a result does not depend on which process
    (or how many threads) filled the cache. ``perceptual``, when given, must be the network
    ``settings`` name (their files are part of the key)."""
    s = settings or PivotalSettings()
    ws = torch.as_tensor(ws, dtype=torch.float32).detach().cpu()
    images = images.detach().cpu().numpy() if torch.is_tensor(images) else np.asarray(images)
    folder = cache_dir("pivotal")
    key = _cache_key(G, images, ws.numpy(), s, masks)
    weights, meta = folder / f"{key}.safetensors", folder / f"{key}.json"
    if weights.exists() and meta.exists():
        tuned = copy.deepcopy(G).eval()
        try:
            state = load_file(str(weights), device=str(next(G.parameters()).device))
            tuned.synthesis.load_state_dict(state)
            info = json.loads(meta.read_text())
        except Exception as exc:  # noqa: BLE001 - a damaged cache entry is tuned again, never trusted
            damaged_cache(weights, exc)
        else:
            for p in tuned.parameters():
                p.requires_grad_(False)
            return tuned, dict(info, cached=True)
    on_cpu = next(G.parameters()).device.type == "cpu"
    with torch_threads(1) if on_cpu else contextlib.nullcontext():
        tuned, info = tune_generator(G, images, ws, s, perceptual=perceptual, progress=progress, masks=masks)
    state = {k: v.detach().cpu().contiguous() for k, v in tuned.synthesis.state_dict().items()}
    atomic_save(weights, lambda p: save_file(state, str(p)))
    atomic_save(meta, lambda p: p.write_text(json.dumps(info)))
    return tuned, dict(info, cached=False)

