"""``python -m dapper gan-eval``: measure a source generator (:mod:`dapper.study.gan_eval`) and draw
its figure."""

from __future__ import annotations

import argparse
import json

from dapper import plots, stylegan2
from dapper.inversion.pivotal import PivotalSettings
from dapper.study import gan_eval
from dapper.utils import default_generator_path, get_device, reports_dir, weights_hash

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    # without prog, argparse names the program after sys.argv[0] (``__main__.py`` under python -m dapper)
    parser = argparse.ArgumentParser(description="Evaluate the source GAN (Frechet distance, pose coverage, identity).")
    parser.add_argument("--network", default=None, help="generator checkpoint (default: the shipped source GAN)")
    parser.add_argument("--n", type=int, default=5000, help="generated images (and source renders per half)")
    parser.add_argument("--n-per-class", type=int, default=20, help="held-out target views per class to project")
    parser.add_argument("--no-projection", action="store_true")
    parser.add_argument("--pivotal-steps", type=int, default=100,
                        help="also identity kept after pivotal tuning per view around its W projection, with this "
                             "many steps (the tuned conditions' 100 by default); 0: not measured")
    args = parser.parse_args(argv)
    network = str(args.network or default_generator_path())
    G = stylegan2.load_generator(network, device=get_device())
    pivotal = PivotalSettings(steps=args.pivotal_steps) if args.pivotal_steps > 0 else None
    result = gan_eval.evaluate(G, n=args.n, with_projection=not args.no_projection, n_per_class=args.n_per_class,
                               pivotal=pivotal)
    csv = gan_eval.write_results(result, network, generator_hash=weights_hash(G)[:16],
                                 kimg=gan_eval.checkpoint_kimg(network))
    fig = reports_dir("figures") / "fig_source_gan.png"
    plots.fig_source_gan(result, gan_eval.training_log(network), path=fig)
    summary = {k: v for k, v in result.items() if k not in ("samples", "yaw_hist_generated", "yaw_hist_source")}
    print(json.dumps(summary, indent=1, default=float))
    print(f"wrote {csv} and {fig}")
    return 0
