"""``python -m dapper saliency``: the saliency study (:mod:`dapper.study.saliency_study`), with the same
results files and figures as notebook 05."""

from __future__ import annotations

import pandas as pd

from dapper import plots
from dapper.cli.options import add_executor, add_profile, add_seed, add_study_world, command_parser, study_models
from dapper.study.config import model_sources
from dapper.study.inputs import prepare_inputs
from dapper.study.params import check_params
from dapper.study.saliency import CAM_METHODS
from dapper.study.saliency_study import (
    describe_plan,
    figure7_data,
    run_saliency_study,
    saliency_config,
    saliency_settings,
    saliency_text,
    skip_if_stored,
    summary_view,
    write_saliency_outputs,
)
from dapper.utils import get_device, reports_dir

__all__ = ["main"]

MODELS = ("classifier_weights", "vehicle_detector", "pose_annotator", "vgg16_weights", "lpips_weights")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("saliency", "Grad-CAM maps of the real-only and the augmented classifier of each fold, "
                                        "measured and compared (notebook 05).")
    add_profile(parser)
    add_study_world(parser, MODELS)
    parser.add_argument("--augmented", default="real+perturb+rotate",
                        help="the augmented condition compared with 'real'")
    parser.add_argument("--cam-method", choices=CAM_METHODS, default="gradcam")
    add_seed(parser)
    add_executor(parser, executor_help="ray: projection batches (and study runs) as Ray tasks",
                 ray_address_help="with the ray executor: the cluster to join (e.g. 'auto'); default: a local Ray")
    args = parser.parse_args(argv)
    models = study_models(args, MODELS)
    check_params(args.profile, args.dataset, args.data_root, args.network, args.classes, args.executor,
                 args.ray_address, args.classifier, **models)
    device = get_device()
    print(f"profile={args.profile}, dataset={args.dataset}, device={device}")
    config = saliency_config(args.profile, args.dataset, args.data_root, args.network, augmented=args.augmented,
                             classes=args.classes, classifier=args.classifier, seed=args.seed,
                             executor=args.executor, ray_address=args.ray_address, **models)
    print("; ".join(f"{k}: {v}" for k, v in model_sources(config).items()))
    settings = saliency_settings(config, condition=args.augmented, method=args.cam_method)
    print(describe_plan(config, settings))
    inputs = prepare_inputs(config, progress=True, skip_images=skip_if_stored(config, settings))
    if inputs.skipped:
        print(inputs.skipped)
    study = run_saliency_study(inputs, settings, device=device, progress=True)
    print(study.accuracy.to_string())
    figures = reports_dir("figures")
    fig7 = figure7_data(inputs, study, settings)
    plots.fig7_gradcam(fig7.images, fig7.cams, fig7.masks, row_labels=fig7.row_labels, notes=fig7.notes,
                       groups_per_row=2, caption=fig7.caption, path=figures / "fig7_gradcam.png")
    summary = write_saliency_outputs(study, settings, inputs)
    plots.fig7_saliency_differences(summary[summary.layer == settings.primary],
                                    path=figures / "saliency_differences.png")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary_view(summary).to_string(index=False))
    print(saliency_text(summary, study, settings))
    return 0
