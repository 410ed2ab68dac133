"""Encoder: a first guess of an image's w, so projection starts near the answer.

A small CNN trained for one frozen generator on pairs ``(G.synthesis(w), w)`` of the generator's
own samples: first on the distance to ``w`` (in units of W's per-dimension spread), then briefly on
the reconstruction ``G(encoder(x))`` against ``x`` (masked-free pixel MSE plus the perceptual
distance of :mod:`dapper.inversion.perceptual`). Real images are never used, so nothing about the target
classes leaks in; the optimisation that follows corrects what the guess misses.

    python -m dapper encoder train --threads 2   # the shipped generator (make encoder); ~6 min on 2 cores

The checkpoint (``checkpoints/encoder_source_gan.safetensors`` + ``.json``) records the sha256 of the
generator it was trained for; :func:`encoder_for` refuses (with a warning, projection then starts
from the mean w) to use it with any other generator.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from dapper.fitting import EpochSampler, fit, warmup_cosine
from dapper.inversion.latents import masked_mse, w_statistics
from dapper.inversion.perceptual import load_perceptual
from dapper.modelfile import config_path, read_model, save_model
from dapper.stylegan2 import load_generator
from dapper.utils import cache_dir, default_generator_path, repo_root, seed_everything, weights_hash

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = repo_root() / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "encoder_source_gan.safetensors"

__all__ = ["Encoder", "encoder_for", "load_encoder", "train"]


def _conv(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True))


class Encoder(nn.Module):
    """[N, 3, R, R] in [-1, 1] -> w [N, w_dim] (resized to ``input_size`` first).

    The head predicts ``(w - w_avg) / w_scale`` (per-dimension spread of W), so every output is
    about unit scale whatever the generator; ``w_avg`` and ``w_scale`` are buffers saved with it.
    """

    def __init__(self, w_dim: int, input_size: int = 64, widths=(16, 32, 64, 128, 192), hidden: int = 512):
        super().__init__()
        self.w_dim, self.input_size, self.widths, self.hidden = w_dim, input_size, tuple(widths), hidden
        layers, cin = [], 3
        for i, c in enumerate(widths):
            # Full resolution and the last (4 px) stage get one convolution, the middle stages two.
            layers += [_conv(cin, c, 1 if i == 0 else 2)]
            if 0 < i < len(widths) - 1:
                layers.append(_conv(c, c))
            cin = c
        self.features = nn.Sequential(*layers)
        side = input_size // 2 ** (len(widths) - 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, hidden), nn.LeakyReLU(0.2, True),
                                  nn.Linear(hidden, w_dim))
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.register_buffer("w_scale", torch.ones(w_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return self.w_avg + self.head(self.features(x)) * self.w_scale

    @property
    def content_hash(self) -> str:
        if getattr(self, "_hash", None) is None:
            self._hash = weights_hash(self)
        return self._hash


def load_encoder(path=None, device="cpu") -> Encoder:
    """Load an encoder checkpoint (``.safetensors`` + ``.json``); ``config`` attribute holds the JSON."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    state, config = read_model(path, "encoder", "python -m dapper encoder train --network CKPT")
    arch = config["architecture"]
    enc = Encoder(arch["w_dim"], arch["input_size"], tuple(arch["widths"]), arch["hidden"])
    enc.load_state_dict(state)
    enc.config = config
    return enc.to(device).eval().requires_grad_(False)


_LOADED: dict = {}


def _default_fits(G) -> bool:
    """Whether the shipped encoder's recorded shape (read from its JSON, the weights left closed)
    is ``G``'s: W width and image size."""
    cfg = config_path(DEFAULT_CHECKPOINT)
    if not cfg.is_file():
        return True  # encoder_for says it is missing
    arch = json.loads(cfg.read_text()).get("architecture", {})
    return arch.get("w_dim") == G.w_dim and arch.get("input_size") == G.img_resolution


def encoder_for(G, g_hash: str | None = None, path=None, device="cpu") -> Encoder | None:
    """The encoder trained for generator ``G``, or None (with a warning) when there is none or it
    was trained for another generator (its recorded generator hash differs). With no ``path``, the
    shipped encoder is considered only for a generator of its shape (W width, image size): for any
    other (a real-mode generator) the answer is None, silently, and the shipped file stays closed."""
    default = path is None
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    g_hash = g_hash or weights_hash(G)
    key = (str(path), g_hash, str(device))
    if key in _LOADED:
        return _LOADED[key]
    enc = None
    if default and not _default_fits(G):
        # the shipped encoder is the embedded world's; another world's generator (real mode) has
        # none unless one is named, and the shipped one is never opened for it
        _LOADED[key] = None
        return None
    try:
        candidate = load_encoder(path, device)
    except FileNotFoundError as exc:
        warnings.warn(f"no encoder ({exc}); projection starts from the mean w", stacklevel=3)
    else:
        trained_for = candidate.config.get("generator_hash")
        if trained_for != g_hash:
            warnings.warn(f"encoder {path} was trained for generator {str(trained_for)[:12]}, not this one "
                          f"({g_hash[:12]}); projection starts from the mean w", stacklevel=3)
        elif candidate.w_dim != G.w_dim:
            warnings.warn(f"encoder {path} predicts w_dim={candidate.w_dim}, generator has {G.w_dim}", stacklevel=3)
        else:
            enc = candidate
    _LOADED[key] = enc
    return enc


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

CONFIG = dict(n_train=12000, n_heldout=500, batch_size=64, lr=2e-3, weight_decay=1e-4, epochs=6,
              recon_steps=400, recon_batch=8, recon_lr=3e-4,
              recon_weight_w=0.5, perceptual_weight=1.0, truncation=(0.6, 1.0), seed=0)


@torch.no_grad()
def _sample_pairs(G, n: int, seed: int, truncation, batch: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
    """n generated images (float [n, 3, R, R]) and their w [n, w_dim], truncation psi uniform in range."""
    gen = torch.Generator().manual_seed(seed)
    ws, imgs = [], []
    for a in range(0, n, batch):
        b = min(batch, n - a)
        z = torch.randn(b, G.z_dim, generator=gen)
        psi = torch.empty(b, 1).uniform_(*truncation, generator=gen)
        w = G.mapping(z, None)[:, 0]
        w = G.mapping.w_avg + psi * (w - G.mapping.w_avg)  # a spread of typical and atypical codes
        imgs.append(G.synthesis(w[:, None].repeat(1, G.num_ws, 1), noise_mode="random").clamp(-1, 1))
        ws.append(w)
    return torch.cat(imgs), torch.cat(ws)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    # A little blur, contrast and noise: real photos and renders are not quite what G draws.
    n = x.shape[0]
    if float(torch.rand((), generator=gen)) < 0.3:
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 0.5 + x * 0.5
    contrast = 1 + 0.1 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    x = x * contrast + 0.05 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    x = x + 0.03 * torch.rand(n, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    return x.clamp(-1, 1)


@torch.no_grad()
def evaluate(enc: Encoder, G, images: torch.Tensor, ws: torch.Tensor, perceptual=None) -> dict:
    """Held-out scores: normalised w error and the PSNR of G(encoder(x)) against x (no optimisation)."""
    enc.eval()
    pred = torch.cat([enc(images[a:a + 100]) for a in range(0, len(images), 100)])
    err = ((pred - ws) / enc.w_scale).square().mean(1)
    rec = torch.cat([G.synthesis(pred[a:a + 100, None].repeat(1, G.num_ws, 1), noise_mode="const")
                     for a in range(0, len(pred), 100)])
    mse = (rec.clamp(-1, 1) - images).square().mean((1, 2, 3)) / 4
    out = {"n": int(len(images)), "w_mse_normalised": float(err.mean()),
           "psnr_encoder_only_db": float((10 * torch.log10(1 / mse.clamp_min(1e-10))).mean())}
    if perceptual is not None:
        out["perceptual_encoder_only"] = float(perceptual(rec, images).mean())
    return out


def train(network=None, out=None, scale: float = 1.0, threads: int = 1, seed: int = 0) -> dict:
    """Train an encoder for the generator at ``network`` (default: the shipped source GAN)."""
    torch.set_num_threads(threads)
    seed_everything(seed)
    cfg = dict(CONFIG, seed=seed)
    network = Path(network) if network is not None else Path(default_generator_path())
    G = load_generator(network, device="cpu", cpu_bf16="auto")  # the numerics real mode projects with
    g_hash = weights_hash(G)
    perceptual = load_perceptual()
    t0 = time.time()
    n_train = max(128, int(cfg["n_train"] * scale))
    n_held = max(32, int(cfg["n_heldout"] * scale))
    print(f"[encoder] generator {network} ({g_hash[:12]}); sampling {n_train}+{n_held} pairs", flush=True)
    x_train, w_train = _sample_pairs(G, n_train, seed, cfg["truncation"])
    x_held, w_held = _sample_pairs(G, n_held, seed + 1_000_003, (1.0, 1.0))
    t_sample = time.time() - t0

    enc = Encoder(G.w_dim, input_size=min(64, G.img_resolution) if G.img_resolution >= 16 else 16)
    w_avg = w_statistics(G, 10000, g_hash=g_hash).mean
    with torch.no_grad():
        enc.w_avg.copy_(w_avg)
        enc.w_scale.copy_((w_train - w_avg).std(0).clamp_min(1e-3))
    gen = torch.Generator().manual_seed(seed)
    batches = EpochSampler(n_train, cfg["batch_size"], gen)
    steps = batches.steps(cfg["epochs"])
    opt = torch.optim.AdamW(enc.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])

    def w_loss(step: int) -> torch.Tensor:
        idx = batches(step)
        pred = enc(_augment(x_train[idx], gen))
        return ((pred - w_train[idx]) / enc.w_scale).square().mean()

    enc.train()
    log_w = fit(w_loss, opt, steps, lr=warmup_cosine(cfg["lr"], steps),
                desc=f"encoder phase 1 (w loss): {sum(p.numel() for p in enc.parameters())} params")
    after_w = evaluate(enc, G, x_held, w_held, perceptual)
    print(f"[encoder] after w loss: {after_w}", flush=True)

    # Phase 2: what matters downstream is the picture G draws from the guess, not the code itself.
    # Batch norm statistics stay frozen (eval mode): batches here are small.
    enc.eval()
    opt2 = torch.optim.Adam(enc.parameters(), lr=cfg["recon_lr"])

    def recon_loss(step: int) -> torch.Tensor:
        idx = torch.randint(0, n_train, (cfg["recon_batch"],), generator=gen)
        x = x_train[idx]
        pred = enc(_augment(x, gen))
        rec = G.synthesis(pred[:, None].repeat(1, G.num_ws, 1), noise_mode="const")
        ones = torch.ones_like(x[:, :1])
        loss = (masked_mse(rec, x, ones) + cfg["perceptual_weight"] * perceptual(rec, x)).mean()
        return loss + cfg["recon_weight_w"] * ((pred - w_train[idx]) / enc.w_scale).square().mean() * 0.1

    log_r = fit(recon_loss, opt2, cfg["recon_steps"], desc="encoder phase 2 (reconstruction)")
    metrics = evaluate(enc, G, x_held, w_held, perceptual)
    print(f"[encoder] after reconstruction loss: {metrics}", flush=True)
    if metrics["psnr_encoder_only_db"] < after_w["psnr_encoder_only_db"] - 0.2:
        logger.warning("reconstruction phase lowered held-out PSNR")

    command = f"python -m dapper encoder train --network {network}" + ("" if scale == 1.0 else f" --scale {scale:g}")
    config = {
        "name": "encoder_source_gan" if out is None and scale == 1.0 else Path(out or "encoder").stem,
        "about": "First guess of w for projection; trained only on the generator's own samples (G(w), w).",
        "generator": str(network), "generator_hash": g_hash,
        "architecture": {"class": "dapper.inversion.encoder.Encoder", "w_dim": G.w_dim, "input_size": enc.input_size,
                         "widths": list(enc.widths), "hidden": enc.hidden,
                         "params": sum(p.numel() for p in enc.parameters())},
        "input": "float NCHW in [-1, 1] as letterboxed for the generator; resized to input_size",
        "output": "w [N, w_dim] (W space; repeat over num_ws for ws)",
        "training": {"command": command, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
                     "n_train_pairs": n_train, "sample_seconds": round(t_sample),
                     "w_phase": log_w.as_dict(), "recon_phase": log_r.as_dict(),
                     "wall_seconds": round(time.time() - t0),
                     "torch_threads": threads, "torch": torch.__version__},
        "heldout": {"after_w_loss": after_w, "final": metrics,
                    "data": f"{n_held} fresh samples of the generator (psi 1, seed {seed + 1_000_003})"},
    }
    if out is None:
        out = DEFAULT_CHECKPOINT if scale == 1.0 else cache_dir("encoder") / "encoder_smoke.safetensors"
    out = Path(out)
    save_model(enc, config, out)
    _LOADED.clear()
    print(f"[encoder] saved {out} in {(time.time() - t0) / 60:.1f} min", flush=True)
    return config
