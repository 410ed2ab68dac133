"""``python -m dapper project``: project every image in a folder into a generator's W space
(:func:`dapper.inversion.projection.project_folder`)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import torch

from dapper import stylegan2
from dapper.cli.options import add_device, add_executor, add_threads, command_parser
from dapper.executor import get_executor
from dapper.inversion.projection import ProjectionSettings, project_folder
from dapper.utils import default_generator_path, get_device

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """0: projected; 1: no usable image in the folder; 2: a bad executor or folder."""
    ap = command_parser("project", "Project every image in a folder into a generator's W space.")
    ap.add_argument("--network", type=Path, default=None,
                    help="generator checkpoint (.pkl/.pt/.safetensors); default: the shipped toycars source GAN")
    ap.add_argument("--images", type=Path, required=True, help="folder of images (any size and mode)")
    ap.add_argument("--out", type=Path, required=True, help="output folder: ws.npz, reconstructions/*.png, metrics.csv")
    ap.add_argument("--space", choices=["w", "w+"], default=None)
    ap.add_argument("--steps", type=int, default=None, help="most optimisation steps per image")
    ap.add_argument("--official", action="store_true", help="the official projector's schedule (1000 steps)")
    ap.add_argument("--init", choices=["encoder", "w_avg"], default=None)
    ap.add_argument("--vgg16", type=Path, default=None, help="torchvision vgg16 state dict for VGG16-LPIPS")
    ap.add_argument("--lpips", type=Path, default=None, help="LPIPS linear layer weights (lin0..lin4)")
    ap.add_argument("--batch-size", type=int, default=None)
    add_device(ap, help="cpu, cuda, cuda:1 (default: CUDA when present)")
    ap.add_argument("--no-cache", action="store_true")
    add_threads(ap, default=None, help="torch CPU threads (per Ray task with --executor ray)")
    add_executor(ap, executor_help="ray: each batch is a Ray task (pip install -e \".[ray]\")",
                 ray_address_help="the Ray cluster to join (ray.init's address: 'auto', 'ray://head:10001'); "
                 "default: a local Ray on this machine")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        executor = get_executor(args.executor, args.ray_address)
    except (ValueError, ImportError) as e:
        print(str(e), file=sys.stderr)
        return 2
    if not args.images.is_dir():
        print(f"--images {args.images}: not a folder", file=sys.stderr)
        return 2
    network = args.network or default_generator_path()
    device = get_device(args.device)
    G = stylegan2.load_generator(network, device=device, cpu_bf16="auto")  # as real mode runs it
    settings = ProjectionSettings.official() if args.official else ProjectionSettings()
    changes = {k: v for k, v in (("space", args.space), ("steps", args.steps), ("init", args.init)) if v is not None}
    if args.vgg16 or args.lpips:
        changes.update(vgg16_weights=str(args.vgg16) if args.vgg16 else None,
                       lpips_weights=str(args.lpips) if args.lpips else None)
    settings = settings.replace(**changes)
    proj, names, skipped = project_folder(G, args.images, args.out, settings=settings, cache=not args.no_cache,
                                          device=device, batch_size=args.batch_size, executor=executor,
                                          threads=args.threads or 1)
    if not names:
        print(f"no usable images in {args.images} ({len(skipped)} skipped)", file=sys.stderr)
        return 1
    m = proj.metrics
    ok = np.array([not f for f in m["failed"]])
    mean_psnr = np.mean(m["psnr"][ok]) if ok.any() else float("nan")
    print(f"projected {len(names)} images into {settings.space} of {network} "
          f"({int(m['cached'].sum())} from cache, {int((~ok).sum())} failed, {len(skipped)} skipped) "
          f"in {proj.info['wall_seconds']:.1f} s; mean PSNR {mean_psnr:.2f} dB, "
          f"mean steps {m['steps'].mean():.0f}; wrote {args.out}")
    return 0
