"""Projection speed and quality: the official projector's schedule vs dapper's.

    python bench/projection.py                         # short default run (a few minutes on one CPU core)
    python bench/projection.py --n-official 10 --n-images 50 --json bench_projection.json
    python bench/projection.py --threads 1 --n-official 6 --n-images 40 --space w+ --steps 130   # 13x, better quality

Held-out toycars target images (``toycars.target_test_views``, every class, pickups included,
interleaved so the first images cover different classes) are projected into W of the generator
(default: the shipped source GAN) two ways, in the same process:

* **official**: :meth:`ProjectionSettings.official` (1000 Adam steps, lr 0.1 with ramps, latent
  noise, optimised noise maps, mean-w start, perceptual loss only), one image at a time (batch 1),
  on the first ``--n-official`` images;
* **dapper**: the default settings (encoder start, pixel + perceptual loss, early stop), all
  ``--n-images`` images in one batched call.

Both use the same perceptual network (the shipped toycars one unless ``--vgg16``/``--lpips`` are
given) and no cache. Reported per method: CPU and wall seconds per image, images per CPU second
(the process's CPU time: with ``--threads 1`` this is what one dedicated core would take, and it
stays fair when other jobs share the machine), mean steps, PSNR (dB),
perceptual distance, and identity agreement: the share of reconstructions that the evaluation
oracle (``dapper.judges.oracles.predict_identity``, never used by the method) assigns to the image's true
class (the oracle's accuracy on the originals is printed beside it). Quality is compared on the
images both methods projected; speed ratios are measured in this run, on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dapper.inversion.projection import ProjectionSettings, project_images  # noqa: E402


def heldout_images(n: int, seed: int, size: int):
    """First n held-out target views, classes interleaved (0, 1, ..., 9, 0, 1, ...)."""
    from dapper.data import toycars

    n_classes = len(toycars.TARGET_CLASSES)
    per_class = -(-n // n_classes)
    pool = toycars.target_test_views(per_class, seed=seed, size=size)
    order = np.argsort(np.arange(len(pool)) % per_class, kind="stable")[:n]
    return pool.images[order], pool.labels[order]


def summarise(name: str, proj, labels, oracle, wall: float, cpu: float) -> dict:
    from dapper.judges.oracles import predict_identity

    pred, _ = predict_identity(proj.reconstructions, oracle)
    m = proj.metrics
    n = len(labels)
    return {
        "method": name, "n": n, "wall_s": wall, "cpu_s": cpu, "wall_s_per_image": wall / n,
        "cpu_s_per_image": cpu / n, "images_per_cpu_s": n / cpu, "images_per_wall_s": n / wall,
        "mean_steps": float(np.mean(m["steps"])), "psnr": float(np.mean(m["psnr"])),
        "perceptual": float(np.mean(m["perceptual"])), "identity_agreement": float(np.mean(pred == labels)),
        "failed": int(sum(bool(f) for f in m["failed"])),
        "per_image": {"psnr": m["psnr"].tolist(), "perceptual": m["perceptual"].tolist(),
                      "steps": m["steps"].tolist(), "identity_kept": (pred == labels).tolist()},
    }


def paired_vs_official(mine: dict, official: dict, k: int) -> dict:
    """dapper against the official schedule on the first ``k`` images, image by image, from two
    runs' ``per_image`` results: PSNR and perceptual differences (dapper minus official; mean with
    its 95% t interval) and identity kept by both, by one, by neither."""
    from dapper.study.stats import mean_interval

    out = {key: dataclasses.asdict(mean_interval(np.asarray(mine[key][:k]) - np.asarray(official[key][:k])))
           for key in ("psnr", "perceptual")}
    kd, ko = np.asarray(mine["identity_kept"][:k], bool), np.asarray(official["identity_kept"][:k], bool)
    out["identity"] = {"both": int(np.sum(kd & ko)), "only_dapper": int(np.sum(kd & ~ko)),
                       "only_official": int(np.sum(~kd & ko)), "neither": int(np.sum(~kd & ~ko))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--network", type=Path, default=None, help="generator (default: the shipped source GAN)")
    ap.add_argument("--n-official", type=int, default=2, help="images projected with the official schedule")
    ap.add_argument("--n-images", type=int, default=20, help="images projected with dapper's settings")
    ap.add_argument("--official-steps", type=int, default=1000)
    ap.add_argument("--space", choices=["w", "w+"], default="w", help="dapper's space (official is always w)")
    ap.add_argument("--pixel-weight", type=float, default=None,
                    help="dapper's pixel-loss weight (default: ProjectionSettings'); lower trades PSNR for perceptual")
    ap.add_argument("--steps", type=int, default=None,
                    help="dapper's most steps per image (default: ProjectionSettings')")
    ap.add_argument("--early-stop-tol", type=float, default=None,
                    help="dapper's early-stop tolerance; 0 turns early stopping off")
    ap.add_argument("--seed", type=int, default=0, help="held-out view seed")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--vgg16", default=None)
    ap.add_argument("--lpips", default=None)
    ap.add_argument("--json", type=Path, default=None, help="write all numbers here")
    ap.add_argument("--quality-only", action="store_true",
                    help="project the official images in batches too (each image's result does not depend on "
                         "its batch), to compare quality on many images; no speed-up is reported")
    args = ap.parse_args(argv)
    if args.n_official > args.n_images:
        ap.error("--n-official must not exceed --n-images (quality is compared on the images both projected)")
    torch.set_num_threads(args.threads)

    from dapper.judges.oracles import load_identity_oracle, predict_identity
    from dapper.stylegan2 import load_generator
    from dapper.utils import default_generator_path, display_path

    network = args.network or default_generator_path()
    device = torch.device(args.device)
    G = load_generator(network, device=device)
    n_all = max(args.n_images, args.n_official)
    images, labels = heldout_images(n_all, args.seed, G.img_resolution)
    oracle = load_identity_oracle(device=device)
    orig_pred, _ = predict_identity(images, oracle)
    perceptual = dict(vgg16_weights=args.vgg16, lpips_weights=args.lpips)
    official = ProjectionSettings.official(steps=args.official_steps, **perceptual)
    ours = ProjectionSettings(space=args.space, **perceptual)
    if args.pixel_weight is not None:
        ours = ours.replace(pixel_weight=args.pixel_weight)
    if args.steps is not None:
        ours = ours.replace(steps=args.steps)
    if args.early_stop_tol is not None:
        ours = ours.replace(early_stop_tol=args.early_stop_tol or None)
    print(f"generator {display_path(network)}; {n_all} held-out target views; device {device}, "
          f"{args.threads} thread(s)")
    print(f"oracle accuracy on the originals: {np.mean(orig_pred[:args.n_images] == labels[:args.n_images]):.3f}")

    # Warm-up (w statistics, encoder, perceptual network, allocator) outside the timings.
    project_images(G, images[:1], settings=ours.replace(steps=2), cache=False, progress=False, device=device)
    project_images(G, images[:1], settings=official.replace(steps=2), cache=False, progress=False, device=device)

    runs = []
    if args.n_official:
        projs, t0, c0 = [], time.perf_counter(), time.process_time()
        if args.quality_only:
            projs.append(project_images(G, images[:args.n_official], settings=official, cache=False,
                                        progress=False, device=device))
        for i in range(0 if args.quality_only else args.n_official):  # batch 1, as the official projector works
            projs.append(project_images(G, images[i:i + 1], settings=official, cache=False, progress=False,
                                        device=device, batch_size=1))
            print(f"  official image {i + 1}/{args.n_official}: {projs[-1].metrics['seconds'][0]:.1f} s, "
                  f"PSNR {projs[-1].metrics['psnr'][0]:.2f}", flush=True)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        cat = projs[0]
        for p in projs[1:]:
            cat.reconstructions = torch.cat([cat.reconstructions, p.reconstructions])
            cat.metrics = {k: np.concatenate([cat.metrics[k], p.metrics[k]]) for k in cat.metrics}
        name = f"official (batch {projs[0].info['batch_size']})" if args.quality_only else "official (batch 1)"
        runs.append(summarise(name, cat, labels[:args.n_official], oracle, wall, cpu))
    t0, c0 = time.perf_counter(), time.process_time()
    mine = project_images(G, images[:args.n_images], settings=ours, cache=False, progress=False, device=device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    runs.append(summarise(f"dapper (batch {mine.info['batch_size']}, init {mine.info['init']})", mine,
                          labels[:args.n_images], oracle, wall, cpu))

    header = (f"{'method':<34}{'n':>4}{'cpu s/img':>10}{'img/cpu s':>10}{'wall s/img':>11}{'steps':>7}{'PSNR':>7}"
              f"{'percep':>8}{'ident':>7}")
    print("\n" + header + "\n" + "-" * len(header))
    for r in runs:
        print(f"{r['method']:<34}{r['n']:>4}{r['cpu_s_per_image']:>10.2f}{r['images_per_cpu_s']:>10.3f}"
              f"{r['wall_s_per_image']:>11.2f}{r['mean_steps']:>7.0f}{r['psnr']:>7.2f}{r['perceptual']:>8.4f}"
              f"{r['identity_agreement']:>7.2f}")
    from dapper.utils import weights_hash

    result = {"network": display_path(network), "generator_hash": weights_hash(G),
              "dapper_settings": ours.to_dict(),
              "official_settings": official.to_dict(),
              "device": str(device), "threads": args.threads, "runs": runs,
              "oracle_accuracy_originals": float(np.mean(orig_pred[:args.n_images] == labels[:args.n_images])),
              "cpu_count": os.cpu_count(), "torch": torch.__version__}
    if args.n_official:
        off = runs[0]
        k = args.n_official
        same = {"psnr": float(np.mean(mine.metrics["psnr"][:k])),
                "perceptual": float(np.mean(mine.metrics["perceptual"][:k])),
                "identity_agreement": float(np.mean(runs[1]["per_image"]["identity_kept"][:k]))}
        ratio = runs[1]["images_per_cpu_s"] / off["images_per_cpu_s"]
        ratio_wall = runs[1]["images_per_wall_s"] / off["images_per_wall_s"]
        result["same_images"] = {"n": k, "official": {key: off[key] for key in same}, "dapper": same}
        result["quality_only"] = args.quality_only
        if not args.quality_only:
            result["speedup_images_per_cpu_s"] = ratio
            result["speedup_images_per_wall_s"] = ratio_wall
            print(f"\nspeed-up, dapper vs official images/s: {ratio:.1f}x per CPU second, {ratio_wall:.1f}x per "
                  f"wall second (steps {off['mean_steps']:.0f} -> {runs[1]['mean_steps']:.0f})")
        print(f"on the {k} images both projected: PSNR {off['psnr']:.2f} -> {same['psnr']:.2f} dB, "
              f"perceptual {off['perceptual']:.4f} -> {same['perceptual']:.4f}, "
              f"identity agreement {off['identity_agreement']:.2f} -> {same['identity_agreement']:.2f}")
        result["paired_differences"] = paired = paired_vs_official(runs[1]["per_image"], off["per_image"], k)
        for key in ("psnr", "perceptual"):
            print(f"  {key}, dapper - official: {paired[key]['mean']:+.4f} "
                  f"[{paired[key]['low']:+.4f}, {paired[key]['high']:+.4f}] (95% t interval, {k} images)")
        print(f"  identity kept: both {paired['identity']['both']}, only dapper {paired['identity']['only_dapper']}, "
              f"only official {paired['identity']['only_official']}, neither {paired['identity']['neither']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
