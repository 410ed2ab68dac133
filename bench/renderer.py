"""toycars renderer throughput: images/s in one process and with a pool of workers.

    python bench/renderer.py                 # 64 px, 1 and 2 workers, 1000 images each
    python bench/renderer.py --size 64 128 --workers 1 2 4 --n 2000

Renders source images (random body, pose, colour and background; ``source_item(seed, i)``)
exactly as ``source_dataset`` does: per-image work plus, for more than one worker, the pool
start-up and the copy of results back. Reports images/s and ms per image; the target is >= 300
images/s on 2 cores at 64 px (>= 150 in a single process). Other jobs on the machine slow the
wall-clock numbers down (the load average is printed alongside); CPU milliseconds per image
(this process plus its workers) are not, so ``1000 * cores / cpu_ms`` is what idle cores give.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dapper.data import toycars  # noqa: E402


def _cpu_seconds() -> float:
    # This process plus reaped children (the pool's workers, once it has closed).
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def throughput(n: int, size: int, workers: int, seed: int = 12345) -> tuple[float, float]:
    """(images per wall-clock second, CPU milliseconds per image)."""
    toycars._render_ranges(seed, 0, 20, size, 1)  # warm caches and imports
    cpu0, start = _cpu_seconds(), time.perf_counter()
    toycars._render_ranges(seed, 0, n, size, workers, chunk=max(50, n // (8 * workers)))
    wall = time.perf_counter() - start
    return n / wall, 1000 * (_cpu_seconds() - cpu0) / n


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, nargs="+", default=[64])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)
    rows = []
    print(f"cpus={os.cpu_count()} load_avg_before={os.getloadavg()[0]:.2f}")
    print(f"{'size':>5} {'workers':>7} {'images/s':>9} {'cpu ms/image':>13}")
    for size in args.size:
        for w in args.workers:
            rate, cpu_ms = throughput(args.n, size, w)
            rows.append({"size": size, "workers": w, "images_per_s": round(rate, 1),
                         "cpu_ms_per_image": round(cpu_ms, 2), "n": args.n})
            print(f"{size:>5} {w:>7} {rate:>9.1f} {cpu_ms:>13.2f}")
    print(f"load_avg_after={os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
