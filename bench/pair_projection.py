"""Pair dapper projection results with the official schedule's, image by image, across bench runs.

    python bench/pair_projection.py bench/results/projection_quality_gpu.json bench/results/projection_cpu*.json

The first file must hold an official run (``bench/projection.py``, e.g. with ``--quality-only`` on
a GPU for many images); each further file's dapper run is compared with it on the images both
hold (the held-out views come in the same order in every run with the same ``--seed``). Writes the
paired differences (dapper minus official: mean and 95% t interval for PSNR and perceptual
distance; identity kept by both, by one, by neither) into each further file as
``paired_vs_official`` and prints them. Runs on different devices differ slightly in their
official numbers (float arithmetic); the first file's are used for every pairing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from projection import paired_vs_official  # noqa: E402


def main(argv=None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) < 2:
        print(__doc__)
        return 2
    ref_path, others = Path(args[0]), [Path(a) for a in args[1:]]
    ref = json.loads(ref_path.read_text())
    official = next((r for r in ref["runs"] if r["method"].startswith("official")), None)
    if official is None:
        raise SystemExit(f"{ref_path} holds no official run")
    off = official["per_image"]
    for path in others:
        data = json.loads(path.read_text())
        if data.get("generator_hash") and ref.get("generator_hash") and data["generator_hash"] != ref["generator_hash"]:
            print(f"skip {path}: another generator than {ref_path}")
            continue
        mine = next(r for r in data["runs"] if r["method"].startswith("dapper"))["per_image"]
        k = min(len(off["psnr"]), len(mine["psnr"]))
        out = {"source": f"official schedule from {ref_path.as_posix()} ({official['method']}), first {k} images",
               **paired_vs_official(mine, off, k)}
        data["paired_vs_official"] = out
        data.pop("paired_vs_official_40", None)
        path.write_text(json.dumps(data, indent=1) + "\n")
        print(f"{path.name}: {k} images, PSNR {out['psnr']['mean']:+.2f} [{out['psnr']['low']:+.2f}, "
              f"{out['psnr']['high']:+.2f}] dB, perceptual {out['perceptual']['mean']:+.4f} "
              f"[{out['perceptual']['low']:+.4f}, {out['perceptual']['high']:+.4f}], identity kept "
              f"{out['identity']['both'] + out['identity']['only_dapper']} vs "
              f"{out['identity']['both'] + out['identity']['only_official']} ({out['identity']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
