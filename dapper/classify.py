"""The fine-grained classifier: a timm ResNeXt, pretrained elsewhere, fine-tuned once per run.

Two worlds, one code path (``timm.create_model`` by name, weights from a local file):

* embedded default: ``dapper_resnext_8x4d``, a small ResNeXt (timm's ``ResNet`` with grouped
  bottlenecks, cardinality 8, base width 4, one block per stage, 64 px input) registered in
  timm's model registry by this module. Its "ImageNet" is the toycars *source* set: it was
  pretrained on a proxy task read off the renderer's ground truth (body type, yaw bin, paint
  colour), never on the target classes and never by the evaluation oracles. Shipped as
  ``checkpoints/classifier_pretrained.safetensors`` with ``.json`` saying how it was made:
  ``python -m dapper classify pretrain`` (about 10 minutes on one CPU core).
* real mode: timm's ``resnext50_32x4d`` (the paper's; any timm model by name) with ImageNet
  weights from a local file (``weights="/path/resnext50_32x4d.safetensors"``) and timm's own data
  config for it.

Images enter as uint8 ``[N, H, W, 3]``; :func:`prepare_images` applies timm's eval transform
(resize/centre crop to the model's input size) once, keeping uint8 ``[N, 3, h, w]`` so the
affine augmentation (crops, mirror, RandAugment or TrivialAugment) can run on it; the model's mean/std
normalisation happens per batch.

    model = train_classifier(real_x, real_y, num_classes=10, settings=FineTuneSettings(), seed=0)
    acc = accuracy(model, test_x, test_y)
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
import torchvision.transforms.v2 as T
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config
from timm.models import register_model
from timm.models._builder import build_model_with_cfg
from timm.models._registry import generate_default_cfgs
from timm.models.resnet import Bottleneck, ResNet

from dapper.data import toycars
from dapper.data.toycars import PAINT_PALETTE, PAINT_WEIGHTS, SOURCE_BODY_TYPES, VehicleSpec
from dapper.fitting import EpochSampler, fit, one_cycle
from dapper.utils import atomic_save, seed_everything

__all__ = [
    "EMBEDDED_MODEL", "REAL_MODEL", "PRETRAINED_PATH", "FineTuneSettings", "register_embedded_model",
    "create_classifier", "data_config",
    "prepare_images", "normalise", "affine_transform", "describe_affine", "affine_augment",
    "autocast", "fine_tune", "train_classifier", "predict", "accuracy",
    "pretrain",
]

EMBEDDED_MODEL = "dapper_resnext_8x4d"
REAL_MODEL = "resnext50_32x4d"
PRETRAINED_PATH = Path(__file__).resolve().parent.parent / "checkpoints" / "classifier_pretrained.safetensors"

# Architecture of the embedded model: a ResNeXt in miniature (grouped 3x3 convolutions in
# bottlenecks), narrow enough to fine-tune hundreds of times on a CPU within the study's budget.
# The deep 3x3 stem keeps more of a 64 px picture than the 7x7 one made for 224 px photos.
EMBEDDED_ARCH = dict(layers=(1, 1, 1, 1), cardinality=8, base_width=4, channels=(32, 64, 128, 256),
                     stem_type="deep", stem_width=16)

# Proxy task of the embedded pretraining: three heads sliced from one linear layer.
PROXY_YAW_BINS = 8


# Part-level proxy labels (world v2): which lamps, grille, wheels, glasshouse and trim a source
# vehicle has. Like ImageNet's fine-grained classes, they make the features see detail; they are
# generic parts of every body, never the target classes.
PROXY_SPOKES = (0, 5, 6, 7, 10)
PROXY_DETAIL_HEADS = {"head_shape": 4, "tail_shape": 4, "grille_shape": 4, "spokes": len(PROXY_SPOKES),
                      "rim_colour": 4, "side_windows": 4, "blackout_pillars": 2, "side_stripe": 2,
                      "hood_stripes": 2, "dark_bumpers": 2, "black_roof": 2, "spoiler": 2}


def _proxy_heads() -> dict[str, int]:
    return {"body": len(SOURCE_BODY_TYPES), "yaw_bin": PROXY_YAW_BINS, "colour": len(PAINT_WEIGHTS),
            **PROXY_DETAIL_HEADS}


def register_embedded_model() -> None:
    """Put ``dapper_resnext_8x4d`` in timm's registry, with the shipped weights as its default."""
    if timm.models.is_model(EMBEDDED_MODEL):
        return
    n_proxy = sum(_proxy_heads().values())
    globals()["default_cfgs"] = generate_default_cfgs({
        f"{EMBEDDED_MODEL}.toycars_source": dict(
            file=str(PRETRAINED_PATH), num_classes=n_proxy, input_size=(3, 64, 64), pool_size=(2, 2),
            crop_pct=1.0, interpolation="bilinear", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
            first_conv="conv1.0", classifier="fc",
            license="same as dapper", notes=("pretrained on toycars source renders: body type, yaw bin, paint "
                                             "colour and vehicle parts (python -m dapper classify pretrain)"),
        ),
    })

    def dapper_resnext_8x4d(pretrained: bool = False, **kwargs):
        """Small ResNeXt (1-1-1-1 grouped bottlenecks, 8x4d) for 64 px toycars images."""
        args = dict(EMBEDDED_ARCH, block=Bottleneck)
        return build_model_with_cfg(ResNet, EMBEDDED_MODEL, pretrained, **dict(args, **kwargs))

    dapper_resnext_8x4d.__module__ = __name__
    register_model(dapper_resnext_8x4d)


def create_classifier(num_classes: int, model_name: str = EMBEDDED_MODEL, weights: str | Path | None = "default",
                      **kwargs) -> torch.nn.Module:
    """A timm model by name with pretrained weights from a local file and a new ``num_classes`` head.

    ``weights="default"``: the shipped file for the embedded model (error for other models: nothing
    is ever downloaded); a path: that file (``.safetensors`` or a ``.pth`` state dict); ``None``:
    random initialisation. The classifier layer is re-initialised when the class count differs.
    """
    register_embedded_model()
    if weights == "default":
        if model_name != EMBEDDED_MODEL:
            raise FileNotFoundError(
                f"{model_name} needs pretrained weights from a local file: pass weights='/path/to/"
                f"{model_name}.safetensors' (e.g. timm's ImageNet weights saved from the Hugging Face hub "
                "timm/<model> repository); nothing is downloaded at run time")
        weights = PRETRAINED_PATH
        config_path = PRETRAINED_PATH.with_suffix(".json")
        if config_path.is_file():
            toycars.check_world(json.loads(config_path.read_text()), PRETRAINED_PATH,
                                "python -m dapper classify pretrain")
    if weights is None:
        return timm.create_model(model_name, pretrained=False, num_classes=num_classes, **kwargs)
    weights = Path(weights).expanduser()
    if not weights.is_file():
        hint = " (python -m dapper classify pretrain makes it)" if weights == PRETRAINED_PATH else ""
        raise FileNotFoundError(f"pretrained classifier weights not found: {weights}{hint}")
    return timm.create_model(model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)),
                             num_classes=num_classes, **kwargs)


def data_config(model: torch.nn.Module) -> dict:
    """timm's data config of ``model``: ``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``..."""
    return resolve_data_config(model=model)


def prepare_images(images: np.ndarray, config: dict) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> uint8 [N, 3, h, w] at the model's input size, through timm's eval
    transform (resize + centre crop by ``crop_pct``). Normalisation is left to :func:`normalise`."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [N, H, W, 3], got {images.dtype} {tuple(images.shape)}")
    size = tuple(config["input_size"][1:])
    if images.shape[1:3] == size and config.get("crop_pct", 1.0) >= 1.0:
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    # mean 0 / std 1: the transform ends in [0, 1], turned back to uint8 for the augmenters.
    cfg = {k: config[k] for k in ("input_size", "interpolation", "crop_pct", "crop_mode") if k in config}
    transform = create_transform(**cfg, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), is_training=False)
    out = torch.stack([transform(Image.fromarray(im)) for im in images])
    return (out * 255).round().clamp(0, 255).to(torch.uint8)


def normalise(x: torch.Tensor, config: dict) -> torch.Tensor:
    """uint8 [N, 3, h, w] -> float, normalised by the model's mean/std."""
    mean = torch.tensor(config["mean"], dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(config["std"], dtype=torch.float32).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


AFFINE_POLICIES = ("randaugment", "trivialaugment", "flipcrop")


def affine_transform(size: tuple[int, int], policy: str = "randaugment", crop_scale: float = 0.7,
                     magnitude: int = 5):
    """The classic baseline: random crop (area ``crop_scale``..1, aspect kept: the look-alike
    classes differ in proportions, which a squashing crop would blur) resized back, mirror, then
    ``randaugment`` (RandAugment, 2 ops at ``magnitude``; the study uses 5: at 9, the usual
    ImageNet setting, shears and shifts cost about 8 points at 32 shots on fold 0 of toycars),
    ``trivialaugment`` (TrivialAugmentWide: one op at a random magnitude; its 'wide' ranges shift
    by up to 32 px, half of a 64 px image) or nothing more (``flipcrop``)."""
    if policy not in AFFINE_POLICIES:
        raise ValueError(f"affine policy {policy!r} is not one of {AFFINE_POLICIES}")
    ops = [T.RandomResizedCrop(size, scale=(crop_scale, 1.0), ratio=(1.0, 1.0), antialias=True),
           T.RandomHorizontalFlip()]
    if policy == "randaugment":
        ops.append(T.RandAugment(num_ops=2, magnitude=magnitude))
    elif policy == "trivialaugment":
        ops.append(T.TrivialAugmentWide())
    return T.Compose(ops)


def describe_affine(settings: FineTuneSettings) -> str:
    """The affine baseline of ``settings`` in words (for captions, generated, never typed)."""
    tail = {"randaugment": f", then RandAugment (2 ops at magnitude {settings.affine_magnitude})",
            "trivialaugment": ", then TrivialAugmentWide (one op at a random magnitude)", "flipcrop": ""}
    return (f"random crop of {settings.affine_crop_scale:.0%}-100% of the area (aspect kept), mirror"
            + tail[settings.affine_policy])


def affine_augment(x: torch.Tensor, transform) -> torch.Tensor:
    """Independent random ``transform`` (:func:`affine_transform`) per image; uint8 [N, 3, h, w]
    in and out. Draws from torch's global generator (seeded per run)."""
    return torch.stack([transform(im) for im in x])


@dataclass
class FineTuneSettings:
    """How one run fine-tunes. The number of optimiser steps depends only on the number of *real*
    images (``epochs`` passes over them, clipped to [min_steps, max_steps]), so every condition at a
    shot level gets the same compute and the same number of updates; synthetic images take
    ``synthetic_share`` of every batch instead of adding steps."""

    epochs: float = 12.0
    min_steps: int = 40
    max_steps: int = 150
    batch_size: int = 32
    lr: float = 1e-3
    head_lr_scale: float = 10.0
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    synthetic_share: float = 0.5
    affine: bool = False
    affine_policy: str = "randaugment"
    affine_crop_scale: float = 0.7
    affine_magnitude: int = 5
    # bf16 autocast of the forward passes (training and evaluation); off by default, the study turns it on
    # (dapper.study.experiments.study_config: faster on a CPU with avx512_bf16, see bench/finetune_bf16.py)
    bf16: bool = False

    def steps(self, n_real: int) -> int:
        return int(min(self.max_steps, max(self.min_steps, math.ceil(self.epochs * n_real / self.batch_size))))


def _param_groups(model: torch.nn.Module, settings: FineTuneSettings) -> list[dict]:
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    body = [p for p in model.parameters() if id(p) not in head_ids]
    groups = [{"params": body, "lr": settings.lr}]
    if head_ids:
        # The new head starts from scratch; a larger step lets it catch up with the pretrained body.
        groups.append({"params": list(head.parameters()), "lr": settings.lr * settings.head_lr_scale})
    return groups


def fine_tune(model: torch.nn.Module, real_x: torch.Tensor, real_y: torch.Tensor,
              synthetic_x: torch.Tensor | None = None, synthetic_y: torch.Tensor | None = None,
              settings: FineTuneSettings | None = None, seed: int = 0, config: dict | None = None,
              progress: bool = False) -> torch.nn.Module:
    """Fine-tune ``model`` in place (CPU or its device) and return it in eval mode.

    real_x, synthetic_x: uint8 [N, 3, h, w] from :func:`prepare_images`; real_y, synthetic_y: int64 [N].
    Deterministic for a given ``seed`` (batches, augmentation) on one device and thread count.
    """
    settings = settings or FineTuneSettings()
    config = config or data_config(model)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))  # torchvision's random transforms draw from the global generator
    n_real = len(real_x)
    n_syn = 0 if synthetic_x is None else len(synthetic_x)
    steps = settings.steps(n_real)
    b = settings.batch_size
    b_syn = int(round(b * settings.synthetic_share)) if n_syn else 0
    b_real = b - b_syn
    transform = (affine_transform(tuple(real_x.shape[-2:]), settings.affine_policy, settings.affine_crop_scale,
                                  settings.affine_magnitude) if settings.affine else None)
    opt = torch.optim.AdamW(_param_groups(model, settings), weight_decay=settings.weight_decay)
    sched = one_cycle(opt, [g["lr"] for g in opt.param_groups], steps, pct_start=0.1)
    real_order, syn_order = _Sampler(n_real, gen), _Sampler(n_syn, gen) if n_syn else None

    def loss_fn(step: int) -> torch.Tensor:
        idx = real_order.take(b_real)
        x, y = real_x[idx], real_y[idx]
        if b_syn:
            sidx = syn_order.take(b_syn)
            x, y = torch.cat([x, synthetic_x[sidx]]), torch.cat([y, synthetic_y[sidx]])
        if transform is not None:
            x = affine_augment(x, transform)
        with autocast(device, settings.bf16):
            logits = model(normalise(x, config).to(device))
        return F.cross_entropy(logits.float(), y.to(device), label_smoothing=settings.label_smoothing)

    model.train()
    fit(loss_fn, opt, steps, scheduler=sched, desc="fine-tune", progress=progress)
    return model.eval()


def autocast(device, enabled: bool):
    """bf16 autocast on ``device`` when ``enabled``, else nothing (the fp32 path unchanged). A CUDA
    GPU before Ampere (no native bf16) runs fp32."""
    device = torch.device(device)
    if enabled and device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 8:
        enabled = False
    if not enabled or device.type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class _Sampler:
    """Endless shuffled passes over ``range(n)``: every image is seen once per pass."""

    def __init__(self, n: int, gen: torch.Generator):
        self.n, self.gen, self.order, self.pos = n, gen, torch.empty(0, dtype=torch.long), 0

    def take(self, k: int) -> torch.Tensor:
        out = []
        while k > 0:
            if self.pos >= len(self.order):
                self.order, self.pos = torch.randperm(self.n, generator=self.gen), 0
            part = self.order[self.pos:self.pos + k]
            self.pos += len(part)
            k -= len(part)
            out.append(part)
        return torch.cat(out)


def train_classifier(real_x: torch.Tensor, real_y: torch.Tensor, num_classes: int,
                     synthetic_x: torch.Tensor | None = None, synthetic_y: torch.Tensor | None = None,
                     settings: FineTuneSettings | None = None, seed: int = 0, model_name: str = EMBEDDED_MODEL,
                     weights: str | Path | None = "default", device=None) -> torch.nn.Module:
    """One run: seed, build the pretrained classifier with a fresh ``num_classes`` head, fine-tune."""
    seed_everything(seed)  # the new head's initialisation
    model = create_classifier(num_classes, model_name, weights)
    if device is not None:
        model = model.to(device)
    return fine_tune(model, real_x, real_y, synthetic_x, synthetic_y, settings, seed)


@torch.no_grad()
def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 256, config: dict | None = None,
            bf16: bool = False) -> torch.Tensor:
    """Class logits float [N, C] for uint8 [N, 3, h, w] inputs (eval mode; ``bf16``: under bf16 autocast)."""
    config = config or data_config(model)
    device = next(model.parameters()).device
    model.eval()
    with autocast(device, bf16):
        out = [model(normalise(x[a:a + batch_size], config).to(device)).float().cpu()
               for a in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, 0)


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256,
             bf16: bool = False) -> float:
    """Top-1 accuracy in [0, 1]."""
    if len(x) == 0:
        return float("nan")
    return float((predict(model, x, batch_size, bf16=bf16).argmax(1) == torch.as_tensor(y)).float().mean())


# ---------------------------------------------------------------------------------------------
# Embedded pretraining on source renders (the stand-in for ImageNet)
# ---------------------------------------------------------------------------------------------


@dataclass
class PretrainSettings:
    n_train: int = 40000  # source images 0 .. n_train-1 (the GAN's own training set, seed 0)
    n_heldout: int = 2000  # source images n_train .. n_train+n_heldout-1
    epochs: int = 12  # the part-level heads need long training (5 epochs of 20000 left them near chance)
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.05
    seed: int = 0
    threads: int = 1
    source_seed: int = 0
    loss_weights: dict = field(default_factory=lambda: {"body": 1.0, "yaw_bin": 1.0, "colour": 0.5,
                                                         **{k: 0.5 for k in PROXY_DETAIL_HEADS}})


def proxy_labels(meta: dict) -> dict[str, np.ndarray]:
    """Proxy-task labels from :func:`dapper.data.toycars.source_dataset` meta arrays:
    ``body`` (index into SOURCE_BODY_TYPES), ``yaw_bin`` (45 deg bins centred on 0, 45, ...),
    ``colour`` (nearest paint of the palette, in PAINT_WEIGHTS order)."""
    body = np.asarray(meta["body"], np.int64)
    yaw = np.asarray(meta["yaw"], np.float64)
    width = 360.0 / PROXY_YAW_BINS
    yaw_bin = (np.floor((yaw + width / 2) / width) % PROXY_YAW_BINS).astype(np.int64)
    palette = np.array([PAINT_PALETTE[n] for n in PAINT_WEIGHTS])
    colour = np.asarray(meta["colour"], np.float64)
    nearest = ((colour[:, None, :] - palette[None]) ** 2).sum(-1).argmin(1).astype(np.int64)
    return {"body": body, "yaw_bin": yaw_bin, "colour": nearest}


def detail_labels(specs, yaw=None) -> dict[str, np.ndarray]:
    """Part-level proxy labels (:data:`PROXY_DETAIL_HEADS`) of vehicle specs (``VehicleSpec`` or dicts).

    With ``yaw`` (degrees, one per spec) a part the view does not show is labelled -1 (ignored by
    the loss): head lamps and grille need the front in view, tail lamps the rear, wheels a side.
    """
    specs = [VehicleSpec.from_dict(sp) if isinstance(sp, dict) else sp for sp in specs]
    out = {
        "head_shape": [sp.head_shape for sp in specs], "tail_shape": [sp.tail_shape for sp in specs],
        "grille_shape": [sp.grille_shape for sp in specs],
        "spokes": [PROXY_SPOKES.index(sp.spokes) for sp in specs],
        "rim_colour": [sp.rim_colour for sp in specs],
        "side_windows": [min(len(sp.window_splits), 3) for sp in specs],
    }
    for k in ("blackout_pillars", "side_stripe", "hood_stripes", "dark_bumpers", "black_roof", "spoiler"):
        out[k] = [int(getattr(sp, k)) for sp in specs]
    out = {k: np.asarray(v, np.int64) for k, v in out.items()}
    if yaw is not None:
        rad = np.deg2rad(np.asarray(yaw, np.float64))
        front, rear, side = np.cos(rad) > -0.2, np.cos(rad) < 0.2, np.abs(np.sin(rad)) > 0.3
        for k, seen in (("head_shape", front), ("grille_shape", front), ("tail_shape", rear), ("spokes", side),
                        ("rim_colour", side), ("side_windows", side)):
            out[k] = np.where(seen, out[k], -1)
    return out


def _mirror_yaw_bin(yaw_bin: torch.Tensor) -> torch.Tensor:
    # A mirror image seen from yaw shows the mirrored car from -yaw; bins are centred on multiples
    # of the bin width, so bin k maps to bin -k.
    return (-yaw_bin) % PROXY_YAW_BINS


def _proxy_loss_and_hits(logits, labels, heads, weights, smoothing):
    """Weighted sum of the heads' cross entropies (labels of -1 ignored) and each head's hits."""
    loss, hits, a = 0.0, {}, 0
    for name, n in heads.items():
        part = logits[:, a:a + n]
        a += n
        y = labels[name]
        if (y >= 0).any():
            loss = loss + weights[name] * F.cross_entropy(part, y, label_smoothing=smoothing, ignore_index=-1)
        hits[name] = (part.argmax(1) == y).sum().item()
    return loss, hits


def pretrain(out: str | Path = PRETRAINED_PATH, settings: PretrainSettings | None = None,
             progress: bool = True) -> dict:
    """Pretrain the embedded classifier on source renders and save ``out`` (+ ``.json``)."""
    settings = settings or PretrainSettings()
    torch.set_num_threads(settings.threads)
    seed_everything(settings.seed)
    t0, cpu0 = time.time(), time.process_time()
    n_all = settings.n_train + settings.n_heldout
    images, meta = toycars.source_dataset(n_all, seed=settings.source_seed, return_meta=True, progress=progress)
    specs = [toycars.source_item(settings.source_seed, i)["spec"] for i in range(n_all)]
    parts = detail_labels(specs, yaw=meta["yaw"])
    labels = {k: torch.from_numpy(v) for k, v in {**proxy_labels(meta), **parts}.items()}
    heads = _proxy_heads()
    x_all = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).contiguous()
    t_data = time.time() - t0

    model = create_classifier(sum(heads.values()), EMBEDDED_MODEL, weights=None)
    config = data_config(model)
    n = settings.n_train
    steps_per_epoch = n // settings.batch_size
    steps = settings.epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = one_cycle(opt, settings.lr, steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(settings.seed)
    batches = EpochSampler(n, settings.batch_size, gen)

    def loss_fn(step: int) -> torch.Tensor:
        idx = batches(step)
        x = x_all[idx]
        y = {k: v[idx].clone() for k, v in labels.items()}
        # Mirror half the batch (the yaw label follows) and shift by a few pixels.
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        y["yaw_bin"] = torch.where(flip, _mirror_yaw_bin(y["yaw_bin"]), y["yaw_bin"])
        dx, dy = torch.randint(-3, 4, (2,), generator=gen).tolist()
        x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        logits = model(normalise(x, config))
        return _proxy_loss_and_hits(logits, y, heads, settings.loss_weights, settings.label_smoothing)[0]

    model.train()
    log = fit(loss_fn, opt, steps, scheduler=sched, desc="pretrain", progress=progress)
    model.eval()
    heldout = {k: v[n:] for k, v in labels.items()}
    hits = {k: 0 for k in heads}
    with torch.no_grad():
        for a in range(0, settings.n_heldout, 256):
            xb = x_all[n + a:n + a + 256]
            yb = {k: v[a:a + 256] for k, v in heldout.items()}
            _, h = _proxy_loss_and_hits(model(normalise(xb, config)), yb, heads, settings.loss_weights, 0.0)
            for k in hits:
                hits[k] += h[k]
    seen = {k: int((heldout[k] >= 0).sum()) for k in heads}
    acc = {k: round(hits[k] / max(seen[k], 1), 4) for k in heads}
    chance = {k: round(float(np.bincount(heldout[k][heldout[k] >= 0].numpy(), minlength=heads[k]).max()
                             / max(seen[k], 1)), 4) for k in heads}

    out = Path(out)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    atomic_save(out, lambda p: save_file(state, str(p)))

    record = {
        "name": "classifier_pretrained",
        "world": toycars.WORLD_TAG,
        "model": EMBEDDED_MODEL,
        "architecture": {"timm_class": "timm.models.resnet.ResNet", "block": "Bottleneck", **EMBEDDED_ARCH,
                         "params": sum(p.numel() for p in model.parameters())},
        "usage": (f"dapper.classify.create_classifier(num_classes) or timm.create_model('{EMBEDDED_MODEL}', "
                  "pretrained=True, pretrained_cfg_overlay=dict(file=PATH), num_classes=N) after importing "
                  "dapper.classify"),
        "input": "uint8 RGB 64x64 -> float normalised with mean 0.5, std 0.5 (i.e. [-1, 1])",
        "proxy_task": {"heads": heads, "order_in_fc": list(heads),
                       "labels": "ground truth of the toycars source renders: body type (7 source types), yaw "
                                 "in 8 bins of 45 deg centred on 0, 45, ..., nearest palette paint colour, and "
                                 "the parts each vehicle has (lamp, grille and wheel designs, rim colour, side "
                                 "windows, trim: dapper.classify.PROXY_DETAIL_HEADS; a part out of view is not "
                                 "scored)",
                       "never": "target classes, target pools, evaluation oracles"},
        "training": {"command": "python -m dapper classify pretrain", **asdict(settings),
                     "source": f"toycars source_dataset(seed={settings.source_seed}) images 0..{n - 1}, "
                               f"render version {toycars.RENDER_VERSION}",
                     "augmentation": "horizontal mirror (yaw bin mirrored) and shifts of up to 3 px",
                     "data_seconds": round(t_data, 1), **log.as_dict(),
                     # Wall time depends on what else shares the CPU; process CPU time does not.
                     "cpu_seconds": round(time.process_time() - cpu0, 1),
                     "torch": torch.__version__, "timm": timm.__version__},
        "heldout": {"images": f"source images {n}..{n_all - 1}", "accuracy": acc, "majority_class_rate": chance},
    }
    json_path = out.with_suffix(".json")
    atomic_save(json_path, lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
    return record
