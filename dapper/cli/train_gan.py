"""``python -m dapper train-gan``: train a StyleGAN2 (:mod:`dapper.stylegan2.train`), resumable and in
legs, on the toycars source set or a ``.npy`` of your images (:mod:`dapper.study.source_gan` names
the sources and feature networks a config may use)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from dapper.cli.options import add_device, command_parser
from dapper.study import source_gan
from dapper.stylegan2 import train as engine

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("train-gan", engine.__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="JSON file with training settings (TrainConfig fields)")
    parser.add_argument("--out", default=None, help="run folder (default runs/<config name>)")
    add_device(parser)
    parser.add_argument("--max-minutes", type=float, default=None, help="stop (saving) after this long; rerun resumes")
    parser.add_argument("--max-cpu-minutes", type=float, default=None,
                        help="stop (saving) after this much CPU time of the process (all threads); rerun resumes")
    parser.add_argument("--snapshot-minutes", type=float, default=None,
                        help="also snapshot (resume.pt, generator, log row) at least this often (wall minutes); "
                             "with --export, every snapshot also exports the generator and its training state "
                             "and records this leg in the generator's JSON (a run trained in legs)")
    parser.add_argument("--total-kimg", type=float, default=None, help="override the config's length")
    parser.add_argument("--init", default=None,
                        help="start a new run from another run's resume.pt or an exported *_state.safetensors "
                             "(networks and kimg; fresh optimisers)")
    parser.add_argument("--state-from", default=None, metavar="RESUME_PT",
                        help="write nothing but the training state of this resume.pt beside --export's generator, "
                             "which must be that run's EMA generator (for runs exported before states were)")
    parser.add_argument("--export", default=None,
                        help="when the run is complete, write its EMA generator here (e.g. checkpoints/source_gan_v2)")
    args = parser.parse_args(argv)
    cfg = engine.TrainConfig.from_json(args.config)
    if args.total_kimg is not None:
        cfg.total_kimg = args.total_kimg
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    device = torch.device(args.device) if args.device else None
    # recorded in the exported generator's JSON: how to make it again
    command = "python -m dapper train-gan " + " ".join(argv or sys.argv[1:])
    if args.state_from:
        if not args.export:
            parser.error("--state-from needs --export (the generator the state belongs to)")
        engine.write_state_of(cfg, args.state_from, args.export, command=command)
        return 0
    engine.train_and_export(cfg, out, export=args.export, command=command, snapshot_minutes=args.snapshot_minutes,
                            device=device, max_minutes=args.max_minutes, init=args.init,
                            max_cpu_minutes=args.max_cpu_minutes,
                            sources=source_gan.SOURCES, feature_nets=source_gan.FEATURE_NETS)
    return 0
