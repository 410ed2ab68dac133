"""Perceptual distance for projection: LPIPS-style normalised multi-layer feature differences.

Two feature networks sit behind one interface (:class:`PerceptualDistance`):

* ``toycars`` (the default): a small CNN shipped in ``checkpoints/perceptual_toycars.safetensors``
  (+ ``.json``), trained by ``python -m dapper perceptual train`` on toycars **source** renders only
  (the images the source GAN learns from; never the target set, never the evaluation oracles) with
  proxy tasks the renderer's ground truth makes free: body type, yaw bin, colour and elevation.
  Every layer gets the same weight, each channel vector is unit-normalised as in LPIPS.
* ``vgg16-lpips``: VGG16 with the LPIPS linear calibration, from two local files the user supplies:
  a torchvision ``vgg16`` state dict (``.pth``; ``features.*`` keys suffice) and the LPIPS linear
  layer weights (``lin0..lin4``, e.g. the lpips package's ``weights/v0.1/vgg.pth``). Both are read
  with ``torch.load(weights_only=True)``; TorchScript archives such as the official projector's
  ``vgg16.pt`` carry code and are refused.

Distance between images ``x`` and ``y`` (float NCHW in [-1, 1]):
``d = sum_l a_l * mean_hw ||n(f_l(x)) - n(f_l(y))||^2_{w_l}`` where ``n`` unit-normalises over
channels and ``w_l`` are per-channel weights (uniform for ``toycars``, LPIPS's for VGG). The
network returns the flat vector ``phi(x)`` with ``||phi(x) - phi(y)||^2 = d``, so a projection
computes its target's features once.
"""

from __future__ import annotations

import json
import math
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dapper.data import toycars
from dapper.fitting import EpochSampler, fit, warmup_cosine
from dapper.modelfile import read_model, save_model
from dapper.utils import cache_dir, repo_root, seed_everything, weights_hash

CHECKPOINT_DIR = repo_root() / "checkpoints"
DEFAULT_CHECKPOINT = CHECKPOINT_DIR / "perceptual_toycars.safetensors"
YAW_BINS = 24

__all__ = ["FeatureNet", "PerceptualDistance", "VGG16LPIPS", "load_perceptual", "train"]


def _normalise_channels(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    # LPIPS's unit normalisation over channels: the distance compares directions of activation
    # vectors, so a layer with large activations does not drown the others.
    return f * torch.rsqrt(f.square().sum(dim=1, keepdim=True) + eps)


class PerceptualDistance(nn.Module):
    """Base: ``features(x) -> [N, D]`` with ``||features(x) - features(y)||^2`` the distance.

    Subclasses implement ``layers(x) -> list of [N, C_l, H_l, W_l]`` and set ``channel_weights``
    (one tensor ``[C_l]`` per layer, buffers) and ``layer_weights`` (floats). Inputs are float NCHW
    in [-1, 1]; frozen, eval mode.
    """

    name = "base"
    input_size: int | None = None  # images are resized to this square size first (None: as given)
    max_size: int | None = None  # or downsampled (area) when larger than this

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected float [N, 3, H, W] in [-1, 1], got {tuple(x.shape)}")
        size = x.shape[-1]
        if self.input_size is not None and (x.shape[-2], x.shape[-1]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True,
                              align_corners=False)
        elif self.max_size is not None and size > self.max_size:
            x = F.interpolate(x, size=(self.max_size, self.max_size), mode="area")
        return x

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """float [N, 3, H, W] in [-1, 1] -> float [N, D]; squared distances of rows = perceptual distance."""
        out = []
        for f, cw, lw in zip(self.layers(self._prepare(x)), self.channel_weights, self.layer_weights):
            f = _normalise_channels(f.float()) * cw.sqrt().view(1, -1, 1, 1)
            out.append(f.flatten(1) * math.sqrt(lw / (f.shape[2] * f.shape[3])))
        return torch.cat(out, dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance per pair: float [N] (>= 0)."""
        return (self.features(x) - self.features(y)).square().sum(dim=1)

    @property
    def content_hash(self) -> str:
        if getattr(self, "_hash", None) is None:
            self._hash = weights_hash(self)
        return self._hash


# ---------------------------------------------------------------------------------------------
# The shipped toycars feature network
# ---------------------------------------------------------------------------------------------


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FeatureNet(PerceptualDistance):
    """Small CNN: [N, 3, 64, 64] in [-1, 1] -> 4 feature maps (64, 32, 16, 8 px).

    About 40 M multiply-adds per 64 px image (less than the toycars generator's synthesis), so the
    perceptual term does not dominate a projection step. The heads (``body``, ``yaw``, ``colour``,
    ``elevation``) only serve training; the distance uses the four stages.
    """

    name = "toycars"
    input_size = 64

    def __init__(self, widths=(24, 32, 64, 96), n_body: int = 8, yaw_bins: int = YAW_BINS):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.widths = tuple(widths)
        self.stage1 = _conv(3, w1)
        self.stage2 = nn.Sequential(_conv(w1, w2, 2), _conv(w2, w2))
        self.stage3 = nn.Sequential(_conv(w2, w3, 2), _conv(w3, w3))
        self.stage4 = nn.Sequential(_conv(w3, w4, 2), _conv(w4, w4))
        self.pool = nn.AdaptiveAvgPool2d(2)  # a 2x2 grid keeps where things are (pose needs it)
        self.head = nn.Linear(w4 * 4, n_body + yaw_bins + 3 + 1)
        self.n_body, self.yaw_bins = n_body, yaw_bins
        # Part of the distance's definition, not learned: every channel counts alike and the four
        # stages are averaged, so distances fall in [0, 4] like LPIPS's (typically 0.1-1).
        for i, c in enumerate(widths):
            self.register_buffer(f"channel_weight{i}", torch.ones(c), persistent=False)
        self.layer_weights = [1.0 / len(widths)] * len(widths)

    @property
    def channel_weights(self):
        return [getattr(self, f"channel_weight{i}") for i in range(len(self.widths))]

    def layers(self, x):
        f1 = self.stage1(x)
        f2 = self.stage2(f1)
        f3 = self.stage3(f2)
        f4 = self.stage4(f3)
        return [f1, f2, f3, f4]

    def heads(self, x: torch.Tensor) -> dict:
        """Training outputs: body logits [N, n_body], yaw-bin logits [N, bins], colour [N, 3], elevation [N]."""
        f4 = self.layers(self._prepare(x))[-1]
        out = self.head(self.pool(f4).flatten(1))
        b, y = self.n_body, self.yaw_bins
        return {"body": out[:, :b], "yaw": out[:, b:b + y], "colour": out[:, b + y:b + y + 3],
                "elevation": out[:, -1]}


# ---------------------------------------------------------------------------------------------
# VGG16-LPIPS from user-supplied local weights
# ---------------------------------------------------------------------------------------------

# relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's vgg16().features
_VGG_TAPS = (3, 8, 15, 22, 29)
_VGG_CHANNELS = (64, 128, 256, 512, 512)
# LPIPS's input scaling (applied to images in [-1, 1]); numeric constants of the LPIPS paper's code.
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)


def _refuse_torchscript(path: Path) -> None:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.split("/", 1)[-1].startswith(("code/", "constants.pkl")) for n in names):
            raise ValueError(
                f"{path} is a TorchScript archive (it contains code, like the official projector's vgg16.pt); "
                "dapper never runs code from a weights file. Supply a torchvision vgg16 state dict "
                "(torch.save(torchvision.models.vgg16(weights=...).state_dict(), 'vgg16.pth')) instead."
            )


def _load_state_dict(path: Path, what: str) -> dict:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} not found")
    _refuse_torchscript(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
        raise ValueError(f"{path}: cannot read {what} as a plain state dict with weights_only=True ({exc})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: expected a state dict of tensors for {what}")
    return sd


def vgg16_trunk() -> nn.Sequential:
    """torchvision's ``vgg16().features`` up to relu5_3, same module indices (so its state dict
    keys fit), built without the 120 M-parameter classifier."""
    layers: list[nn.Module] = []
    cin = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers)


class VGG16LPIPS(PerceptualDistance):
    """VGG16-LPIPS: torchvision VGG16 conv trunk + LPIPS per-channel weights, from local files.

    Images larger than 256 px are area-downsampled to 256 first (as the official projector does).
    """

    name = "vgg16-lpips"
    max_size = 256

    def __init__(self, vgg_state: dict, lin_state: dict):
        super().__init__()
        feats = vgg16_trunk()
        sd = {k.removeprefix("features."): v for k, v in vgg_state.items() if k.startswith("features.")}
        if not sd:  # a state dict of the features module alone
            sd = dict(vgg_state)
        try:
            feats.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"VGG16 weights do not fit torchvision's vgg16 features: {exc}") from None
        self.vgg = feats
        lins = {}
        for k, v in lin_state.items():
            # lpips package: "lin0.model.1.weight" [1, C, 1, 1]; also accept "lin0.weight" / "lin0".
            head = k.split(".", 1)[0]
            if head.startswith("lin") and head[3:].isdigit() and (k == head or k.endswith("weight")):
                lins[int(head[3:])] = v.reshape(-1).float()
        if sorted(lins) != list(range(5)) or [len(lins[i]) for i in range(5)] != list(_VGG_CHANNELS):
            raise ValueError(f"LPIPS linear weights must be lin0..lin4 with {_VGG_CHANNELS} channels, "
                             f"got { {i: len(v) for i, v in lins.items()} }")
        for i in range(5):
            # LPIPS weights are non-negative by training; clamp so sqrt below is defined.
            self.register_buffer(f"channel_weight{i}", lins[i].clamp_min(0))
        self.register_buffer("shift", torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1))
        self.layer_weights = [1.0] * 5

    @property
    def channel_weights(self):
        return [getattr(self, f"channel_weight{i}") for i in range(5)]

    def layers(self, x):
        x = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.vgg):
            x = layer(x)
            if i in _VGG_TAPS:
                out.append(x)
        return out


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_feature_net(path=None, device="cpu") -> FeatureNet:
    """The shipped toycars feature network (or another FeatureNet checkpoint at ``path``)."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    command = "python -m dapper perceptual train"
    state, config = read_model(path, "perceptual network", command)
    toycars.check_world(config, path, command)
    arch = config["architecture"]
    net = FeatureNet(tuple(arch["widths"]), arch["n_body"], arch["yaw_bins"])
    # Early files also stored the (fixed) channel weights; the definition in the code rules.
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("channel_weight")})
    net.config = config
    return net.to(device).eval().requires_grad_(False)


def load_perceptual(vgg16_weights=None, lpips_weights=None, path=None, device="cpu") -> PerceptualDistance:
    """The perceptual distance projection uses.

    With ``vgg16_weights`` (torchvision vgg16 state dict) and ``lpips_weights`` (LPIPS lin0..lin4),
    VGG16-LPIPS; otherwise the shipped toycars feature network (or the FeatureNet at ``path``).
    Frozen, eval mode, on ``device``.
    """
    if (vgg16_weights is None) != (lpips_weights is None):
        raise ValueError("VGG16-LPIPS needs both vgg16_weights (torchvision state dict) and lpips_weights")
    if vgg16_weights is not None:
        net = VGG16LPIPS(_load_state_dict(vgg16_weights, "VGG16"), _load_state_dict(lpips_weights, "LPIPS linear"))
        return net.to(device).eval().requires_grad_(False)
    return load_feature_net(path, device)


# ---------------------------------------------------------------------------------------------
# Training on source renders
# ---------------------------------------------------------------------------------------------

CONFIG = dict(n_train=40000, n_heldout=2000, epochs=3, batch_size=64, lr=3e-3, weight_decay=5e-4,
              widths=(24, 32, 64, 96), source_seed=0)


def _flip(x: torch.Tensor, yaw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # A mirror image is the same kind of car seen from the mirrored yaw (toycars: 90 <-> 270).
    return x.flip(3), (360.0 - yaw) % 360.0


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    # Shifts, a little blur and noise: the network will mostly compare a generator's slightly soft
    # outputs with real images, so it should not hinge on pixel-exact renders.
    pad = 3
    xp = F.pad(x, (pad,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    x = xp[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    if float(torch.rand((), generator=gen)) < 0.3:
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1) * 0.5 + x * 0.5
    x = x + 0.03 * torch.rand(x.shape[0], 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    return x.clamp(-1, 1)


def _losses(out: dict, body, yaw, colour, elevation) -> tuple[torch.Tensor, dict]:
    bins = out["yaw"].shape[1]
    yaw_bin = (yaw / (360.0 / bins)).long() % bins
    lb = F.cross_entropy(out["body"], body)
    ly = F.cross_entropy(out["yaw"], yaw_bin, label_smoothing=0.1)
    lc = F.mse_loss(out["colour"], colour * 2 - 1)
    le = F.mse_loss(out["elevation"], elevation / 30.0)
    return lb + ly + 2.0 * lc + le, {"body": lb.item(), "yaw": ly.item(), "colour": lc.item(), "elev": le.item()}


@torch.no_grad()
def evaluate(net: FeatureNet, images: np.ndarray, meta: dict, batch: int = 256) -> dict:
    """Proxy-task scores on held-out source renders."""
    net.eval()
    outs = []
    for a in range(0, len(images), batch):
        x = torch.from_numpy(np.array(images[a:a + batch])).permute(0, 3, 1, 2).float() / 127.5 - 1
        outs.append({k: v.float() for k, v in net.heads(x).items()})
    out = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    body = torch.from_numpy(meta["body"].astype(np.int64))
    bins = out["yaw"].shape[1]
    yaw = torch.from_numpy(meta["yaw"].astype(np.float32))
    pred_yaw = (out["yaw"].argmax(1).float() + 0.5) * (360.0 / bins)
    err = (pred_yaw - yaw).abs() % 360
    err = torch.minimum(err, 360 - err)
    colour = torch.from_numpy(meta["colour"].astype(np.float32))
    return {
        "n": int(len(images)),
        "body_accuracy": float((out["body"].argmax(1) == body).float().mean()),
        "yaw_bin_accuracy": float((out["yaw"].argmax(1) == (yaw / (360.0 / bins)).long() % bins).float().mean()),
        "median_yaw_error_deg": float(err.median()),
        "colour_mae": float(((out["colour"] + 1) / 2 - colour).abs().mean()),
        "elevation_mae_deg": float((out["elevation"] * 30 - torch.from_numpy(meta["elevation"])).abs().mean()),
    }


def train(out: Path | None = None, scale: float = 1.0, threads: int = 1, seed: int = 0) -> dict:
    """Train the toycars feature network on cached source renders (``toycars.source_dataset``).

    The first ``n_train`` source images train it; the next ``n_heldout`` measure its proxy tasks.
    A fixed number of steps (``epochs`` over ``n_train``), so the run is the same on any machine
    (about 5 CPU minutes).
    ``scale < 1`` is a smoke test (written under the cache unless ``out`` is given).
    """
    torch.set_num_threads(threads)
    seed_everything(seed)
    cfg = dict(CONFIG)
    n_train = max(64, int(cfg["n_train"] * scale))
    n_held = max(32, int(cfg["n_heldout"] * scale))
    t0 = time.time()
    images, meta = toycars.source_dataset(n_train + n_held, seed=cfg["source_seed"], return_meta=True)
    train_x, held_x = images[:n_train], images[n_train:n_train + n_held]
    held_meta = {k: v[n_train:n_train + n_held] for k, v in meta.items()}
    body = torch.from_numpy(meta["body"][:n_train].astype(np.int64))
    yaw = torch.from_numpy(meta["yaw"][:n_train].astype(np.float32))
    colour = torch.from_numpy(meta["colour"][:n_train].astype(np.float32))
    elevation = torch.from_numpy(meta["elevation"][:n_train].astype(np.float32))

    net = FeatureNet(cfg["widths"], n_body=len(toycars.BODY_TYPES))
    gen = torch.Generator().manual_seed(seed)
    batches = EpochSampler(n_train, cfg["batch_size"], gen)
    steps = batches.steps(cfg["epochs"])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])

    def loss_fn(step: int) -> torch.Tensor:
        idx = batches(step)
        x = torch.from_numpy(np.ascontiguousarray(train_x[idx.numpy()])).permute(0, 3, 1, 2).float() / 127.5 - 1
        y = yaw[idx]
        if float(torch.rand((), generator=gen)) < 0.5:
            x, y = _flip(x, y)
        x = _augment(x, gen)
        return _losses(net.heads(x), body[idx], y, colour[idx], elevation[idx])[0]

    net.train()
    log = fit(loss_fn, opt, steps, lr=warmup_cosine(cfg["lr"], steps),
              desc=f"perceptual: {sum(p.numel() for p in net.parameters())} params, {n_train} source renders")
    net.eval()
    metrics = evaluate(net, held_x, held_meta)
    command = "python -m dapper perceptual train" + ("" if scale == 1.0 else f" --scale {scale:g}")
    config = {
        "name": "perceptual_toycars",
        "world": toycars.WORLD_TAG,
        "about": ("LPIPS-style perceptual distance for projection: channel-unit-normalised features of 4 "
                  "stages, every channel weighted 1, stages averaged (distances in [0, 4], typically 0.1-1 like "
                  "LPIPS). Trained on toycars SOURCE renders only (no target classes, no pickups, not the "
                  "oracles' data) with proxy tasks from the renderer's ground truth."),
        "architecture": {"class": "dapper.inversion.perceptual.FeatureNet", "widths": list(cfg["widths"]),
                         "n_body": len(toycars.BODY_TYPES), "yaw_bins": YAW_BINS,
                         "params": sum(p.numel() for p in net.parameters())},
        "input": "float NCHW in [-1, 1], RGB; resized to 64x64",
        "training": {"command": command, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
                     "n_train_images": n_train, "data": f"toycars.source_dataset(seed={cfg['source_seed']}) "
                     f"images [0, {n_train}); held-out [{n_train}, {n_train + n_held})",
                     **log.as_dict(), "torch_threads": threads, "seed": seed,
                     "render_version": toycars.RENDER_VERSION,
                     "torch": torch.__version__},
        "heldout_proxy_tasks": metrics,
    }
    if out is None:
        out = DEFAULT_CHECKPOINT if scale == 1.0 else cache_dir("perceptual") / "perceptual_smoke.safetensors"
    out = Path(out)
    save_model(net, config, out)
    print(json.dumps(metrics, indent=1))
    print(f"[perceptual] saved {out} in {(time.time() - t0) / 60:.1f} min", flush=True)
    return config
