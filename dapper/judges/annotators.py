"""The method's own labelling models: a pose annotator and a vehicle detector.

The paper keeps only generated images that a vehicle detector accepts and labels their pose with
an estimator trained on *outside* labelled data; a linear model from W to that pose then gives the
pose direction (:mod:`dapper.directions`). In the embedded world both models are trained here on
labelled ``toycars`` renders from random streams of their own (every body type, pickups included,
no target classes); they are separate from the evaluation oracles (:mod:`dapper.judges.oracles`), with
another architecture, other seeds and other data, and are used *inside* the method only.

Small interface, so that real mode can put any estimator with local weights behind it:

* ``PoseAnnotator.predict(images) -> yaw_deg [N]`` (and ``predict_pose`` -> (yaw, elevation));
* ``VehicleDetector.predict(images) -> (score [N] in [0, 1], box [N, 4])``, box as
  ``(x0, y0, x1, y1)`` in pixels of the input image.

``images``: float NCHW in [-1, 1] (the generator's output) or uint8 NHWC. Shipped checkpoints:
``checkpoints/annotator_{pose,detector}.safetensors`` + ``.json`` (architecture, the command that
trained them, held-out accuracy)::

    python -m dapper annotators train pose       # <= 10 min on one CPU core
    python -m dapper annotators train detector
    python -m dapper annotators eval pose|detector

Yaw follows :mod:`dapper.data.toycars`: 0 = front view, 90 = right side (nose to the image's
right), 180 = rear, 270 = left side.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dapper.data import toycars
from dapper.data.toycars import fit_distance, sample_spec
from dapper.fitting import fit, one_cycle
from dapper.modelfile import read_model, save_model
from dapper.utils import cache_dir, cached_arrays, repo_root, seed_everything

__all__ = ["PoseAnnotator", "VehicleDetector", "AnnotatorNet", "load_pose_annotator", "load_vehicle_detector",
           "make_negatives", "NEGATIVE_KINDS", "train", "evaluate", "evaluate_checkpoint"]

INPUT_SIZE = 64
CHECKPOINT_DIR = repo_root() / "checkpoints"
# Seeds of the annotators' own render streams (the oracles use 9001/9002, the source set 0).
TRAIN_SEED, HELDOUT_SEED = 4711, 4712
ELEVATION_SCALE = 30.0
N_YAW_BINS = 24


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a 1x1 strided shortcut; halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.skip = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, 2, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.bn1(self.conv1(x)))
        return F.silu(self.bn2(self.conv2(h)) + self.skip(x))


class AnnotatorNet(nn.Module):
    """Small residual CNN: [N, 3, 64, 64] in [-1, 1] -> [N, out_features].

    Stem to 32 px, three residual blocks down to 4 px, then the whole 4 x 4 map (where things are
    matters for pose and boxes) through one hidden layer. Other input sizes are resized to 64 px.
    """

    def __init__(self, out_features: int, widths=(24, 48, 96, 128), hidden: int = 128, dropout: float = 0.1):
        super().__init__()
        self.out_features = out_features
        w0, w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, 2, 1, bias=False), nn.BatchNorm2d(w0), nn.SiLU())
        self.blocks = nn.Sequential(ResidualBlock(w0, w1), ResidualBlock(w1, w2), ResidualBlock(w2, w3))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(w3 * 16, hidden), nn.SiLU(),
                                  nn.Linear(hidden, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected [N, 3, H, W], got {tuple(x.shape)}")
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
        return self.head(self.blocks(self.stem(x)))


# Output layouts. Pose: sin yaw, cos yaw, elevation / 30, then yaw-bin logits (a training aid
# that copes with front/rear doubt better than the regression alone). Detector: presence logit
# and the box (x0, y0, x1, y1) / 64.
POSE_OUTPUTS = 3 + N_YAW_BINS
DETECTOR_OUTPUTS = 5


def _as_input(images, device) -> torch.Tensor:
    """uint8 NHWC (numpy or torch) or float NCHW in [-1, 1] -> float NCHW on ``device``."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if images.dtype == torch.uint8:
        images = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return images.to(device=device, dtype=torch.float32)


@torch.no_grad()
def _run(model: nn.Module, images, batch_size: int = 256) -> torch.Tensor:
    device = next(model.parameters()).device
    outs = [model(_as_input(images[a:a + batch_size], device)).float().cpu() for a in range(0, len(images), batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0, model.out_features)


class PoseAnnotator:
    """Yaw (and elevation) of the vehicle in each image.

    ``predict(images) -> float64 [N]`` yaw in degrees [0, 360); images float NCHW in [-1, 1] or
    uint8 NHWC, any square size (resized to 64 px). Wrap any other estimator by subclassing and
    overriding :meth:`predict_pose`.
    """

    def __init__(self, model: nn.Module | None = None, config: dict | None = None):
        self.model = model
        self.config = config or {}

    def predict_pose(self, images) -> tuple[np.ndarray, np.ndarray]:
        """(yaw degrees [N] in [0, 360), elevation degrees [N])."""
        out = _run(self.model, images)
        yaw = torch.rad2deg(torch.atan2(out[:, 0], out[:, 1])) % 360.0
        return yaw.double().numpy(), (out[:, 2] * ELEVATION_SCALE).double().numpy()

    def predict(self, images) -> np.ndarray:
        return self.predict_pose(images)[0]

    __call__ = predict


class VehicleDetector:
    """Is there one whole vehicle in the image, and where.

    ``predict(images) -> (score float64 [N] in [0, 1], box float64 [N, 4])`` with the box as
    ``(x0, y0, x1, y1)`` in pixels of the input size. ``accepts(images, threshold)`` -> bool [N].
    """

    def __init__(self, model: nn.Module | None = None, config: dict | None = None, threshold: float = 0.5):
        self.model = model
        self.config = config or {}
        self.threshold = threshold

    def predict(self, images) -> tuple[np.ndarray, np.ndarray]:
        out = _run(self.model, images)
        uint8 = images.dtype in (np.uint8, torch.uint8)
        size = images.shape[2] if uint8 else images.shape[-1]  # NHWC uint8, NCHW float
        score = torch.sigmoid(out[:, 0]).double().numpy()
        box = (out[:, 1:5].clamp(0, 1) * size).double().numpy()
        return score, box

    def accepts(self, images, threshold: float | None = None) -> np.ndarray:
        return self.predict(images)[0] >= (self.threshold if threshold is None else threshold)

    __call__ = predict


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def checkpoint_path(kind: str, folder: Path | None = None) -> Path:
    return Path(folder or CHECKPOINT_DIR) / f"annotator_{kind}.safetensors"


def _load_net(kind: str, path=None, device="cpu") -> tuple[AnnotatorNet, dict]:
    path = Path(path) if path is not None else checkpoint_path(kind)
    command = f"python -m dapper annotators train {kind}"
    state, config = read_model(path, f"{kind} annotator", command)
    toycars.check_world(config, path, command)
    arch = config["architecture"]
    model = AnnotatorNet(arch["out_features"], tuple(arch["widths"]), arch["hidden"], arch.get("dropout", 0.1))
    model.load_state_dict(state)
    return model.to(device).eval().requires_grad_(False), config


def load_pose_annotator(path=None, device="cpu") -> PoseAnnotator:
    """The shipped pose annotator (``checkpoints/annotator_pose``) or one at ``path``."""
    return PoseAnnotator(*_load_net("pose", path, device))


def load_vehicle_detector(path=None, device="cpu", threshold: float = 0.5) -> VehicleDetector:
    """The shipped vehicle detector (``checkpoints/annotator_detector``) or one at ``path``."""
    return VehicleDetector(*_load_net("detector", path, device), threshold=threshold)


# ---------------------------------------------------------------------------------------------
# Training data: labelled renders (the "outside" data) and non-vehicle negatives
# ---------------------------------------------------------------------------------------------


def annotator_items(n: int, seed: int) -> list:
    """Random vehicles of every body type from a broad prior (no target classes)."""
    items = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 0xA77])
        spec = sample_spec(rng)
        yaw, elevation = float(rng.uniform(0, 360)), float(2 + 30 * rng.beta(1.5, 2.2))
        items.append({"spec": spec, "yaw": yaw, "elevation": elevation,
                      "distance": fit_distance(spec, float(rng.uniform(0.66, 0.95)), yaw, elevation),
                      "background_seed": int(rng.integers(2**31 - 1)), "label": -1})
    return items


def _render_set(n: int, seed: int, n_background: int, progress: bool = True) -> dict:
    """Render ``n`` labelled vehicles and ``n_background`` empty scenes (each cached on its own in
    the study cache, keyed by renderer version and the items themselves)."""
    items = annotator_items(n, seed)
    digest = hashlib.sha1(repr([(it["spec"], it["yaw"], it["elevation"], it["distance"], it["background_seed"])
                                for it in items]).encode()).hexdigest()[:10]
    path = cache_dir("annotators") / f"vehicles-{seed}-{n}-v{toycars.RENDER_VERSION}-{digest}.npz"

    def render() -> dict:
        t0 = time.time()
        images = np.empty((n, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
        yaw, elev = np.empty(n, np.float32), np.empty(n, np.float32)
        boxes = np.empty((n, 4), np.float32)
        for a in range(0, n, 500):
            for j, r in enumerate(toycars.render_items(items[a:a + 500], INPUT_SIZE, workers=1)):
                images[a + j], boxes[a + j] = r.image, r.bbox
                yaw[a + j], elev[a + j] = r.meta["yaw"], r.meta["elevation"]
            if progress:
                print(f"  rendered {min(a + 500, n)}/{n} vehicles ({time.time() - t0:.0f} s)", flush=True)
        return {"images": images, "yaw": yaw, "elevation": elev, "boxes": boxes}

    def backgrounds() -> dict:
        rng = np.random.default_rng([seed, 0xB6])
        return {"backgrounds": np.stack([toycars.render_background(int(rng.integers(2**31 - 1)),
                                                                   float(2 + 30 * rng.beta(1.5, 2.2)))
                                         for _ in range(n_background)])}

    data = dict(cached_arrays(path, render))
    data["backgrounds"] = np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.uint8)
    if n_background:
        bg_path = cache_dir("annotators") / f"backgrounds-{seed}-{n_background}-v{toycars.RENDER_VERSION}.npz"
        data["backgrounds"] = cached_arrays(bg_path, backgrounds)["backgrounds"]
    return data


def make_negatives(positives: torch.Tensor, backgrounds: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Non-vehicle images of the kinds a generator's failures resemble, one per image of a batch
    of vehicles [N, 3, 64, 64], using empty scenes [M, 3, 64, 64] (float in [-1, 1]); the kind of
    each is drawn at random (see :data:`NEGATIVE_KINDS`)."""
    kinds = torch.randint(0, len(NEGATIVE_KINDS), (positives.shape[0],), generator=gen).tolist()
    return torch.stack([make_negative(positives, backgrounds, gen, k, i) for i, k in enumerate(kinds)])


NEGATIVE_KINDS = ("empty_scene", "shuffled_tiles", "blend", "blown_up_crop", "colour_noise")


def make_negative(batch: torch.Tensor, backgrounds: torch.Tensor, gen: torch.Generator, kind: int,
                  i: int) -> torch.Tensor:
    """One non-vehicle image [3, 64, 64] of kind ``NEGATIVE_KINDS[kind]`` made from ``batch[i]``:
    an empty scene; the vehicle cut in 4 x 4 tiles and shuffled; two vehicles blended (a ghost);
    a small piece of the vehicle blown up to fill the frame; smooth colour noise."""
    n = batch.shape[0]
    x = batch[i]
    if kind == 0:
        return backgrounds[int(torch.randint(len(backgrounds), (1,), generator=gen))]
    if kind == 1:
        tiles = x.unfold(1, 16, 16).unfold(2, 16, 16).reshape(3, 16, 16, 16)  # [3, tile, 16, 16]
        tiles = tiles[:, torch.randperm(16, generator=gen)].reshape(3, 4, 4, 16, 16)
        return tiles.permute(0, 1, 3, 2, 4).reshape(3, 64, 64)
    if kind == 2:
        other = batch[(i + 1 + int(torch.randint(max(n - 1, 1), (1,), generator=gen))) % n] if n > 1 else x.flip(2)
        a = float(torch.empty(()).uniform_(0.35, 0.65, generator=gen))
        return a * x + (1 - a) * torch.roll(other, int(torch.randint(-20, 21, (1,), generator=gen)), dims=2)
    if kind == 3:
        s = int(torch.randint(14, 26, (1,), generator=gen))
        y0, x0 = (int(v) for v in torch.randint(0, 64 - s, (2,), generator=gen))
        return F.interpolate(x[:, y0:y0 + s, x0:x0 + s].unsqueeze(0), size=(64, 64), mode="bilinear",
                             align_corners=False)[0]
    low = torch.randn(1, 3, 4, 4, generator=gen) * 0.6
    return F.interpolate(low, size=(64, 64), mode="bicubic", align_corners=False)[0].clamp(-1, 1)


def _augment(x: torch.Tensor, boxes: torch.Tensor | None, yaw: torch.Tensor | None, gen: torch.Generator):
    """Mirror (yaw -> 360 - yaw, boxes mirrored), shift by up to 4 px (boxes follow), softening,
    colour jitter and grain, so the annotators also read generated images. x: [N, 3, 64, 64]."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    if boxes is not None:
        boxes = boxes.clone()
        x0 = torch.where(flip, 64 - boxes[:, 2], boxes[:, 0])
        x1 = torch.where(flip, 64 - boxes[:, 0], boxes[:, 2])
        boxes[:, 0], boxes[:, 2] = x0, x1
    if yaw is not None:
        yaw = torch.where(flip, (360 - yaw) % 360, yaw)
    pad = 4
    dx, dy = (int(v) for v in torch.randint(-pad, pad + 1, (2,), generator=gen))
    x = F.pad(x, (pad,) * 4, mode="replicate")[:, :, pad - dy:pad - dy + 64, pad - dx:pad - dx + 64]
    if boxes is not None:
        boxes = boxes + torch.tensor([dx, dy, dx, dy], dtype=boxes.dtype)
        boxes = boxes.clamp(0, 64)
    if float(torch.rand((), generator=gen)) < 0.5:  # generator-like softness
        x = 0.5 * x + 0.5 * F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, 1)
    gain = 1 + 0.2 * (torch.rand(n, 3, 1, 1, generator=gen) - 0.5)
    bias = 0.16 * (torch.rand(n, 1, 1, 1, generator=gen) - 0.5)
    x = x * gain + bias + 0.05 * torch.rand(n, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    return x.clamp(-1, 1), boxes, yaw


# ---------------------------------------------------------------------------------------------
# Training and measurement
# ---------------------------------------------------------------------------------------------

CONFIGS = {
    "pose": dict(n_train=12000, n_heldout=1000, n_background=0, steps=2000, batch_size=64, lr=3e-3,
                 weight_decay=5e-4, widths=(16, 32, 64, 96), hidden=96, seed=11),
    "detector": dict(n_train=12000, n_heldout=1000, n_background=2000, steps=1500, batch_size=64, lr=3e-3,
                     weight_decay=5e-4, widths=(12, 24, 48, 80), hidden=64, seed=12),
}


def _to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train(kind: str, out_dir: Path | None = None, scale: float = 1.0, threads: int = 1) -> dict:
    """Render the data, train the annotator on the CPU, measure it on held-out renders, save it.

    ``scale`` shrinks data and steps for a smoke test (shipped checkpoints use 1.0 and never get
    overwritten by a scaled run).
    """
    if kind not in CONFIGS:
        raise ValueError(f"unknown annotator {kind!r}; choose from {sorted(CONFIGS)}")
    torch.set_num_threads(threads)
    cfg = dict(CONFIGS[kind])
    seed_everything(cfg["seed"])
    t_start = time.time()
    n = max(64, int(cfg["n_train"] * scale))
    n_bg = max(16, int(cfg["n_background"] * scale)) if cfg["n_background"] else 0
    print(f"[{kind}] rendering {n} vehicles, {n_bg} empty scenes", flush=True)
    data = _render_set(n, TRAIN_SEED, n_bg)
    t_render = time.time() - t_start
    images = _to_float(data["images"])
    backgrounds = _to_float(data["backgrounds"]) if n_bg else None
    yaw_all = torch.from_numpy(data["yaw"]).float()
    elev_all = torch.from_numpy(data["elevation"]).float()
    boxes_all = torch.from_numpy(data["boxes"]).float()
    out_features = POSE_OUTPUTS if kind == "pose" else DETECTOR_OUTPUTS
    arch = {"out_features": out_features, "widths": list(cfg["widths"]), "hidden": cfg["hidden"], "dropout": 0.1}
    model = AnnotatorNet(out_features, cfg["widths"], cfg["hidden"])
    steps = max(10, int(cfg["steps"] * scale))
    bs = cfg["batch_size"]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    n_params = sum(p.numel() for p in model.parameters())

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(0, n, (bs,), generator=gen)
        x, boxes, yaw = images[idx], boxes_all[idx], yaw_all[idx]
        if kind == "pose":
            x, _, yaw = _augment(x, None, yaw, gen)
            out = model(x)
            rad = torch.deg2rad(yaw)
            loss = F.mse_loss(out[:, 0], torch.sin(rad)) + F.mse_loss(out[:, 1], torch.cos(rad))
            loss = loss + 0.25 * F.mse_loss(out[:, 2], elev_all[idx] / ELEVATION_SCALE)
            bins = (yaw / (360.0 / N_YAW_BINS)).long() % N_YAW_BINS
            return loss + 0.1 * F.cross_entropy(out[:, 3:], bins)
        half = bs // 2
        neg = make_negatives(x[half:], backgrounds, gen)
        x = torch.cat([x[:half], neg])
        present = torch.cat([torch.ones(half), torch.zeros(bs - half)])
        x, boxes, _ = _augment(x, torch.cat([boxes[:half], torch.zeros(bs - half, 4)]), None, gen)
        out = model(x)
        loss = F.binary_cross_entropy_with_logits(out[:, 0], present)
        return loss + 4.0 * F.smooth_l1_loss(out[:half, 1:5], boxes[:half] / 64.0, beta=0.05)

    model.train()
    log = fit(loss_fn, opt, steps, scheduler=one_cycle(opt, cfg["lr"], steps),
              desc=f"annotator {kind}: {n_params} params, batches of {bs}")
    model.eval()
    metrics = evaluate(kind, model, scale)
    command = f"python -m dapper annotators train {kind}" + ("" if scale == 1.0 else f" --scale {scale:g}")
    config = {
        "name": f"annotator_{kind}",
        "world": toycars.WORLD_TAG,
        "kind": kind,
        "architecture": {"class": "dapper.judges.annotators.AnnotatorNet", **arch, "params": n_params},
        "input": "float NCHW in [-1, 1] (or uint8 NHWC), RGB, 64x64 (other sizes are resized)",
        "output": ("(sin yaw, cos yaw, elevation / 30 deg, 24 yaw-bin logits); yaw convention of dapper.data.toycars"
                   if kind == "pose" else "(presence logit, box x0, y0, x1, y1 / 64)"),
        "training": {"command": command, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
                     "n_train_images": int(n), "n_backgrounds": int(n_bg), **log.as_dict(),
                     "train_seed_stream": TRAIN_SEED, "torch_threads": threads, "render_seconds": round(t_render),
                     "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
                     "render_version": toycars.RENDER_VERSION,
                     "torch": torch.__version__,
                     "data": "annotator_items(): every body type incl. pickups, no target classes; own seeds"},
        "heldout": metrics,
    }
    if out_dir is None and scale != 1.0:
        out_dir = cache_dir("annotators", f"smoke-x{scale:g}")
    path = checkpoint_path(kind, out_dir)
    save_model(model, config, path)
    print(json.dumps(metrics, indent=1))
    print(f"[{kind}] saved {path} in {(time.time() - t_start) / 60:.1f} min", flush=True)
    return config


def _yaw_error(a, b) -> np.ndarray:
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) % 360.0
    return np.minimum(d, 360.0 - d)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ix * iy
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def evaluate(kind: str, model: nn.Module, scale: float = 1.0) -> dict:
    """Scores on the annotators' held-out render stream, and (pose) on target-class views."""
    cfg = CONFIGS[kind]
    n = max(64, int(cfg["n_heldout"] * min(1.0, scale * 10)))
    data = _render_set(n, HELDOUT_SEED, max(16, n // 2) if kind == "detector" else 0, progress=False)
    if kind == "pose":
        ann = PoseAnnotator(model)
        yaw, elev = ann.predict_pose(data["images"])
        err = _yaw_error(yaw, data["yaw"])
        tv = toycars.target_test_views(max(2, int(30 * min(1.0, scale * 10))), seed=HELDOUT_SEED)
        t_err = _yaw_error(ann.predict(tv.images), tv.yaw)
        return {"n": int(n), "median_yaw_error_deg": float(np.median(err)), "mean_yaw_error_deg": float(err.mean()),
                "p90_yaw_error_deg": float(np.percentile(err, 90)), "frac_error_over_90deg": float((err > 90).mean()),
                "median_elevation_error_deg": float(np.median(np.abs(elev - data["elevation"]))),
                "target_classes": {"n": int(len(tv)), "median_yaw_error_deg": float(np.median(t_err)),
                                   "mean_yaw_error_deg": float(t_err.mean()),
                                   "frac_error_over_90deg": float((t_err > 90).mean())},
                "data": f"annotator_items({n}, seed={HELDOUT_SEED}); target_test_views(seed={HELDOUT_SEED})"}
    det = VehicleDetector(model)
    pos = data["images"]
    score_pos, box = det.predict(pos)
    iou = _iou(box, data["boxes"].astype(np.float64))
    x = _to_float(pos)
    bgs = _to_float(data["backgrounds"])
    per_kind = {}
    for k, name in enumerate(NEGATIVE_KINDS):  # one kind at a time, so each has its own rejection rate
        gen = torch.Generator().manual_seed(HELDOUT_SEED + k)
        neg = torch.stack([make_negative(x, bgs, gen, k, i) for i in range(len(x))])
        per_kind[name] = float((det.predict(neg)[0] < 0.5).mean())
    return {"n_positive": int(n), "recall_at_0.5": float((score_pos >= 0.5).mean()),
            "box_iou_mean": float(iou.mean()), "box_iou_over_0.7": float((iou > 0.7).mean()),
            "negatives_rejected_at_0.5": per_kind,
            "data": f"annotator_items({n}, seed={HELDOUT_SEED}) and negatives made from them"}


def evaluate_checkpoint(kind: str, folder: Path | None = None, scale: float = 1.0) -> dict:
    """:func:`evaluate` of the stored ``kind`` model (in ``folder``, default ``checkpoints/``), on the CPU."""
    return evaluate(kind, _load_net(kind, checkpoint_path(kind, folder))[0], scale)
