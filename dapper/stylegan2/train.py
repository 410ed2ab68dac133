"""StyleGAN2 training: non-saturating logistic loss, lazy R1, optional path-length regularisation,
style mixing, EMA generator, mixed precision on CUDA, resumable checkpoints.

The schedule follows stylegan2-ada-pytorch (Adam with betas (0, 0.99), lazy regularisation with the
learning rate and betas rescaled by interval / (interval + 1), EMA half-life in kimg with a ramp-up),
written for small models on a CPU.

Run: ``python -m dapper train-gan --config checkpoints/source_gan_v2_train.json [--out runs/source_gan_v2]``
(``make source-gan``). A dapper generator checkpoint JSON also works as ``--config``: its
``metadata.train_config`` is the run that made it.
The run folder holds ``resume.pt`` (weights + optimiser state, rewritten atomically, loaded with
``weights_only=True``), ``samples-<kimg>.png`` grids, ``log.csv`` and the exported EMA generator.
A run that is interrupted (Ctrl-C, SIGTERM) saves its state and continues where it stopped when
started again with the same command.

``--export checkpoints/NAME`` writes, once the run is complete, the EMA generator
(``NAME.safetensors`` + ``.json``) and its training state ``NAME_state.safetensors``: the trained
(non-EMA) generator, the discriminator, the path-length mean and the counters, with the hash of the
EMA generator it belongs to. It holds no optimiser states (small enough to ship) and is read as data.
``--init checkpoints/NAME_state.safetensors`` starts a new run from it, e.g. to train the shipped
generator further on a GPU or to fine-tune it on other images, from a fresh clone.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import math
import os
import platform
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save as st_save
from torchvision.utils import save_image
from tqdm.auto import tqdm

from ..utils import atomic_save, atomic_write_bytes, weights_hash
from .checkpoints import dapper_paths, detect_format, load_generator, save_generator
from .diffaugment import diff_augment, parse_policy
from .networks import Discriminator, Generator
from .projected import ProjectedDiscriminator, hinge_d_loss, hinge_g_loss

__all__ = ["TrainConfig", "train", "ImageStream", "save_training_state", "load_training_state", "LegRecorder",
           "training_state_path", "read_init_state", "config_differences", "SCHEDULE_FIELDS",
           "train_and_export", "write_state_of"]

STATE_SUFFIX = "_state.safetensors"
# Settings a run may change when it goes on from another (--init); the rest fix network, data, losses.
SCHEDULE_FIELDS = ("batch", "ema_kimg", "total_kimg", "snapshot_kimg", "mixed_precision", "threads")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run; stored beside every checkpoint it makes."""

    resolution: int = 64
    z_dim: int = 128
    w_dim: int = 128
    mapping_layers: int = 4
    channel_base: int = 4096
    channel_max: int = 128
    d_channel_base: int = 4096
    d_channel_max: int = 128
    mbstd_group: int = 4
    batch: int = 32
    glr: float = 0.0025
    dlr: float = 0.0025
    r1_gamma: float = 0.1
    r1_interval: int = 16
    pl_weight: float = 0.0
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float = 0.05
    total_kimg: float = 300.0
    snapshot_kimg: float = 10.0
    xflip: bool = True
    seed: int = 0
    dataset: str = ""  # a source name the caller knows (see load_dataset) or a .npy file
    dataset_size: int = 50000
    data_seed: int = 0
    mixed_precision: bool = True  # bf16 autocast of the main G and D passes (CUDA and CPU); regularisers in fp32
    threads: int = 0  # torch CPU threads, 0 = torch default
    # DiffAugment policy for every image the discriminators see, e.g. "color,translation,cutout" ("" = none)
    diffaugment: str = ""
    # a second, projected discriminator on the frozen feature network of this name (the caller's
    # feature_nets supply it; "" = none), its loss weight in the generator's step and its learning rate
    projected_features: str = ""
    projected_weight: float = 1.0
    projected_lr: float = 0.002

    @classmethod
    def from_json(cls, path) -> TrainConfig:
        data = json.loads(Path(path).read_text())
        data = data.get("train", data.get("metadata", {}).get("train_config", data))
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown training settings {sorted(unknown)}")
        cfg = cls(**data)
        parse_policy(cfg.diffaugment)
        return cfg

    def generator_kwargs(self) -> dict:
        return dict(z_dim=self.z_dim, c_dim=0, w_dim=self.w_dim, img_resolution=self.resolution, img_channels=3,
                    mapping_kwargs=dict(num_layers=self.mapping_layers),
                    synthesis_kwargs=dict(channel_base=self.channel_base, channel_max=self.channel_max))

    def discriminator_kwargs(self) -> dict:
        return dict(c_dim=0, img_resolution=self.resolution, img_channels=3, channel_base=self.d_channel_base,
                    channel_max=self.d_channel_max, epilogue_kwargs=dict(mbstd_group_size=self.mbstd_group))


class ImageStream:
    """Random minibatches from a uint8 array [N, H, W, 3] as float NCHW in [-1, 1]."""

    def __init__(self, images: np.ndarray, batch: int, xflip: bool, seed: int, device: torch.device):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images [N, H, W, 3], got {images.dtype} {images.shape}")
        self.images = images
        self.batch = batch
        self.xflip = xflip
        self.rng = np.random.default_rng(seed)
        self.device = device

    def next(self) -> torch.Tensor:
        idx = np.sort(self.rng.integers(0, len(self.images), self.batch))
        x = torch.from_numpy(np.ascontiguousarray(self.images[idx])).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1)
        if self.xflip:
            flip = torch.from_numpy(self.rng.random(self.batch) < 0.5).to(self.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x


def load_dataset(cfg: TrainConfig, progress: bool = True, sources: dict | None = None) -> np.ndarray:
    """The training images ``cfg.dataset`` names: a source in ``sources`` (name -> ``fn(cfg,
    progress)`` returning uint8 [N, H, W, 3]; the caller's, since the engine knows no dataset) or
    an existing ``.npy`` file of uint8 images [N, H, W, 3] (memory-mapped)."""
    sources = sources or {}
    if cfg.dataset in sources:
        return sources[cfg.dataset](cfg, progress)
    path = Path(cfg.dataset)
    if path.suffix == ".npy" and path.exists():
        return np.load(path, mmap_mode="r")
    known = "".join(f"{name!r} or " for name in sources)
    raise FileNotFoundError(f"dataset {cfg.dataset!r}: expected {known}an existing .npy file of uint8 images "
                            "[N, H, W, 3]")


# --------------------------------------------------------------------------------------------
# Losses


def _mixed_ws(G: Generator, z: torch.Tensor, prob: float) -> torch.Tensor:
    ws = G.mapping(z, None)
    if prob > 0 and torch.rand([]) < prob:
        cutoff = torch.randint(1, ws.shape[1], ())
        ws2 = G.mapping(torch.randn_like(z), None, skip_w_avg_update=True)
        ws = ws.clone()
        ws[:, cutoff:] = ws2[:, cutoff:]
    return ws


def r1_penalty(D: Discriminator, real: torch.Tensor, transform=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (D logits on real, squared gradient norm per sample [N]); with ``transform`` (an
    augmentation), D judges the transformed images and the gradient is taken through it, with
    respect to the images themselves."""
    real = real.detach().requires_grad_(True)
    logits = D(real if transform is None else transform(real))
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return logits, grad.square().sum(dim=[1, 2, 3])


class Trainer:
    """Holds networks, optimisers and counters; ``step()`` runs one minibatch of all phases."""

    def __init__(self, cfg: TrainConfig, device: torch.device, feature_nets: dict | None = None):
        self.cfg = cfg
        self.device = device
        torch.manual_seed(cfg.seed)
        self.G = Generator(**cfg.generator_kwargs()).to(device).train()
        self.D = Discriminator(**cfg.discriminator_kwargs()).to(device).train()
        self.P = self.opt_P = None
        if cfg.projected_features:
            nets = feature_nets or {}
            if cfg.projected_features not in nets:
                raise ValueError(f"projected_features {cfg.projected_features!r}: no such feature network "
                                 f"(known: {sorted(nets)})")
            features = nets[cfg.projected_features](device)
            self.P = ProjectedDiscriminator(features, cfg.resolution, seed=cfg.seed).to(device).train()
            self.opt_P = torch.optim.Adam(self.P.trainable_parameters(), lr=cfg.projected_lr, betas=(0.0, 0.99),
                                          eps=1e-8)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        g_ratio = cfg.pl_interval / (cfg.pl_interval + 1) if cfg.pl_weight > 0 else 1.0
        d_ratio = cfg.r1_interval / (cfg.r1_interval + 1) if cfg.r1_gamma > 0 else 1.0
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=cfg.glr * g_ratio, betas=(0.0, 0.99 ** g_ratio), eps=1e-8)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=cfg.dlr * d_ratio, betas=(0.0, 0.99 ** d_ratio), eps=1e-8)
        self.pl_mean = torch.zeros([], device=device)
        self.nimg = 0
        self.step_idx = 0
        self.autocast = device.type in ("cuda", "cpu") and cfg.mixed_precision

    def _amp(self):
        # bf16 needs no loss scaling. On a CPU with avx512_bf16 it pays for wide layers only (one
        # thread, batch 32: 1.45x for 64/128 channels at 64/32 px, 0.95x at the shipped width;
        # bench/results/train_step_cpu_*.json).
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """What the discriminators see of an image batch (DiffAugment, when the config asks)."""
        return diff_augment(x, self.cfg.diffaugment) if self.cfg.diffaugment else x

    def step(self, real: torch.Tensor, sync: bool = True) -> dict:
        """One minibatch of every phase. Returns the losses as floats, or as 0-d tensors when
        ``sync`` is False (reading them back waits for the device; the training loop does that only
        when it logs, so a GPU is never stalled by the host)."""
        cfg, G, D = self.cfg, self.G, self.D
        n = real.shape[0]
        stats = {}

        # Generator: non-saturating logistic loss.
        G.requires_grad_(True)
        D.requires_grad_(False)
        z = torch.randn([n, cfg.z_dim], device=self.device)
        P = self.P
        if P is not None:
            P.heads.requires_grad_(False)
        with self._amp():
            fake = self.augment(G.synthesis(_mixed_ws(G, z, cfg.style_mixing)))
            loss_g = F.softplus(-D(fake).float()).mean()
            if P is not None:
                loss_p = hinge_g_loss(P(fake).float())
                stats["loss_g_projected"] = loss_p.detach()
                loss_g = loss_g + cfg.projected_weight * loss_p
        self.opt_G.zero_grad(set_to_none=True)
        loss_g.backward()
        stats["loss_g"] = loss_g.detach()

        # Path-length regularisation, lazily.
        if cfg.pl_weight > 0 and self.step_idx % cfg.pl_interval == 0:
            pl_n = max(n // cfg.pl_batch_shrink, 1)
            ws = _mixed_ws(G, torch.randn([pl_n, cfg.z_dim], device=self.device), cfg.style_mixing)
            img = G.synthesis(ws)
            noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grad.square().sum(2).mean(1).sqrt()
            self.pl_mean.copy_(self.pl_mean.lerp(lengths.mean().detach(), cfg.pl_decay))
            loss_pl = (lengths - self.pl_mean).square().mean() * cfg.pl_weight * cfg.pl_interval
            (loss_pl + img[:, 0, 0, 0].sum() * 0).backward()
            stats["pl"] = lengths.detach().mean()
        for p in G.parameters():
            if p.grad is not None:
                torch.nan_to_num_(p.grad, nan=0, posinf=1e5, neginf=-1e5)
        self.opt_G.step()

        # Discriminator: logistic loss on fakes and reals, plus lazy R1 on reals.
        G.requires_grad_(False)
        D.requires_grad_(True)
        with torch.no_grad(), self._amp():
            fake = G.synthesis(_mixed_ws(G, torch.randn([n, cfg.z_dim], device=self.device), cfg.style_mixing))
        do_r1 = cfg.r1_gamma > 0 and self.step_idx % cfg.r1_interval == 0
        fake = self.augment(fake.float())
        with self._amp():
            logits_fake = D(fake).float()
            if not do_r1:
                logits_real = D(self.augment(real)).float()
        if do_r1:  # the gradient penalty in fp32: a bf16 input gradient would be too coarse
            logits_real, r1 = r1_penalty(D, real, self.augment if cfg.diffaugment else None)
        loss_d = F.softplus(logits_fake).mean() + F.softplus(-logits_real).mean()
        if do_r1:
            loss_d = loss_d + (r1 * (cfg.r1_gamma / 2)).mean() * cfg.r1_interval
            stats["r1"] = r1.detach().mean()
        self.opt_D.zero_grad(set_to_none=True)
        loss_d.backward()
        if P is not None:  # the projected discriminator: hinge loss, its own optimiser, no penalty
            P.heads.requires_grad_(True)  # features and mixing stay frozen
            with self._amp():
                loss_pd = hinge_d_loss(P(self.augment(real)).float(), P(fake).float())
            self.opt_P.zero_grad(set_to_none=True)
            loss_pd.backward()
            self.opt_P.step()
            stats["loss_d_projected"] = loss_pd.detach()
        for p in D.parameters():
            if p.grad is not None:
                torch.nan_to_num_(p.grad, nan=0, posinf=1e5, neginf=-1e5)
        self.opt_D.step()
        stats["loss_d"] = loss_d.detach()
        stats["d_real"] = logits_real.detach().mean()
        stats["d_fake"] = logits_fake.detach().mean()

        # EMA generator with a ramp-up of the half-life early in training.
        self.nimg += n
        self.step_idx += 1
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup:
            ema_nimg = min(ema_nimg, self.nimg * cfg.ema_rampup)
        beta = 0.5 ** (n / max(ema_nimg, 1e-8))
        with torch.no_grad():
            # p_ema <- p + beta (p_ema - p), all tensors in one fused call
            torch._foreach_lerp_(list(self.G_ema.parameters()), [p.detach() for p in G.parameters()], 1.0 - beta)
            for b_ema, b in zip(self.G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)
        return {k: float(v) for k, v in stats.items()} if sync else stats

    # -- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
            "pl_mean": self.pl_mean, "nimg": self.nimg, "step_idx": self.step_idx,
            "torch_rng": torch.get_rng_state(), "config": json.dumps(dataclasses.asdict(self.cfg)),
            **({"P": self.projected_state(), "opt_P": self.opt_P.state_dict()} if self.P is not None else {}),
        }

    def projected_state(self) -> dict:
        """The projected discriminator's own tensors (heads and fixed mixing), not the caller's feature network."""
        return {k: v for k, v in self.P.state_dict().items() if not k.startswith("features.")}

    def load_projected_state(self, state: dict) -> None:
        missing, unexpected = self.P.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("features.")]
        if missing or unexpected:
            raise KeyError(f"projected discriminator state: missing {missing}, unexpected {unexpected}")

    def load_state_dict(self, state: dict, weights_only: bool = False) -> None:
        """Restore a :meth:`state_dict`. ``weights_only`` (used by ``--init``) takes the networks and
        counters and leaves the optimisers fresh, so a run can go on under new optimiser settings
        (another batch size, another device); the optimiser states may then be absent."""
        missing = [k for k in ("G", "D", "G_ema", "pl_mean", "nimg", "step_idx") if k not in state]
        if not weights_only:
            missing += [k for k in ("opt_G", "opt_D", "torch_rng") if k not in state]
        if missing:  # checked before anything changes, so a bad file leaves the trainer as it was
            raise KeyError(f"training state lacks {missing}" + ("" if weights_only else
                           " (a file without optimiser states can start a run with --init, not resume one)"))
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.pl_mean.copy_(state["pl_mean"])
        self.nimg = int(state["nimg"])
        self.step_idx = int(state["step_idx"])
        # a run with a projected discriminator takes its state where there is one (a fresh one
        # starts from a run without); a run without ignores one
        if self.P is not None and state.get("P"):
            self.load_projected_state(state["P"])
        if weights_only:
            return
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        if self.P is not None and "opt_P" in state:
            self.opt_P.load_state_dict(state["opt_P"])
        torch.set_rng_state(state["torch_rng"])


def _atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """Write images [N, 3, H, W] in [-1, 1] as one PNG grid (torchvision's ``save_image``), atomically."""
    x = images.detach().float().cpu().clamp(-1, 1)
    atomic_save(path, lambda p: save_image(x, p, nrow=nrow, padding=0, normalize=True, value_range=(-1, 1),
                                           format="png"))


def export_generator(trainer: Trainer, path: Path, extra: dict | None = None) -> Path:
    """Write the EMA generator (``<path>.safetensors`` + ``.json``); returns the weights path."""
    meta = {"train_config": dataclasses.asdict(trainer.cfg), "kimg": trainer.nimg / 1000}
    meta.update(extra or {})
    return save_generator(trainer.G_ema, path, metadata=meta)


def config_differences(cfg: TrainConfig, other: dict, ignore=()) -> dict:
    """``{field: (cfg's value, other's value)}`` for every field of ``cfg`` that ``other`` (a config
    as a dict) sets differently, leaving out the fields in ``ignore``."""
    return {k: (v, other.get(k)) for k, v in dataclasses.asdict(cfg).items() if k not in ignore and other.get(k) != v}


def training_state_path(export) -> Path:
    """The training state that goes with an export: ``checkpoints/x`` (or ``x.safetensors``, ``x.json``)
    -> ``checkpoints/x_state.safetensors``, beside the weights :func:`export_generator` writes."""
    weights = _export_weights(export)
    return weights.with_name(weights.stem + STATE_SUFFIX)


def _export_weights(export) -> Path:
    return dapper_paths(Path(export))[0]  # the weights file save_generator names for this path


def save_training_state(trainer: Trainer, path, generator_path, extra: dict | None = None) -> Path:
    """Write what a new run needs to go on from ``trainer`` (no optimiser states) as safetensors:
    ``G.*`` and ``D.*`` weights, ``pl_mean``, and in the metadata the counters, the config and the
    file name and weight hash of the EMA generator saved at ``generator_path`` (in the same folder),
    which :func:`load_training_state` reads back and checks. Each file is written atomically, one
    after the other: a run killed between the generator and its state leaves a pair that
    :func:`load_training_state` refuses, never one that loads wrongly."""
    path, generator_path = Path(path), Path(generator_path)
    if generator_path.resolve().parent != path.resolve().parent:
        raise ValueError(f"the generator {generator_path} must sit in the same folder as {path}")
    tensors = {f"G.{k}": v for k, v in trainer.G.state_dict().items()}
    tensors.update({f"D.{k}": v for k, v in trainer.D.state_dict().items()})
    if trainer.P is not None:
        tensors.update({f"P.{k}": v for k, v in trainer.projected_state().items()})
    tensors["pl_mean"] = trainer.pl_mean.reshape(())
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta = {"nimg": int(trainer.nimg), "step_idx": int(trainer.step_idx), "kimg": trainer.nimg / 1000,
            "config": dataclasses.asdict(trainer.cfg), "generator": generator_path.name,
            "generator_hash": weights_hash(trainer.G_ema, fresh=True), **(extra or {})}
    atomic_write_bytes(path, st_save(tensors, metadata={"dapper_training_state": json.dumps(meta)}))
    return path


def load_training_state(path, device="cpu") -> dict:
    """Read a :func:`save_training_state` file into the form :meth:`Trainer.load_state_dict` takes
    with ``weights_only=True`` (plus ``"config"``). The EMA generator comes from the file named in
    its metadata, beside it, and must have the weights the state was saved with."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training state at {path}")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        raw = (f.metadata() or {}).get("dapper_training_state")
        if raw is None:
            raise ValueError(f"{path} is not a dapper training state (no 'dapper_training_state' metadata)")
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta = json.loads(raw)
    name = meta.get("generator")
    # the state names a safetensors file beside it, nothing else: no other folder, no other format
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors"):
        raise ValueError(f"{path} names its generator {name!r}; a bare .safetensors file name beside it is expected")
    gen_path = path.parent / name
    if not gen_path.is_file():
        raise FileNotFoundError(f"{path} goes with the generator {gen_path}, which is missing")
    if detect_format(gen_path) != "safetensors":
        raise ValueError(f"{gen_path} is not a safetensors file")
    G_ema = load_generator(gen_path)
    if weights_hash(G_ema, fresh=True) != meta["generator_hash"]:
        raise ValueError(f"{gen_path} is not the generator {path} was saved with (its weights differ); "
                         f"a training state only goes on from its own EMA generator")

    def part(prefix):
        return {k[len(prefix):]: v.to(device) for k, v in tensors.items() if k.startswith(prefix)}

    return {"G": part("G."), "D": part("D."), "P": part("P."),
            "G_ema": {k: v.to(device) for k, v in G_ema.state_dict().items()},
            "pl_mean": tensors["pl_mean"].to(device), "nimg": meta["nimg"], "step_idx": meta["step_idx"],
            "config": meta["config"]}


def read_init_state(init, device="cpu") -> dict:
    """What ``--init`` starts from: a training state (``*_state.safetensors``) or another run's
    ``resume.pt`` (weights only), with ``"config"`` as a dict in both cases (empty if unrecorded)."""
    if str(init).endswith(".safetensors"):
        return load_training_state(init, device)
    state = torch.load(init, map_location=device, weights_only=True)
    return {**state, "config": json.loads(state["config"]) if "config" in state else {}}


def configure_device(device: torch.device) -> None:
    """CUDA: TF32 matrix and convolution units, cuDNN autotuning (fixed shapes every step). These
    are process-wide torch settings: whatever runs later in the same process keeps them."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True


def train(cfg: TrainConfig, out: Path, device: torch.device | None = None, images: np.ndarray | None = None,
          max_minutes: float | None = None, progress: bool = True, init: Path | None = None,
          log_every: int = 50, max_cpu_minutes: float | None = None,
          snapshot_minutes: float | None = None, on_snapshot=None, sources: dict | None = None,
          feature_nets: dict | None = None) -> Trainer:
    """Train (or resume) until ``cfg.total_kimg``; returns the trainer. Stops early, saving, on
    SIGINT/SIGTERM, after ``max_minutes`` of wall time or ``max_cpu_minutes`` of this process's CPU
    time (all its threads: a budget that other jobs on the machine do not shorten). Besides every
    ``cfg.snapshot_kimg``, a snapshot (``resume.pt``, EMA generator, log row) is written whenever
    ``snapshot_minutes`` of wall time have passed since the last, so an interrupted run loses at
    most that much; ``on_snapshot(trainer, nimg_start)`` is called after each snapshot (e.g. a
    :class:`LegRecorder`), with the image count this process started from.
    ``init``: a ``resume.pt`` of another run, or a training
    state (``*_state.safetensors``, :func:`save_training_state`), whose networks and counters start
    this one (fresh optimisers), used only when ``out`` holds no ``resume.pt`` yet;
    the new run's ``log.csv`` counts its own seconds from 0.
    The losses are read back from the device every ``log_every`` steps and at snapshots.
    ``images``: uint8 [N, H, W, 3]; when None, :func:`load_dataset` reads ``cfg.dataset`` (from
    ``sources`` or a ``.npy`` file)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    configure_device(device)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    if images is None:
        images = load_dataset(cfg, progress=progress, sources=sources)
    if images.shape[1] != cfg.resolution:
        raise ValueError(f"images are {images.shape[1]} px but the config trains {cfg.resolution} px")
    trainer = Trainer(cfg, device, feature_nets=feature_nets)
    resume = out / "resume.pt"
    if resume.exists():
        state = torch.load(resume, map_location=device, weights_only=True)
        ahead = int(read_init_state(init)["nimg"]) if init is not None and Path(init).is_file() else -1
        if ahead > int(state["nimg"]):
            # e.g. a leg trained elsewhere and unpacked here: resuming would train over it and drop its legs
            raise ValueError(f"--init {init} is ahead of this run folder's {resume} ({ahead / 1000:.1f} vs "
                             f"{int(state['nimg']) / 1000:.1f} kimg); remove {resume} to go on from --init, "
                             "or give another --out")
        trainer.load_state_dict(state)
        print(f"resumed from {resume} at {trainer.nimg / 1000:.1f} kimg")
    elif init is not None:
        trainer.load_state_dict(read_init_state(init, device), weights_only=True)
        print(f"initialised from {init} at {trainer.nimg / 1000:.1f} kimg (networks and counters; fresh optimisers)")
    stream = ImageStream(images, cfg.batch, cfg.xflip, seed=cfg.seed * 1000003 + trainer.step_idx, device=device)
    nimg_start = trainer.nimg
    grid_z = torch.randn([32, cfg.z_dim], generator=torch.Generator().manual_seed(cfg.seed + 123)).to(device)

    stop = {"flag": False}

    def _request_stop(signum, frame):
        stop["flag"] = True

    old_handlers = {s: signal.signal(s, _request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    total = int(cfg.total_kimg * 1000)
    next_snapshot = (trainer.nimg // int(cfg.snapshot_kimg * 1000) + 1) * int(cfg.snapshot_kimg * 1000)
    log_path = out / "log.csv"
    if not log_path.exists():
        log_path.write_text("kimg,seconds,loss_g,loss_d,d_real,d_fake,r1\n")
    t_start = time.time()
    cpu_start = time.process_time()
    t_last_snapshot = t_start
    seconds_before = (logged_seconds(log_path) or 0.0) if resume.exists() else 0.0
    bar = tqdm(total=total, initial=trainer.nimg, unit="img", unit_scale=True, disable=not progress,
               desc="train StyleGAN2")
    last = {}
    try:
        while trainer.nimg < total and not stop["flag"]:
            stats = trainer.step(stream.next(), sync=False)
            last.update(stats)
            bar.update(cfg.batch)
            if trainer.step_idx % log_every == 0:
                bar.set_postfix(g=f"{float(stats['loss_g']):.2f}", d=f"{float(stats['loss_d']):.2f}")
            now = time.time()
            if max_minutes is not None and now - t_start > max_minutes * 60:
                stop["flag"] = True
            if max_cpu_minutes is not None and time.process_time() - cpu_start > max_cpu_minutes * 60:
                stop["flag"] = True
            timed = snapshot_minutes is not None and now - t_last_snapshot > snapshot_minutes * 60
            if trainer.nimg >= next_snapshot or trainer.nimg >= total or stop["flag"] or timed:
                last = {k: float(v) for k, v in last.items()}
                if trainer.nimg >= next_snapshot:
                    next_snapshot += int(cfg.snapshot_kimg * 1000)
                t_last_snapshot = now
                _snapshot(trainer, out, grid_z, log_path, last, seconds_before + now - t_start)
                if on_snapshot is not None:
                    on_snapshot(trainer, nimg_start)
    finally:
        bar.close()
        for s, h in old_handlers.items():
            signal.signal(s, h)
    return trainer


def logged_seconds(log_path: Path) -> float | None:
    """Training seconds of the run's last ``log.csv`` row; None when it has no rows yet."""
    rows = Path(log_path).read_text().strip().splitlines()[1:]
    return float(rows[-1].split(",")[1]) if rows else None


def _snapshot(trainer: Trainer, out: Path, grid_z: torch.Tensor, log_path: Path, stats: dict, seconds: float):
    kimg = trainer.nimg / 1000
    with torch.no_grad():
        imgs = trainer.G_ema(grid_z, None, noise_mode="const")
    save_grid(imgs, out / f"samples-{int(round(kimg)):05d}.png")
    _atomic_torch_save(trainer.state_dict(), out / "resume.pt")
    with open(log_path, "a") as fh:
        fh.write(f"{kimg:.3f},{seconds:.1f},{stats.get('loss_g', float('nan')):.4f},"
                 f"{stats.get('loss_d', float('nan')):.4f},{stats.get('d_real', float('nan')):.4f},"
                 f"{stats.get('d_fake', float('nan')):.4f},{stats.get('r1', float('nan')):.4f}\n")
    export_generator(trainer, out / "generator_ema", extra={"seconds": round(seconds, 1)})


def train_and_export(cfg: TrainConfig, out: Path, export=None, command: str = "",
                     snapshot_minutes: float | None = None, **train_options) -> Trainer:
    """:func:`train` (resuming) in the run folder ``out``, then, with ``export``, the EMA generator and
    its training state written there (``export`` + ``.safetensors``, ``_state.safetensors``).

    With ``snapshot_minutes`` as well, they are written at every snapshot, with the legs of the run
    (:class:`LegRecorder`), so a run trained in several sessions is usable after each; otherwise once
    the run reaches ``cfg.total_kimg``, and not at all when this process trained nothing. ``command``
    (the command line that made them) is recorded beside them; ``train_options``: :func:`train`'s
    other keyword arguments."""
    out = Path(out)
    legs = LegRecorder(export, command) if export and snapshot_minutes else None
    trainer = train(cfg, out, snapshot_minutes=snapshot_minutes, on_snapshot=legs, **train_options)
    if legs is not None:
        print(f"exported the EMA generator and its training state to {export} (legs in its JSON)")
        return trainer
    if export and trainer.nimg >= cfg.total_kimg * 1000:
        seconds = logged_seconds(out / "log.csv")
        if seconds is None:  # e.g. --init from a run already at total_kimg: nothing of this run to export
            print(f"nothing trained in {out} (already at {trainer.nimg / 1000:.1f} kimg); not exporting")
            return trainer
        weights = export_generator(trainer, Path(export),
                                   extra={"command": command, "seconds": seconds, "device": str(trainer.device)})
        state = save_training_state(trainer, training_state_path(export), weights, extra={"command": command})
        print(f"exported the EMA generator to {weights} and its training state to {state}")
    return trainer


class LegRecorder:
    """Exports the EMA generator and its training state at every snapshot of a run, with the list of
    legs behind it (one leg per process: when and where it ran, kimg from and to, wall and CPU
    seconds) in the generator's JSON metadata. Use as ``train(..., on_snapshot=LegRecorder(export))``.

    The legs of an earlier export of the same run (ending where this leg starts) are kept, so a
    run trained in several sessions lists them all; an export of another run is replaced, not merged.
    """

    def __init__(self, export, command: str = ""):
        self.export = Path(export)
        self.command = command
        self.started = datetime.datetime.now().isoformat(timespec="seconds")
        self.machine = platform.node()
        self.cpu0, self.t0 = time.process_time(), time.time()
        self.previous = None

    def earlier_legs(self, kimg_from: float) -> list:
        json_path = _export_weights(self.export).with_suffix(".json")
        if not json_path.is_file():
            return []
        legs = json.loads(json_path.read_text()).get("metadata", {}).get("legs", [])
        return legs if legs and abs(legs[-1]["kimg_to"] - kimg_from) < 1e-3 else []

    def __call__(self, trainer: Trainer, nimg_start: int) -> Path:
        kimg_from = nimg_start / 1000
        if self.previous is None:
            self.previous = self.earlier_legs(kimg_from)
        leg = {"started": self.started, "ended": datetime.datetime.now().isoformat(timespec="seconds"),
               "machine": self.machine, "device": str(trainer.device), "threads": torch.get_num_threads(),
               "kimg_from": round(kimg_from, 3), "kimg_to": round(trainer.nimg / 1000, 3),
               "wall_seconds": round(time.time() - self.t0, 1),
               "cpu_seconds": round(time.process_time() - self.cpu0, 1), "command": self.command}
        weights = export_generator(trainer, self.export, extra={"command": self.command, "legs": [*self.previous, leg]})
        save_training_state(trainer, training_state_path(self.export), weights, extra={"command": self.command})
        return weights


def write_state_of(cfg: TrainConfig, resume_pt, export, command: str = "") -> Path:
    """The training state of a finished run's ``resume.pt``, written beside its exported generator
    (``export``), after checking that this generator is the run's EMA generator."""
    state = read_init_state(resume_pt)
    differs = config_differences(cfg, state["config"]) if state["config"] else {}
    if differs:
        raise ValueError(f"{resume_pt} was trained with other settings than the config given (given, run): {differs}")
    trainer = Trainer(cfg, torch.device("cpu"))
    trainer.load_state_dict(state, weights_only=True)
    weights = _export_weights(export)
    if weights_hash(load_generator(weights)) != weights_hash(trainer.G_ema, fresh=True):
        raise ValueError(f"{weights} is not the EMA generator of {resume_pt}")
    path = save_training_state(trainer, training_state_path(export), weights, extra={"command": command})
    print(f"wrote the training state of {resume_pt} ({trainer.nimg / 1000:.3f} kimg) to {path}")
    return path
