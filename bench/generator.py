"""Generator speed and memory: dapper fast path vs reference path (vs the official code).

    python bench/generator.py --res 64 256 --batch 1 4 --device cpu
    python bench/generator.py --official /tmp/sg2ada --res 64 256 --batch 1 4

For every device x resolution x batch size it builds one generator with random weights and times
``G(z, c, noise_mode="const")`` under ``torch.no_grad``: images/s (median over ``--repeats``
timed calls after ``--warmup`` calls; also the best call) and peak memory.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``
(tensor memory only). On the CPU the process resident-set high-water mark (VmHWM, reset before
each measurement by writing 5 to /proc/self/clear_refs) minus the resident set before the
measurement, after returning freed heap to the OS with malloc_trim; where clear_refs is not
writable, the growth of ``resource.getrusage().ru_maxrss`` is reported instead (a lower bound
once an earlier run has raised the high-water mark). The method is printed with the table.

``--official PATH`` points at a local checkout of stylegan2-ada-pytorch (its ``training`` and
``torch_utils`` packages are imported from there, for this process only). The official
``Generator`` is built with the same init kwargs, gets dapper's weights through
``load_state_dict(strict=True)`` (so parameter names are checked too), and the bench reports the
largest absolute difference of the two outputs and the speed ratio dapper/official, timing the
two alternately so that a busy machine slows both alike. On the CPU the official code runs its
reference ops; on CUDA it compiles and uses its own plugins.

Network configuration per resolution follows the official configs (``paper256``/``paper512``):
z = w = 512, 8 mapping layers, ``channel_base`` 16384 up to 256 px and 32768 above,
``channel_max`` 512; override with ``--channel-base``/``--channel-max``. ``--mixed`` adds runs
with ``num_fp16_res=4, conv_clamp=256`` (the official mixed precision; used on CUDA only).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dapper.stylegan2 import ops  # noqa: E402
from dapper.stylegan2.networks import Generator  # noqa: E402


def generator_kwargs(res: int, channel_base: int | None, channel_max: int, mixed: bool) -> dict:
    base = channel_base or (16384 if res <= 256 else 32768)
    syn = dict(channel_base=base, channel_max=channel_max, num_fp16_res=4 if mixed else 0,
               conv_clamp=256 if mixed else None)
    return dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                mapping_kwargs=dict(num_layers=8), synthesis_kwargs=syn)


# ---------------------------------------------------------------------------------------------
# Peak memory


class CpuPeak:
    """RSS high-water mark above the RSS at ``start()``, in bytes."""

    def __init__(self):
        self.method = "VmHWM-after-clear_refs"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.method = "ru_maxrss-delta (lower bound)"
        try:
            self._trim = ctypes.CDLL("libc.so.6").malloc_trim
        except OSError:
            self._trim = None

    @staticmethod
    def _status_kb(field: str) -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def start(self):
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        if self.method.startswith("VmHWM"):
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._base = self._status_kb("VmRSS")
        else:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def peak(self) -> int:
        if self.method.startswith("VmHWM"):
            return max(self._status_kb("VmHWM") - self._base, 0) * 1024
        return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._base, 0) * 1024


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(runners: dict, z, c, device, warmup: int, repeats: int, cpu_peak: CpuPeak) -> dict:
    """Time each runner (name -> callable(z, c)); calls alternate so load hits all alike."""
    out = {name: {"times": []} for name in runners}
    for name, fn in runners.items():
        # peak memory first, on a run of its own
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        else:
            cpu_peak.start()
        with torch.no_grad():
            fn(z, c)
        _sync(device)
        if device.type == "cuda":
            out[name]["peak_bytes"] = torch.cuda.max_memory_allocated(device) - base
        else:
            out[name]["peak_bytes"] = cpu_peak.peak()
        with torch.no_grad():
            for _ in range(max(warmup - 1, 0)):
                fn(z, c)
    for _ in range(repeats):
        for name, fn in runners.items():
            _sync(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                fn(z, c)
            _sync(device)
            out[name]["times"].append(time.perf_counter() - t0)
    for name in runners:
        out[name]["images_per_s"] = z.shape[0] / statistics.median(out[name]["times"])
        out[name]["images_per_s_best"] = z.shape[0] / min(out[name]["times"])
    return out


# ---------------------------------------------------------------------------------------------


def load_official(path: str):
    path = str(Path(path).expanduser().resolve())
    if not (Path(path) / "training" / "networks.py").is_file():
        raise SystemExit(f"--official {path}: no training/networks.py there; pass a checkout of "
                         "stylegan2-ada-pytorch")
    sys.path.insert(0, path)
    from training import networks as official  # noqa: PLC0415

    return official


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--res", type=int, nargs="+", default=[64, 256, 512])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--device", nargs="+", default=None,
                   help="cpu and/or cuda (default: cpu, plus cuda when present)")
    p.add_argument("--impl", nargs="+", default=["fast", "ref"], choices=["fast", "ref"])
    p.add_argument("--official", metavar="PATH", default=None)
    p.add_argument("--mixed", action="store_true", help="also run num_fp16_res=4 (CUDA only)")
    p.add_argument("--channel-base", type=int, default=None)
    p.add_argument("--channel-max", type=int, default=512)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the rows as JSON")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    official = load_official(args.official) if args.official else None
    cpu_peak = CpuPeak()
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CPU memory: {cpu_peak.method}, CUDA memory: max_memory_allocated")
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    header = (f"{'device':6} {'prec':5} {'res':>4} {'batch':>5} {'runner':14} {'img/s':>8} "
              f"{'best':>8} {'peak MiB':>9} {'x off.':>7} {'x best':>7} {'max|diff|':>9}")
    print(header)
    print("-" * len(header))
    for dev_name in devices:
        device = torch.device(dev_name)
        for mixed in [False, True] if (args.mixed and device.type == "cuda") else [False]:
            for res in args.res:
                kwargs = generator_kwargs(res, args.channel_base, args.channel_max, mixed)
                torch.manual_seed(0)
                G = Generator(**kwargs).eval().requires_grad_(False).to(device)
                with torch.no_grad():  # non-zero noise strengths and biases, like a trained net
                    for name, t in G.named_parameters():
                        if name.endswith(("noise_strength", ".bias")) and "affine" not in name:
                            t.normal_(0, 0.1)
                runners = {}
                for impl in args.impl:
                    def run(z, c, impl=impl):
                        with ops.use_impl(impl):
                            return G(z, c, noise_mode="const")
                    runners[f"dapper-{impl}"] = run
                G_off = None
                if official is not None:
                    G_off = official.Generator(**kwargs).eval().requires_grad_(False).to(device)
                    G_off.load_state_dict(G.state_dict(), strict=True)
                    runners["official"] = lambda z, c: G_off(z, c, noise_mode="const")
                for batch in args.batch:
                    gen = torch.Generator().manual_seed(batch)
                    z = torch.randn([batch, 512], generator=gen).to(device)
                    c = torch.zeros([batch, 0], device=device)
                    diff = {}
                    if G_off is not None:
                        with torch.no_grad():
                            ref = G_off(z, c, noise_mode="const").float()
                            for name, fn in runners.items():
                                if name != "official":
                                    diff[name] = (fn(z, c).float() - ref).abs().max().item()
                    # CUDA: torch.compile and the official plugins build on the first calls
                    warmup = args.warmup if device.type == "cpu" else max(args.warmup, 3)
                    result = measure(runners, z, c, device, warmup, args.repeats, cpu_peak)
                    off = result.get("official")
                    for name, r in result.items():
                        # ratio of medians, and of best times (less sensitive to other jobs)
                        ratio = r["images_per_s"] / off["images_per_s"] if off else None
                        ratio_best = (r["images_per_s_best"] / off["images_per_s_best"]
                                      if off else None)
                        row = dict(device=dev_name, precision="mixed" if mixed else "fp32",
                                   res=res, batch=batch, runner=name,
                                   images_per_s=r["images_per_s"],
                                   images_per_s_best=r["images_per_s_best"],
                                   peak_mib=r["peak_bytes"] / 2**20, speed_vs_official=ratio,
                                   speed_vs_official_best=ratio_best,
                                   max_abs_diff=diff.get(name), times_s=r["times"],
                                   channel_base=kwargs["synthesis_kwargs"]["channel_base"])
                        rows.append(row)
                        print(f"{dev_name:6} {row['precision']:5} {res:>4} {batch:>5} {name:14} "
                              f"{row['images_per_s']:8.2f} {row['images_per_s_best']:8.2f} "
                              f"{row['peak_mib']:9.1f} "
                              f"{'' if ratio is None else f'{ratio:.2f}':>7} "
                              f"{'' if ratio_best is None else f'{ratio_best:.2f}':>7} "
                              f"{'' if name not in diff else f'{diff[name]:.1e}':>9}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(dict(torch=torch.__version__,
                                                   threads=torch.get_num_threads(),
                                                   cpu_memory=cpu_peak.method, rows=rows),
                                              indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
