"""Projection: find the latent code(s) with which the frozen generator redraws a real image.

    proj = project_images(G, images)                    # uint8 [N, H, W, 3] or float NCHW in [-1, 1]
    proj.ws                # float32 [N, num_ws, w_dim] (space "w": all rows of an image are equal)
    proj.reconstructions   # float32 [N, 3, R, R] in [-1, 1]: G.synthesis(ws, noise_mode="const")
    proj.metrics           # per image: psnr, perceptual, steps, converged, failed, seconds, cached
    proj.to_frame()        # the same as a pandas DataFrame

What it does, per image, all images of a batch optimised together:

* **Input.** Any size is letterboxed (aspect kept) into the generator's content box
  (``G.content_box``); the mask of real pixels (times an optional object mask) restricts the
  losses, so padding and background the caller masks out never pull the code.
* **Loss.** Masked pixel MSE plus a perceptual distance (:mod:`dapper.inversion.perceptual`: the shipped
  toycars feature network by default, VGG16-LPIPS from local weight files on request). The
  generated image is composited over the target outside the mask before the perceptual network
  sees it, so the perceptual term is masked too.
* **Schedule.** :meth:`ProjectionSettings.official` is the stylegan2-ada-pytorch projector
  (1000 Adam steps at lr 0.1 with ramps, decaying latent noise, optimised and regularised noise
  maps, start at the mean w, perceptual loss only). The default starts from an encoder's guess
  (:mod:`dapper.inversion.encoder`), adds the pixel term and stops each image once its loss stops improving.
* **Robustness.** Losses are per image: a non-finite loss or gradient stops only that image; its
  last good code is kept, and ``metrics["failed"]`` says why. Converged and failed images leave
  the batch, so the rest run faster.
* **Cache.** One small ``.npz`` per image under ``cache_dir("projections", <generator hash>)``,
  named by sha256 of (image bytes, mask, generator weights, settings); written atomically as each
  batch finishes, so a killed run resumes where it stopped and a rerun costs one forward pass.

A folder at once, from code: :func:`project_folder`; from the command line (batch use outside notebooks)::

    python -m dapper project --network CKPT --images DIR --out DIR [--space w|w+] [--steps N] [--official]
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from dapper.data.images import load_images, to_uint8
from dapper.executor import get_executor
from dapper.inversion.canvas import as_list, prepare_target
from dapper.inversion.encoder import encoder_for
from dapper.inversion.latents import masked_mse, w_statistics
from dapper.inversion.perceptual import load_perceptual
from dapper.stylegan2 import synthesize
from dapper.stylegan2.networks import SynthesisLayer
from dapper.utils import atomic_save, cache_dir, image_key, json_digest, read_cached_arrays, weights_hash

logger = logging.getLogger(__name__)

__all__ = ["Projection", "ProjectionSettings", "project_images", "project_folder", "choose_batch_size"]

# Bump when a change alters what a projection returns for the same inputs: old cache files then miss.
PROJECTION_VERSION = 1
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectionSettings:
    """How to project. Defaults: dapper's fast schedule; :meth:`official` gives the paper's baseline.

    space: ``"w"`` (one code repeated for every layer, the paper's choice) or ``"w+"`` (one per layer).
    steps: most optimisation steps per image; lr: peak Adam learning rate, ramped up over the first
    ``lr_rampup`` and down (cosine) over the last ``lr_rampdown`` fraction of ``steps``.
    init: ``"encoder"`` (the encoder trained for this generator; falls back to ``"w_avg"`` with a
    warning when there is none) or ``"w_avg"`` (mean of ``w_avg_samples`` mapped z).
    early_stop_tol: an image stops once its best loss of the last ``early_stop_window`` steps
    improves on the best before by less than this fraction (not before ``min_steps``); None: never.
    latent_noise: std of noise added to w, as a fraction of the spread of W, decaying to 0 over
    ``latent_noise_ramp`` of the steps (the official projector's exploration).
    optimize_noise: also optimise per-image noise maps, regularised by ``noise_reg_weight`` (official).
    Reconstructions are always drawn with the generator's own constant noise, as users of ``ws`` do.
    pixel_weight, perceptual_weight: loss = pixel_weight * masked MSE (images in [-1, 1]) +
    perceptual_weight * perceptual distance.
    vgg16_weights, lpips_weights: local files for VGG16-LPIPS (see :mod:`dapper.inversion.perceptual`); None:
    the shipped toycars feature network. encoder: encoder checkpoint path (None: the shipped one).
    seed: latent and noise-map randomness (drawn per image, so results do not depend on batching).
    """

    space: str = "w"
    steps: int = 200
    lr: float = 0.05
    lr_rampup: float = 0.0
    lr_rampdown: float = 0.25
    init: str = "encoder"
    early_stop_tol: float | None = 0.005
    early_stop_window: int = 10
    min_steps: int = 20
    latent_noise: float = 0.0
    latent_noise_ramp: float = 0.75
    optimize_noise: bool = False
    noise_reg_weight: float = 1e5
    pixel_weight: float = 1.0
    perceptual_weight: float = 1.0
    w_avg_samples: int = 10000
    vgg16_weights: str | None = None
    lpips_weights: str | None = None
    encoder: str | None = None
    seed: int = 0

    def __post_init__(self):
        if self.space not in ("w", "w+"):
            raise ValueError(f"space must be 'w' or 'w+', got {self.space!r}")
        if self.init not in ("encoder", "w_avg"):
            raise ValueError(f"init must be 'encoder' or 'w_avg', got {self.init!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")

    @classmethod
    def official(cls, **changes) -> ProjectionSettings:
        """The stylegan2-ada-pytorch projector's schedule (``projector.py`` defaults), the baseline."""
        base = cls(space="w", steps=1000, lr=0.1, lr_rampup=0.05, lr_rampdown=0.25, init="w_avg",
                   early_stop_tol=None, latent_noise=0.05, latent_noise_ramp=0.75, optimize_noise=True,
                   noise_reg_weight=1e5, pixel_weight=0.0, perceptual_weight=1.0, w_avg_samples=10000)
        return dataclasses.replace(base, **changes)

    def replace(self, **changes) -> ProjectionSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------

METRIC_COLUMNS = ("psnr", "perceptual", "steps", "converged", "failed", "seconds", "cached")


@dataclass
class Projection:
    """Result of :func:`project_images` for N images (rows in input order).

    ws: float32 [N, num_ws, w_dim] (CPU); reconstructions: float32 [N, 3, R, R] in [-1, 1];
    targets: float32 [N, 3, R, R], the letterboxed inputs the codes were fitted to; masks: bool
    [N, R, R], where the losses counted; metrics: dict of arrays [N] with ``psnr`` (dB, inside the
    mask, images scaled to [0, 1]), ``perceptual`` (distance of the projection's perceptual
    network), ``steps`` (optimisation steps run), ``converged`` (stopped by the tolerance),
    ``failed`` (reason, "" when fine), ``seconds`` (compute time spent on the image, 0 when cached),
    ``cached``; keys: sha256 of each input image (and mask).
    """

    ws: torch.Tensor
    reconstructions: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor
    metrics: dict
    keys: list
    settings: ProjectionSettings
    generator_hash: str
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def to_frame(self):
        frame = pd.DataFrame({k: self.metrics[k] for k in METRIC_COLUMNS})
        frame.insert(0, "key", self.keys)
        return frame


# ---------------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------------


def _settings_hash(settings: ProjectionSettings, G, perceptual_hash: str, encoder_hash: str | None,
                   on_canvas: bool = False) -> str:
    d = settings.to_dict()
    if on_canvas:  # the same image placed otherwise is another target (the key is left as it was otherwise)
        d["placement"] = "on_canvas"
    # Files are identified by what they hold, not by where they lie.
    d.update(vgg16_weights=None, lpips_weights=None, encoder=None, perceptual=perceptual_hash,
             encoder_hash=encoder_hash,
             content_box=list(getattr(G, "content_box", (0, 0, G.img_resolution, G.img_resolution))),
             version=PROJECTION_VERSION)
    return json_digest(d)


# ---------------------------------------------------------------------------------------------
# Batch size and generator statistics
# ---------------------------------------------------------------------------------------------


def choose_batch_size(G, device=None, max_batch: int = 64) -> int:
    """Images per optimisation batch: activation memory of one image (forward and backward,
    estimated from each synthesis block's channels and resolution) against a budget: 40% of free
    CUDA memory, or 1 GiB (at most an eighth of RAM) on the CPU."""
    device = torch.device(device) if device is not None else next(G.parameters()).device
    per_image = 0
    syn = G.synthesis
    for res in getattr(syn, "block_resolutions", [G.img_resolution]):
        block = getattr(syn, f"b{res}", None)
        ch = block.conv1.weight.shape[0] if block is not None and hasattr(block, "conv1") else 512
        per_image += ch * res * res
    # ~12 float32 copies per activation (modulated conv, noise, bias/act, autograd saves), plus
    # the perceptual network's maps, about as large again.
    per_image = per_image * 4 * 12 * 2
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = 0.4 * free
    else:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 8 << 30
        budget = min(1 << 30, total / 8)
    return int(max(1, min(max_batch, budget // max(per_image, 1))))


# ---------------------------------------------------------------------------------------------
# Optimisation
# ---------------------------------------------------------------------------------------------


class _RowAdam:
    """Adam over the rows (images) of a tensor, updating only the rows asked for.

    torch.optim.Adam would keep moving stopped images on momentum alone; here each image has its
    own step count and only active rows change. Same update rule and defaults as torch's Adam.
    """

    def __init__(self, shape, betas=(0.9, 0.999), eps=1e-8):
        self.m = torch.zeros(shape)
        self.v = torch.zeros(shape)
        self.t = torch.zeros(shape[0], dtype=torch.long)
        self.b1, self.b2 = betas
        self.eps = eps

    def to(self, device):
        self.m, self.v = self.m.to(device), self.v.to(device)
        return self

    def step(self, param: torch.Tensor, idx: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        self.t[idx.cpu()] += 1
        t = self.t[idx.cpu()].to(param.device).float().view(-1, *([1] * (param.ndim - 1)))
        m = self.m[idx].mul_(self.b1).add_(grad, alpha=1 - self.b1)
        v = self.v[idx].mul_(self.b2).addcmul_(grad, grad, value=1 - self.b2)
        self.m[idx], self.v[idx] = m, v
        bc1 = 1 - self.b1 ** t
        bc2 = 1 - self.b2 ** t
        denom = (v.sqrt() / bc2.sqrt()).add_(self.eps)
        param[idx] -= lr * (m / bc1) / denom


def _noise_layers(G) -> list:
    return [m for m in G.synthesis.modules() if isinstance(m, SynthesisLayer) and m.use_noise]


class _NoiseOverride:
    """Temporarily give every noise layer per-image maps [B, 1, r, r] in place of its constant map."""

    def __init__(self, layers, maps):
        self.layers, self.maps = layers, maps

    def __enter__(self):
        self.saved = [layer.noise_const for layer in self.layers]
        for layer, m in zip(self.layers, self.maps):
            layer.noise_const = m
        return self

    def __exit__(self, *exc):
        for layer, saved in zip(self.layers, self.saved):
            layer.noise_const = saved


def _noise_reg(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-image noise regulariser of the official projector: squared autocorrelation at shift 1,
    over a pyramid down to 8 px. maps: list of [B, 1, r, r] -> [B]."""
    reg = 0
    for n in maps:
        while True:
            reg = reg + (n * torch.roll(n, shifts=1, dims=3)).mean(dim=(1, 2, 3)).square()
            reg = reg + (n * torch.roll(n, shifts=1, dims=2)).mean(dim=(1, 2, 3)).square()
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    return reg


def _lr_at(settings: ProjectionSettings, step: int) -> float:
    t = step / max(settings.steps, 1)
    ramp = 1.0
    if settings.lr_rampdown > 0:
        ramp = min(1.0, (1.0 - t) / settings.lr_rampdown)
        ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if settings.lr_rampup > 0:
        ramp = ramp * min(1.0, t / settings.lr_rampup)
    return settings.lr * ramp


def _per_image_generators(keys: list[str], seed: int, device) -> list[torch.Generator]:
    gens = []
    for k in keys:
        g = torch.Generator(device=device)
        g.manual_seed((int(k[:15], 16) ^ int(seed)) & ((1 << 62) - 1))
        gens.append(g)
    return gens


def _randn_rows(shape_row, gens: list[torch.Generator], idx: list[int], device) -> torch.Tensor:
    return torch.stack([torch.randn(shape_row, generator=gens[i], device=device) for i in idx])


def _optimise_batch(G, targets, masks, w_init, settings, perceptual, w_std, keys, device, bar=None):
    """Optimise one batch. targets [B, 3, R, R], masks [B, R, R] bool, w_init [B, w_dim].

    Returns (ws [B, num_ws, w_dim] CPU, steps [B], converged [B], failed list[str], seconds [B]).
    """
    B = targets.shape[0]
    num_ws = G.num_ws
    s = settings
    targets = targets.to(device)
    m = masks.to(device)[:, None].float()
    rows = 1 if s.space == "w" else num_ws
    w = w_init.to(device).float()[:, None, :].repeat(1, rows, 1).contiguous()
    adam = _RowAdam(w.shape).to(device)
    gens = _per_image_generators(keys, s.seed, device)
    noise_layers, noise, noise_adam = [], [], []
    if s.optimize_noise:
        noise_layers = _noise_layers(G)
        if not noise_layers:
            logger.warning("optimize_noise: this generator has no noise layers; ignored")
        for layer in noise_layers:
            r = layer.noise_const.shape[-1]
            noise.append(torch.stack([torch.randn((1, r, r), generator=g, device=device) for g in gens]))
        noise_adam = [_RowAdam(n.shape).to(device) for n in noise]
    with torch.no_grad():
        target_feats = perceptual.features(targets) if s.perceptual_weight > 0 else None

    w_good = w.clone()
    noise_good = [n.clone() for n in noise]
    active = torch.ones(B, dtype=torch.bool)
    steps = np.zeros(B, np.int64)
    converged = np.zeros(B, bool)
    failed = [""] * B
    seconds = np.zeros(B)
    hist = torch.full((B, max(s.steps, 1)), float("inf"))
    win = max(1, s.early_stop_window)
    for step in range(s.steps):
        idx_list = torch.nonzero(active).flatten().tolist()
        if not idx_list:
            break
        t0 = time.perf_counter()
        idx = torch.tensor(idx_list, device=device)
        lr = _lr_at(s, step)
        w_in = w[idx].detach().requires_grad_(True)
        ws = w_in
        if s.latent_noise > 0:
            scale = w_std * s.latent_noise * max(0.0, 1.0 - step / (s.steps * s.latent_noise_ramp)) ** 2
            if scale > 0:
                ws = ws + scale * _randn_rows(w_in.shape[1:], gens, idx_list, device)
        ws = ws.repeat(1, num_ws, 1) if rows == 1 else ws
        leaves = [w_in]
        if noise:
            maps = [n[idx].detach().requires_grad_(True) for n in noise]
            leaves += maps
            with _NoiseOverride(noise_layers, maps):
                synth = G.synthesis(ws, noise_mode="const")
        else:
            synth = G.synthesis(ws, noise_mode="const")
        tgt, mk = targets[idx], m[idx]
        loss = torch.zeros(len(idx_list), device=device)
        if s.pixel_weight > 0:
            loss = loss + s.pixel_weight * masked_mse(synth, tgt, mk)
        if target_feats is not None:
            comp = synth * mk + tgt * (1 - mk)
            loss = loss + s.perceptual_weight * (perceptual.features(comp) - target_feats[idx]).square().sum(1)
        if noise:
            loss = loss + s.noise_reg_weight * _noise_reg(maps)
        finite = torch.isfinite(loss.detach())
        # Non-finite losses are left out of the sum; images do not interact inside G or the
        # perceptual network, so their gradients stay confined to their own rows.
        total = torch.where(finite, loss, torch.zeros_like(loss)).sum()
        grads = torch.autograd.grad(total, leaves) if total.requires_grad else [torch.zeros_like(x) for x in leaves]
        ok = finite.clone()
        for g in grads:
            ok &= torch.isfinite(g.flatten(1)).all(dim=1)
        loss_cpu = loss.detach().cpu()
        ok_cpu = ok.cpu()
        for j, i in enumerate(idx_list):
            if not ok_cpu[j]:
                why = "non-finite loss" if not finite[j] else "non-finite gradient"
                extra = " (input image has non-finite pixels)" if not torch.isfinite(targets[i]).all() else ""
                failed[i] = f"{why} at step {step}{extra}; kept the code of step {steps[i]}"
                logger.warning("projection of image %s stopped: %s", keys[i][:12], failed[i])
                active[i] = False
        keep = torch.nonzero(ok).flatten()
        if len(keep):
            rows_idx = idx[keep]
            with torch.no_grad():
                w_good[rows_idx] = w[rows_idx]
                for n, ng in zip(noise, noise_good):
                    ng[rows_idx] = n[rows_idx]
                adam.step(w, rows_idx, grads[0][keep], lr)
                for n, a, g in zip(noise, noise_adam, grads[1:]):
                    a.step(n, rows_idx, g[keep], lr)
                    # Keep each map zero-mean, unit-variance per image (as the official projector).
                    sub = n[rows_idx]
                    sub = sub - sub.mean(dim=(1, 2, 3), keepdim=True)
                    n[rows_idx] = sub * sub.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
        dt = time.perf_counter() - t0
        for j, i in enumerate(idx_list):
            seconds[i] += dt / len(idx_list)
            if not ok_cpu[j]:
                continue
            steps[i] += 1
            hist[i, step] = loss_cpu[j]
            if s.early_stop_tol is not None and step + 1 >= max(s.min_steps, 2 * win):
                before = hist[i, : step + 1 - win].min()
                recent = hist[i, step + 1 - win: step + 1].min()
                if (before - recent) / before.abs().clamp_min(1e-12) < s.early_stop_tol:
                    converged[i] = True
                    active[i] = False
        if bar is not None:
            bar.set_postfix(step=step + 1, active=int(active.sum()), refresh=False)
    with torch.no_grad():
        # Failed images keep their last code with a finite loss; the others end where they stopped.
        bad = torch.tensor([bool(f) for f in failed], device=device)
        w_final = torch.where(bad.view(-1, 1, 1), w_good, w)
        ws_out = w_final.repeat(1, num_ws, 1) if rows == 1 else w_final
    return ws_out.float().cpu(), steps, converged, failed, seconds


@torch.no_grad()
def _quality(recon, targets, masks, perceptual, batch: int, device) -> tuple[np.ndarray, np.ndarray]:
    psnr, perc = [], []
    for a in range(0, len(recon), batch):
        x, y = recon[a:a + batch].to(device), targets[a:a + batch].to(device)
        mk = masks[a:a + batch].to(device)[:, None].float()
        mse01 = masked_mse(x.clamp(-1, 1), y, mk) / 4  # images in [0, 1]
        psnr.append((10 * torch.log10(1 / mse01.clamp_min(1e-10))).cpu())
        comp = x * mk + y * (1 - mk)
        perc.append(perceptual(comp, y).cpu())
    if not psnr:
        return np.zeros(0), np.zeros(0)
    return torch.cat(psnr).double().numpy(), torch.cat(perc).double().numpy()


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------


def _cache_path(folder: Path, image_key: str, g_hash: str, s_hash: str) -> Path:
    name = hashlib.sha256(f"{image_key}|{g_hash}|{s_hash}".encode()).hexdigest()[:40]
    return folder / f"{name}.npz"




def _write_cache(path: Path, ws: np.ndarray, steps, converged, seconds, image_key, g_hash, s_hash) -> None:
    def write(tmp: Path):
        np.savez(tmp, ws=ws.astype(np.float32), steps=np.int64(steps), converged=np.bool_(converged),
                 seconds=np.float64(seconds), image_key=image_key, generator_hash=g_hash, settings_hash=s_hash,
                 version=np.int64(PROJECTION_VERSION))

    atomic_save(path, write)


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------

_PERCEPTUAL: dict = {}


def _perceptual_for(settings: ProjectionSettings, device):
    key = (settings.vgg16_weights, settings.lpips_weights, str(device))
    if key not in _PERCEPTUAL:
        _PERCEPTUAL[key] = load_perceptual(settings.vgg16_weights, settings.lpips_weights, device=device)
    return _PERCEPTUAL[key]


def project_images(G, images, masks=None, settings: ProjectionSettings | None = None, cache: bool = True,
                   progress: bool = True, device=None, batch_size: int | None = None, executor="local",
                   threads: int = 1, on_canvas: bool = False) -> Projection:
    """Project images into the frozen generator's W (or W+) space.

    G: a dapper/stylegan2-ada style generator (``G.synthesis(ws, noise_mode=...)``, ``G.mapping``,
    ``img_resolution``, ``num_ws``, ``w_dim``, optional ``content_box``); not modified.
    images: uint8 [N, H, W, 3] (array, tensor or list of differently sized [H, W, 3]) or float
    NCHW in [-1, 1] (tensor or list of [3, H, W]); letterboxed to the generator's content box.
    masks: optional bool [N, H, W] (or list) of object pixels, in the images' own coordinates;
    only masked pixels count in the losses and the PSNR.
    on_canvas: the images are already letterboxed onto the generator's canvas (R x R, the photo in
    its content box, as ``stanford_cars.load_pool(content_size=...)`` gives them): they are not
    letterboxed again; give their content masks as ``masks`` so the bars never reach the loss
    (without masks only the content box counts).
    settings: :class:`ProjectionSettings` (default: dapper's fast schedule).
    cache: read and write per-image results under ``cache_dir("projections", <generator hash>)``.
    device: where to optimise (default: the generator's device). batch_size: None picks one by
    :func:`choose_batch_size`.
    executor: ``"local"``, ``"ray"`` or an executor of :mod:`dapper.executor`; with Ray each batch is
    a task (``threads`` CPUs, one GPU when ``device`` is CUDA and the cluster has GPUs), and this
    process writes the cache as batches come back, so an interrupted run resumes from it. The
    batches and their per-image noise are the same on both, so the results are too.
    """
    settings = settings or ProjectionSettings()
    device = torch.device(device) if device is not None else next(G.parameters()).device
    items = as_list(images)
    mask_items = [None] * len(items) if masks is None else as_list(masks, item_ndim=2)
    if len(mask_items) != len(items):
        raise ValueError(f"{len(mask_items)} masks for {len(items)} images")
    n = len(items)
    keys = [image_key(im, mk) for im, mk in zip(items, mask_items)]
    prepared = [prepare_target(im, mk, G, on_canvas) for im, mk in zip(items, mask_items)]
    r = G.img_resolution
    targets = torch.stack([p[0] for p in prepared]) if n else torch.zeros(0, 3, r, r)
    valid = torch.stack([p[1] for p in prepared]) if n else torch.zeros(0, r, r, dtype=torch.bool)

    g_hash = weights_hash(G)
    perceptual = _perceptual_for(settings, device)
    encoder = None
    effective = settings
    if settings.init == "encoder" and settings.steps >= 0:
        encoder = encoder_for(G, g_hash, settings.encoder, device=device)
        if encoder is None:
            effective = settings.replace(init="w_avg")
    s_hash = _settings_hash(effective, G, perceptual.content_hash, encoder.content_hash if encoder else None,
                            on_canvas)
    folder = None
    if cache:
        folder = cache_dir("projections", g_hash[:16])

    ws = torch.zeros(n, G.num_ws, G.w_dim)
    steps = np.zeros(n, np.int64)
    converged = np.zeros(n, bool)
    failed = [""] * n
    seconds = np.zeros(n)
    cached = np.zeros(n, bool)
    todo = []
    for i in range(n):
        if folder is not None:
            path = _cache_path(folder, keys[i], g_hash, s_hash)
            d = read_cached_arrays(path)
            if d is not None and tuple(d["ws"].shape) == (G.num_ws, G.w_dim):
                ws[i] = torch.from_numpy(d["ws"])
                steps[i], converged[i], seconds[i] = int(d["steps"]), bool(d["converged"]), 0.0
                cached[i] = True
                continue
        todo.append(i)

    bs = batch_size or choose_batch_size(G, device)
    t_start = time.perf_counter()
    if todo:
        stats = w_statistics(G, effective.w_avg_samples, g_hash=g_hash)

        executor = get_executor(executor)
        batches = [todo[a:a + bs] for a in range(0, len(todo), bs)]
        bar = tqdm(total=n, initial=n - len(todo), desc="projecting", unit="img", disable=not progress)
        if executor.name == "local":
            parts = {"G": G, "perceptual": perceptual, "encoder": encoder, "w_avg": stats.mean, "w_std": stats.spread,
                     "settings": effective, "device": device, "bar": bar}
        else:  # the models travel to the workers on the CPU; each worker moves them to its device
            gpus = 1 if device.type == "cuda" and executor.gpus_available() else 0
            parts = {"G": _cpu_copy(G), "perceptual": _cpu_copy(perceptual), "encoder": _cpu_copy(encoder),
                     "w_avg": stats.mean.cpu(), "w_std": _on(stats.spread, "cpu"), "settings": effective,
                     "device": "cuda" if gpus else "cpu", "threads": threads, "key": (g_hash, s_hash)}
        jobs = [(targets[c], valid[c], [keys[i] for i in c]) for c in batches]
        options = {} if executor.name == "local" else {"num_cpus": threads, "num_gpus": gpus}
        try:
            for b, out in executor.map(_project_batch, jobs, shared=parts, **options):
                b_ws, b_steps, b_conv, b_failed, b_sec = out
                for j, i in enumerate(batches[b]):
                    ws[i], steps[i], converged[i] = b_ws[j], b_steps[j], b_conv[j]
                    failed[i], seconds[i] = b_failed[j], b_sec[j]
                    # Failures are not cached: a rerun tries them again.
                    if folder is not None and not b_failed[j]:
                        _write_cache(_cache_path(folder, keys[i], g_hash, s_hash), b_ws[j].numpy(), b_steps[j],
                                     b_conv[j], b_sec[j], keys[i], g_hash, s_hash)
                bar.update(len(batches[b]))
        finally:
            bar.close()
    wall = time.perf_counter() - t_start
    recon = synthesize(G, ws, max(bs, 8), clamp=False)  # quality clamps where it measures
    psnr, perc = _quality(recon, targets, valid, perceptual, max(bs, 8), device)
    metrics = {"psnr": psnr, "perceptual": perc, "steps": steps, "converged": converged,
               "failed": np.array(failed, dtype=object), "seconds": seconds, "cached": cached}
    info = {"wall_seconds": wall, "batch_size": bs, "n_optimised": len(todo), "settings_hash": s_hash,
            "init": effective.init, "perceptual": perceptual.name, "device": str(device)}
    return Projection(ws=ws, reconstructions=recon, targets=targets, masks=valid, metrics=metrics, keys=keys,
                      settings=effective, generator_hash=g_hash, info=info)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


_WORKER_MODELS: dict = {}  # per worker process: (generator hash, settings hash, device) -> models on it


def _on(x, device):
    """A module or tensor moved to ``device``; anything else (None, a float) as it is."""
    return x.to(device) if isinstance(x, (torch.Tensor, torch.nn.Module)) else x


def _cpu_copy(module):
    if module is None or all(p.device.type == "cpu" for p in module.parameters()):
        return module
    return copy.deepcopy(module).cpu()


def _project_batch(parts: dict, job) -> tuple:
    """Optimise one batch ``job = (targets, masks, keys)`` with the models in ``parts`` (see
    :func:`project_images`); returns what :func:`_optimise_batch` does."""
    tgt, msk, keys = job
    device = torch.device(parts["device"])
    models = {k: parts[k] for k in ("G", "perceptual", "encoder", "w_avg", "w_std")}
    if "key" in parts:  # a worker: its models, moved to its device once per process
        torch.set_num_threads(int(parts["threads"]))
        cache_key = (*parts["key"], str(device))
        if cache_key not in _WORKER_MODELS:
            _WORKER_MODELS.clear()
            _WORKER_MODELS[cache_key] = {k: _on(v, device) for k, v in models.items()}
        models = _WORKER_MODELS[cache_key]
    G, encoder, w_avg = models["G"], models["encoder"], models["w_avg"]
    # Projection is an optimisation: it needs gradients even when called under torch.no_grad()
    # (a notebook's inference block), or every image would stay at its start.
    with torch.enable_grad():
        if encoder is not None:
            with torch.no_grad():
                w0 = encoder(tgt.to(device)).float()
                # A non-finite image gives a non-finite guess; start it at the mean so the
                # failure is reported by the loss, like any other.
                w0 = torch.where(torch.isfinite(w0).all(1, keepdim=True), w0, w_avg.to(device))
        else:
            w0 = w_avg.to(device).expand(len(keys), -1)
        return _optimise_batch(G, tgt, msk, w0, parts["settings"], models["perceptual"], models["w_std"], keys,
                               device, parts.get("bar"))


def project_folder(G, folder, out, settings: ProjectionSettings | None = None,
                   **options) -> tuple[Projection, list[str], list[tuple[str, str]]]:
    """Project every image file in ``folder`` (any size and mode) with :func:`project_images`
    (``options``: its other keyword arguments) and write ``out``: ``ws.npz``, ``reconstructions/*.png``,
    ``metrics.csv`` and, when files were skipped, ``skipped.csv``.

    Returns the projection, the file names of the images it holds (in its order) and the skipped
    files as ``(path, reason)``: unreadable images and files without an image extension. Without any
    usable image the projection is empty (zero rows) and its files are written all the same, so a
    batch job always finds them."""
    folder, out = Path(folder), Path(out)
    images, kept, skipped = load_images(_list_images(folder))
    ignored = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
               and p.suffix.lower() not in IMAGE_SUFFIXES]
    skipped += [(str(p), "not an image file extension") for p in ignored]
    if not images:
        empty = Projection(torch.zeros(0, G.num_ws, G.w_dim), torch.zeros(0, 3, 1, 1), torch.zeros(0, 3, 1, 1),
                           torch.zeros(0, 1, 1, dtype=torch.bool), {k: np.zeros(0) for k in METRIC_COLUMNS}, [],
                           settings or ProjectionSettings(), "")
        _write_outputs(out, [], empty, skipped)
        return empty, [], skipped
    proj = project_images(G, images, settings=settings, **options)
    names = [Path(p).name for p in kept]
    _write_outputs(out, names, proj, skipped)
    return proj, names, skipped


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_SUFFIXES)


def _write_outputs(out: Path, names: list[str], proj: Projection, skipped: list) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rec_dir = out / "reconstructions"
    rec_dir.mkdir(exist_ok=True)
    atomic_save(out / "ws.npz", lambda p: np.savez(p, ws=proj.ws.numpy(), names=np.array(names),
                                                   keys=np.array(proj.keys), generator_hash=proj.generator_hash,
                                                   settings=json.dumps(proj.settings.to_dict())))
    images = to_uint8(proj.reconstructions)
    used = set()
    for name, im in zip(names, images):
        stem = Path(name).stem
        while stem in used:  # a.png and a.jpg must not overwrite each other
            stem += "_"
        used.add(stem)
        atomic_save(rec_dir / f"{stem}.png", lambda p, im=im: Image.fromarray(im).save(p))
    frame = proj.to_frame()
    frame.insert(0, "image", names)
    atomic_save(out / "metrics.csv", lambda p: frame.to_csv(p, index=False))
    if skipped:
        sk = pd.DataFrame(skipped, columns=["image", "reason"])
        atomic_save(out / "skipped.csv", lambda p: sk.to_csv(p, index=False))
