"""Evaluation oracles for the toycars world: identity and pose, used only to *measure* the study.

Two small CNNs (~0.5 M parameters each) trained on abundant full-diversity ``toycars`` renders
drawn from random streams of their own (independent of the source set and of the target pools):

* the identity oracle classifies the ten target classes (``toycars.TARGET_CLASSES``);
* the pose oracle regresses ``(sin yaw, cos yaw, elevation / 30)`` for any vehicle (all eight
  body types, pickups included, plus the target classes).

Both take NCHW float images in [-1, 1] (the generator's convention), 64 x 64 (other sizes are
resized), and are shipped in ``checkpoints/oracle_{identity,pose}.safetensors`` with a JSON
config that records the architecture, the command that trained them and their held-out scores.

    python -m dapper oracles train identity     # ~10 min on one CPU core
    python -m dapper oracles train pose
    python -m dapper oracles eval identity|pose  # re-measure a shipped checkpoint

Never used inside the method: the study's own pose annotator and classifiers are separate.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dapper.data import toycars
from dapper.data.toycars import fit_distance, sample_spec
from dapper.fitting import EpochSampler, fit, one_cycle
from dapper.modelfile import read_model, save_model
from dapper.utils import cache_dir, cached_arrays, repo_root, seed_everything

INPUT_SIZE = 64
CHECKPOINT_DIR = repo_root() / "checkpoints"
# Seeds of the oracles' own render streams; nothing else in the study draws from them.
TRAIN_SEED, HELDOUT_SEED = 9001, 9002
ELEVATION_SCALE = 30.0


# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------


class ConvBlock(nn.Sequential):
    """3x3 convolution, batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class OracleNet(nn.Module):
    """Small VGG-like CNN: [N, 3, 64, 64] in [-1, 1] -> [N, out_features].

    Strided stem to 32 px, then conv pairs with max-pooling down to 4 px, average pooling to a
    ``grid`` x ``grid`` map (1: global; 2 keeps where things are, which pose needs) and a linear
    head, with one hidden layer when ``hidden > 0``. ``n_aux`` extra outputs (the pose oracle's
    yaw-bin logits, a training aid) come only from :meth:`forward_with_aux`. Inputs of another
    size are resized to 64 px (bilinear, antialiased).
    """

    def __init__(self, out_features: int, width: int = 32, dropout: float = 0.2, grid: int = 1,
                 hidden: int = 0, n_aux: int = 0):
        super().__init__()
        w = width
        self.out_features = out_features
        self.features = nn.Sequential(
            ConvBlock(3, 3 * w // 4, stride=2),
            ConvBlock(3 * w // 4, w),
            nn.MaxPool2d(2),
            ConvBlock(w, 2 * w),
            ConvBlock(2 * w, 2 * w),
            nn.MaxPool2d(2),
            ConvBlock(2 * w, 4 * w),
            ConvBlock(4 * w, 4 * w),
            nn.MaxPool2d(2),
            ConvBlock(4 * w, 6 * w),
            nn.AdaptiveAvgPool2d(grid),
            nn.Flatten(),
        )
        n_feat = 6 * w * grid * grid
        if hidden:
            self.trunk = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_feat, hidden), nn.ReLU(inplace=True))
            self.head = nn.Linear(hidden, out_features)
            self.aux = nn.Linear(hidden, n_aux) if n_aux else None
        else:
            self.trunk = None
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(n_feat, out_features))
            self.aux = None

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected [N, 3, H, W], got {tuple(x.shape)}")
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
        h = self.features(x)
        if self.trunk is not None:
            h = self.trunk(h)
        return self.head(h), (self.aux(h) if self.aux is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]


# ---------------------------------------------------------------------------------------------
# Inputs and outputs
# ---------------------------------------------------------------------------------------------


def to_model_input(images, device=None) -> torch.Tensor:
    """uint8 [N, H, W, 3] (numpy or torch) -> float [N, 3, H, W] in [-1, 1]; float NCHW tensors
    are assumed to be in [-1, 1] already and passed through."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if images.dtype == torch.uint8:
        images = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return images.to(device) if device is not None else images


def yaw_from_output(out: torch.Tensor) -> torch.Tensor:
    """Pose-oracle output [N, >=2] (sin, cos, ...) -> yaw degrees in [0, 360)."""
    return torch.rad2deg(torch.atan2(out[:, 0], out[:, 1])) % 360.0


def yaw_error(pred_deg, true_deg) -> np.ndarray:
    """Absolute circular difference in degrees, in [0, 180]."""
    d = (np.asarray(pred_deg, dtype=np.float64) - np.asarray(true_deg, dtype=np.float64)) % 360.0
    return np.minimum(d, 360.0 - d)


@torch.no_grad()
def _batched(model: nn.Module, images, batch_size: int) -> torch.Tensor:
    device = next(model.parameters()).device
    outs = []
    for a in range(0, len(images), batch_size):
        outs.append(model(to_model_input(images[a:a + batch_size], device)).float().cpu())
    return torch.cat(outs) if outs else torch.zeros(0, model.out_features)


def predict_yaw(images, model: nn.Module | None = None, batch_size: int = 256) -> np.ndarray:
    """Yaw in degrees [0, 360) for uint8 NHWC images or NCHW float in [-1, 1]: float64 [N]."""
    model = model if model is not None else load_pose_oracle()
    return yaw_from_output(_batched(model, images, batch_size)).double().numpy()


def predict_pose(images, model: nn.Module | None = None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(yaw degrees [N], elevation degrees [N])."""
    model = model if model is not None else load_pose_oracle()
    out = _batched(model, images, batch_size)
    return yaw_from_output(out).double().numpy(), (out[:, 2] * ELEVATION_SCALE).double().numpy()


def predict_identity(images, model: nn.Module | None = None, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(predicted label int64 [N], class probabilities float32 [N, 10])."""
    model = model if model is not None else load_identity_oracle()
    probs = _batched(model, images, batch_size).softmax(1)
    return probs.argmax(1).numpy(), probs.numpy()


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def checkpoint_path(kind: str, folder: Path | None = None) -> Path:
    return Path(folder or CHECKPOINT_DIR) / f"oracle_{kind}.safetensors"


def save_oracle(model: OracleNet, config: dict, path: Path) -> None:
    save_model(model, config, path)


def _load(kind: str, device="cpu", path=None) -> OracleNet:
    path = Path(path) if path is not None else checkpoint_path(kind)
    command = f"python -m dapper oracles train {kind}"
    state, config = read_model(path, f"{kind} oracle", command)
    toycars.check_world(config, path, command)
    arch = config["architecture"]
    model = OracleNet(arch["out_features"], arch["width"], arch.get("dropout", 0.2), arch.get("grid", 1),
                      arch.get("hidden", 0), arch.get("n_aux", 0))
    model.load_state_dict(state)
    model.config = config
    return model.to(device).eval().requires_grad_(False)


def load_identity_oracle(device="cpu", path=None) -> OracleNet:
    """Eval-mode identity oracle: NCHW [-1, 1] -> logits [N, 10] over ``TARGET_CLASSES``."""
    return _load("identity", device, path)


def load_pose_oracle(device="cpu", path=None) -> OracleNet:
    """Eval-mode pose oracle: NCHW [-1, 1] -> [N, 3] = (sin yaw, cos yaw, elevation / 30 deg);
    use :func:`predict_yaw` / :func:`yaw_from_output` for degrees."""
    return _load("pose", device, path)


# ---------------------------------------------------------------------------------------------
# Training data: the oracles' own render streams
# ---------------------------------------------------------------------------------------------


def identity_items(n_per_class: int, seed: int) -> list:
    return [toycars.target_item(c, i, seed, False, stream=2)
            for i in range(n_per_class) for c in range(len(toycars.TARGET_CLASSES))]


def pose_items(n: int, seed: int) -> list:
    """Every body type (pickups too) from the broad prior; one in four is a target class."""
    items = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 0x905E])
        if rng.random() < 0.25:
            it = toycars.target_item(int(rng.integers(len(toycars.TARGET_CLASSES))), i, seed, False, stream=4)
        else:
            spec = sample_spec(rng)
            yaw, elevation = float(rng.uniform(0, 360)), float(3 + 27 * rng.beta(1.6, 2.4))
            it = {"spec": spec, "yaw": yaw, "elevation": elevation,
                  "distance": fit_distance(spec, float(rng.uniform(0.7, 0.93)), yaw, elevation),
                  "background_seed": int(rng.integers(2**31 - 1)), "label": -1}
        items.append(it)
    return items


def _render_arrays(items: list, cache_name: str | None, progress: bool = True):
    """Render items -> (uint8 [N, 64, 64, 3], labels, yaw, elevation), cached in the study cache."""
    def render() -> dict:
        out = {"images": np.empty((len(items), INPUT_SIZE, INPUT_SIZE, 3), np.uint8),
               "labels": np.empty(len(items), np.int64), "yaw": np.empty(len(items), np.float32),
               "elevation": np.empty(len(items), np.float32)}
        t0 = time.time()
        chunk = 500
        for a in range(0, len(items), chunk):
            rs = toycars.render_items(items[a:a + chunk], INPUT_SIZE, workers=1)
            for j, r in enumerate(rs):
                out["images"][a + j] = r.image
                out["labels"][a + j] = r.meta["label"]
                out["yaw"][a + j] = r.meta["yaw"]
                out["elevation"][a + j] = r.meta["elevation"]
            if progress:
                print(f"  rendered {min(a + chunk, len(items))}/{len(items)} ({time.time() - t0:.0f} s)",
                      flush=True)
        return out

    if cache_name:
        # Keyed by renderer version and by the items themselves, so changed class definitions or
        # priors never reuse stale renders.
        digest = hashlib.sha1(repr([(it["spec"], it["yaw"], it["elevation"], it["distance"], it["background_seed"])
                                    for it in items]).encode()).hexdigest()[:10]
        d = cached_arrays(cache_dir("oracles") / f"{cache_name}-v{toycars.RENDER_VERSION}-{digest}.npz", render)
    else:
        d = render()
    return d["images"], d["labels"], d["yaw"], d["elevation"]


def heldout_identity_views(n_per_class: int = 200):
    """The identity oracle's held-out full-diversity target views (its own render stream, never
    trained on): (uint8 [N, 64, 64, 3], labels [N], yaw [N], elevation [N]); rendered once, cached."""
    return _render_arrays(identity_items(n_per_class, HELDOUT_SEED), f"identity-heldout-{n_per_class}")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def augment(x: torch.Tensor, gen: torch.Generator, resample_min: int = 0, resample_p: float = 0.0) -> torch.Tensor:
    """Shift, mild blur, contrast/brightness and noise, so the oracles also read the slightly
    soft, noisy images a generator makes. With ``resample_min`` > 0, a share ``resample_p`` of the
    images is shrunk to a random size in [resample_min, 64) px and enlarged back (a generator's
    images carry less detail than a render). x: [N, 3, 64, 64] in [-1, 1]."""
    n = x.shape[0]
    if resample_min and resample_p > 0:  # per image, so every batch (and batch norm) sees both kinds
        size = int(torch.randint(resample_min, INPUT_SIZE, (), generator=gen))
        small = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        soft = F.interpolate(small, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        pick = torch.rand(n, 1, 1, 1, generator=gen) < resample_p
        x = torch.where(pick, soft, x)
    pad = 3
    xp = F.pad(x, (pad,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    x = xp[:, :, dy:dy + INPUT_SIZE, dx:dx + INPUT_SIZE]
    sigma = float(torch.rand((), generator=gen)) * 0.7  # more would erase the lamp shapes
    if sigma > 0.35:
        k = torch.arange(-2, 3, dtype=x.dtype)
        g = torch.exp(-(k**2) / (2 * sigma**2))
        g = g / g.sum()
        x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), g.view(1, 1, 1, 5).repeat(3, 1, 1, 1), groups=3)
        x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), g.view(1, 1, 5, 1).repeat(3, 1, 1, 1), groups=3)
    contrast = 1 + 0.15 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    bright = 0.1 * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)
    x = x * contrast + bright
    x = x + 0.04 * torch.rand(n, 1, 1, 1, generator=gen) * torch.randn(x.shape, generator=gen)
    return x.clamp(-1, 1)


CONFIGS = {
    # resample_min: also trained on views resampled to 32-63 px, the detail the study asks it to
    # read (the calibration's half resolution; a generator's images are softer than renders)
    "identity": dict(n_train_per_class=5000, n_heldout_per_class=200, epochs=6, batch_size=64, lr=2e-3,
                     weight_decay=5e-4, width=32, label_smoothing=0.05, resample_min=32, resample_p=0.5),
    "pose": dict(n_train=30000, n_heldout=2000, n_heldout_target_per_class=100, epochs=4, batch_size=64,
                 lr=2e-3, weight_decay=5e-4, width=32, grid=2, hidden=192, n_aux=36),
}


def train(kind: str, out_dir: Path | None = None, scale: float = 1.0, threads: int = 1, seed: int = 0) -> dict:
    """Render the oracle's data, train it on the CPU, measure it on held-out renders, save it.

    ``scale`` shrinks data and epochs for a smoke test (the shipped checkpoints use 1.0).
    """
    if kind not in CONFIGS:
        raise ValueError(f"unknown oracle {kind!r}; choose from {sorted(CONFIGS)}")
    torch.set_num_threads(threads)  # the GAN training owns the other core
    seed_everything(seed)
    cfg = dict(CONFIGS[kind])
    t_start = time.time()
    tag = "" if scale == 1.0 else f"-x{scale:g}"
    print(f"[{kind}] rendering training data", flush=True)
    if kind == "identity":
        n_pc = max(2, int(cfg["n_train_per_class"] * scale))
        train_data = _render_arrays(identity_items(n_pc, TRAIN_SEED), f"identity-train-{n_pc}")
        n_out = len(toycars.TARGET_CLASSES)
    else:
        n = max(20, int(cfg["n_train"] * scale))
        train_data = _render_arrays(pose_items(n, TRAIN_SEED), f"pose-train-{n}")
        n_out = 3
    t_render = time.time() - t_start
    arch = {"out_features": n_out, "width": cfg["width"], "dropout": 0.2, "grid": cfg.get("grid", 1),
            "hidden": cfg.get("hidden", 0), "n_aux": cfg.get("n_aux", 0)}
    model = OracleNet(**arch)
    images, labels, yaw, elevation = train_data
    n = len(images)
    epochs = max(1, round(cfg["epochs"] * min(1.0, scale * 10)))
    gen = torch.Generator().manual_seed(seed)
    batches = EpochSampler(n, cfg["batch_size"], gen)
    steps = batches.steps(epochs)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    yaw_rad = torch.from_numpy(np.deg2rad(yaw.astype(np.float64))).float()
    target_pose = torch.stack([torch.sin(yaw_rad), torch.cos(yaw_rad),
                               torch.from_numpy(elevation).float() / ELEVATION_SCALE], 1)
    labels_t = torch.from_numpy(labels)
    yaw_t = torch.from_numpy(yaw.astype(np.float32))

    def loss_fn(step: int) -> torch.Tensor:
        idx = batches(step)
        x = augment(to_model_input(images[idx.numpy()]), gen, cfg.get("resample_min", 0), cfg.get("resample_p", 0.0))
        out, aux = model.forward_with_aux(x)
        if kind == "identity":
            return F.cross_entropy(out, labels_t[idx], label_smoothing=cfg["label_smoothing"])
        t = target_pose[idx]
        loss = F.mse_loss(out[:, :2], t[:, :2]) + 0.25 * F.mse_loss(out[:, 2], t[:, 2])
        if aux is not None:  # yaw bins: a classification signal that copes with front/back doubt
            bins = (yaw_t[idx] / (360.0 / aux.shape[1])).long() % aux.shape[1]
            loss = loss + 0.1 * F.cross_entropy(aux, bins)
        return loss

    model.train()
    log = fit(loss_fn, opt, steps, scheduler=one_cycle(opt, cfg["lr"], steps),
              desc=f"oracle {kind}: {sum(p.numel() for p in model.parameters())} params, {n} images, {epochs} epochs")
    model.eval()
    metrics = evaluate(kind, model, scale=scale)
    command = f"python -m dapper oracles train {kind}" + ("" if scale == 1.0 else f" --scale {scale:g}")
    config = {
        "name": f"oracle_{kind}",
        "kind": kind,
        "world": toycars.WORLD_TAG,
        "architecture": {"class": "dapper.judges.oracles.OracleNet", **arch,
                         "params": sum(p.numel() for p in model.parameters())},
        "input": "float NCHW in [-1, 1], RGB, 64x64 (other sizes are resized)",
        "output": ("logits over classes" if kind == "identity" else
                   "(sin yaw, cos yaw, elevation / 30 deg); yaw convention of dapper.data.toycars"),
        "classes": list(toycars.TARGET_CLASSES) if kind == "identity" else None,
        "training": {"command": command,
                     **cfg, "epochs_run": epochs, "n_train_images": int(n), "train_seed_stream": TRAIN_SEED,
                     "torch_threads": threads, "seed": seed, "render_seconds": round(t_render),
                     "render_version": toycars.RENDER_VERSION, **log.as_dict(),
                     "torch": torch.__version__},
        "heldout": metrics,
    }
    if out_dir is None and scale != 1.0:  # smoke runs never overwrite the shipped checkpoints

        out_dir = cache_dir("oracles", f"smoke{tag}")
    path = checkpoint_path(kind, out_dir)
    save_oracle(model, config, path)
    print(json.dumps(metrics, indent=1))
    print(f"[{kind}] saved {path} in {(time.time() - t_start) / 60:.1f} min", flush=True)
    return config


def evaluate(kind: str, model: nn.Module, scale: float = 1.0) -> dict:
    """Scores on the oracle's held-out render stream (never seen in training)."""
    cfg = CONFIGS[kind]
    n_classes = len(toycars.TARGET_CLASSES)
    if kind == "identity":
        n_pc = max(2, int(cfg["n_heldout_per_class"] * min(1.0, scale * 10)))
        images, labels, _, _ = heldout_identity_views(n_pc)
        pred, _ = predict_identity(images, model)
        per_class = {toycars.TARGET_CLASSES[c]: float((pred[labels == c] == c).mean()) for c in range(n_classes)}
        pair_conf = {}
        for a, b in toycars.PAIRS:
            m = (labels == a) | (labels == b)
            pair_conf[f"{a}-{b}"] = float(((pred[m] != labels[m]) & ((pred[m] == a) | (pred[m] == b))).mean())
        return {"n": int(len(labels)), "accuracy": float((pred == labels).mean()), "per_class": per_class,
                "within_pair_confusion": pair_conf,
                "data": f"identity_items({n_pc} per class, seed={HELDOUT_SEED}), full diversity"}
    n = max(20, int(cfg["n_heldout"] * min(1.0, scale * 10)))
    images, _, yaw, elev = _render_arrays(pose_items(n, HELDOUT_SEED), f"pose-heldout-{n}")
    pyaw, pelev = predict_pose(images, model)
    err = yaw_error(pyaw, yaw)
    n_pc = max(2, int(cfg["n_heldout_target_per_class"] * min(1.0, scale * 10)))
    t_images, t_labels, t_yaw, _ = heldout_identity_views(n_pc)
    t_err = yaw_error(predict_yaw(t_images, model), t_yaw)
    return {
        "n": int(n), "median_yaw_error_deg": float(np.median(err)), "mean_yaw_error_deg": float(err.mean()),
        "p90_yaw_error_deg": float(np.percentile(err, 90)), "frac_error_over_90deg": float((err > 90).mean()),
        "median_elevation_error_deg": float(np.median(np.abs(pelev - elev))),
        "target_classes": {
            "n": int(len(t_yaw)), "median_yaw_error_deg": float(np.median(t_err)),
            "mean_yaw_error_deg": float(t_err.mean()), "p90_yaw_error_deg": float(np.percentile(t_err, 90)),
            "frac_error_over_90deg": float((t_err > 90).mean()),
            "per_class_median_deg": {toycars.TARGET_CLASSES[c]: float(np.median(t_err[t_labels == c]))
                                     for c in range(n_classes)},
        },
        "data": f"pose_items({n}, seed={HELDOUT_SEED}) and identity_items({n_pc} per class, seed={HELDOUT_SEED})",
    }


def evaluate_checkpoint(kind: str, folder: Path | None = None, scale: float = 1.0) -> dict:
    """:func:`evaluate` of the stored ``kind`` oracle (in ``folder``, default ``checkpoints/``), on the CPU."""
    return evaluate(kind, _load(kind, "cpu", checkpoint_path(kind, folder)), scale)
