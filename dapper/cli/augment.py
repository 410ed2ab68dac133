"""``python -m dapper augment``: synthetic training images for a fold, from stored projections
(:mod:`dapper.augment`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from dapper import stylegan2
from dapper.augment import (
    COMPOSITIONS,
    METHODS,
    RESPONSES,
    AugmentSettings,
    augment_images,
    pose_models,
    read_projections,
    write_dataset,
)
from dapper.cli.options import add_device, add_seed, command_parser
from dapper.utils import default_generator_path, get_device

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("augment",
                            "Write synthetic training images (perturbed / rotated projections) with a manifest.")
    parser.add_argument("--network", default=None, help="generator checkpoint (default: the shipped source GAN)")
    parser.add_argument("--projections", required=True,
                        help=".npz with ws [N, num_ws, w_dim], keys [N] (image content keys), optional labels [N] "
                             "and test_keys (keys no synthetic image may come from)")
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--k", type=int, default=AugmentSettings.k, help="images per method per real image")
    parser.add_argument("--strength", type=float, default=AugmentSettings.strength, help="whitened W units")
    parser.add_argument("--layers", default=None, help="START:STOP rows of ws to perturb (default: all)")
    parser.add_argument("--coefficients", default=",".join(f"{c:g}" for c in AugmentSettings.coefficients))
    parser.add_argument("--units", choices=("degrees", "coefficient"), default=AugmentSettings.units)
    parser.add_argument("--compose", choices=COMPOSITIONS, default="generated",
                        help="generated: G(w'); residual: real + G(w') - G(w) (needs --images)")
    parser.add_argument("--images", default=None,
                        help=".npy of the real images, uint8 [N, R, R, 3] in the order of the projections")
    parser.add_argument("--profile", default="quick", help="profile used to fit the pose direction if needed")
    parser.add_argument("--fold", default=None, help="fold label recorded in the manifest")
    parser.add_argument("--test-keys", default=None, help="text file of test image keys (one per line)")
    add_seed(parser)
    parser.add_argument("--pose-check", action="store_true",
                        help="halve, then drop, rotations the embedded pose annotator reads missing their degrees")
    parser.add_argument("--response", choices=RESPONSES, default=AugmentSettings.response,
                        help="in degrees: ask through the direction's measured response, or each image through its "
                             "own (read by the embedded pose annotator; the study's setting)")
    add_device(parser)
    parser.add_argument("--no-png", action="store_true", help="skip the per-image PNG files")
    args = parser.parse_args(argv)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        parser.error(f"unknown method(s) {bad}; choose from {METHODS}")
    layers = tuple(int(v) for v in args.layers.split(":")) if args.layers else None
    settings = AugmentSettings(k=args.k, strength=args.strength, layers=layers, units=args.units, seed=args.seed,
                               coefficients=tuple(float(c) for c in args.coefficients.split(",")),
                               pose_check=args.pose_check, response=args.response)
    device = get_device(args.device)
    network = args.network or default_generator_path()
    G = stylegan2.load_generator(network, device=device, cpu_bf16="auto").eval()  # as real mode runs it
    ws, keys, labels, test_keys = read_projections(args.projections)
    if args.test_keys:
        test_keys += [line.strip() for line in Path(args.test_keys).read_text().splitlines() if line.strip()]
    direction, annotator = pose_models(G, methods, settings, args.profile, device=device)
    images = np.load(args.images) if args.images else None
    synthetic = augment_images(G, ws, keys, labels, methods, settings, direction, fold=args.fold,
                               test_keys=test_keys, progress=True, compose=args.compose, images=images,
                               pose_annotator=annotator)
    info = {"network": str(network), "projections": str(args.projections), "settings": asdict(settings),
            "methods": methods, "compose": args.compose, "fold": args.fold, "n_test_keys_checked": len(test_keys)}
    out = write_dataset(args.out, synthetic, info=info, png=not args.no_png)
    print(f"wrote {len(synthetic)} synthetic images from {len(keys)} real images to {out}")
    return 0
