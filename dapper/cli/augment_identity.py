"""``python -m dapper augment-identity``: which edits keep the vehicle's identity
(:func:`dapper.study.augment_eval.identity_study`), written to the same files as notebook 03
(``augment_identity.csv`` and ``augment_identity.md``). toycars only: real mode has no identity oracle."""

from __future__ import annotations

import pandas as pd
import torch

from dapper.cli.options import add_executor, add_profile, add_study_world, add_threads, command_parser, study_models
from dapper.executor import get_executor
from dapper.study.augment_eval import identity_study, write_identity_outputs
from dapper.study.config import config_from_params, model_sources
from dapper.study.params import check_params
from dapper.stylegan2 import load_generator
from dapper.utils import default_generator_path

__all__ = ["main"]

MODELS = ("vehicle_detector", "pose_annotator", "vgg16_weights", "lpips_weights")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("augment-identity", "Edit held-out target views as the augmentation does and let the "
                                                "oracles read what each edit kept (notebook 03, toycars only).")
    add_profile(parser)
    add_study_world(parser, MODELS)
    parser.add_argument("--pivotal-steps", type=int, default=None,
                        help="pivotal tuning steps per class; default: 20 quick, 100 full; 0: no pivotal-tuned rows")
    add_executor(parser, executor_help="ray: projection batches as Ray tasks",
                 ray_address_help="with the ray executor: the cluster to join (e.g. 'auto'); default: a local Ray")
    add_threads(parser, default=2, help="torch threads, at most (notebook 03 uses 2)")
    args = parser.parse_args(argv)
    if args.dataset != "toycars":
        parser.error("the identity study needs the toycars oracles: --dataset toycars")
    models = study_models(args, MODELS)
    check_params(args.profile, args.dataset, args.data_root, args.network, args.classes, args.executor,
                 args.ray_address, args.classifier, **models)
    torch.set_num_threads(min(args.threads, torch.get_num_threads()))
    config = config_from_params(args.profile, args.dataset, args.data_root, args.network, classes=args.classes,
                                classifier=args.classifier, **models)
    print("; ".join(f"{k}: {v}" for k, v in model_sources(config).items()))
    G = load_generator(args.network or default_generator_path()).eval()
    study = identity_study(G, config, pivotal_steps=args.pivotal_steps,
                           executor=get_executor(args.executor, args.ray_address))
    if study.pivotal_summary():
        print(study.pivotal_summary())
    print(write_identity_outputs(study.table))
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(study.table.drop(columns=["generator", "generator_hash", "kimg"]).round(3).to_string(index=False))
    return 0
