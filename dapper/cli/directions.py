"""``python -m dapper directions``: notebook 02's direction discovery (sample, fit the candidates, the
method's choice with its own instruments, the oracles' evaluation, the report and Figure 5), with
the same results files (``directions.csv``, ``directions_by_coefficient.csv``, ``fig5_rotation.md``,
``rotation.csv``), figure (``fig5_rotation.png``) and stored chosen directions as the notebook."""

from __future__ import annotations

import pandas as pd
import torch

from dapper import directions as dd
from dapper import instruments, plots
from dapper.cli.options import add_executor, add_profile, add_study_world, command_parser, study_models
from dapper.executor import get_executor
from dapper.inversion.projection import ProjectionSettings
from dapper.study import direction_study as ds
from dapper.study.dataset_images import source_generator
from dapper.study.direction_eval import heldout_targets
from dapper.study.params import check_params
from dapper.utils import display_path, get_device, reports_dir

__all__ = ["main"]

MODELS = ("vehicle_detector", "pose_annotator", "vgg16_weights", "lpips_weights")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("directions", "Fit the pose direction and its baselines, let the method choose with its "
                                          "own instruments, measure every edit with the oracles and draw Figure 5 "
                                          "(notebook 02).")
    add_profile(parser)
    add_study_world(parser, MODELS, classifier=False)
    add_executor(parser, executor_help="ray: projection batches as Ray tasks",
                 ray_address_help="with the ray executor: the cluster to join (e.g. 'auto'); default: a local Ray")
    args = parser.parse_args(argv)
    models = study_models(args, MODELS)
    check_params(args.profile, args.dataset, args.data_root, args.network, args.classes, args.executor,
                 args.ray_address, **models)
    device = get_device()
    print(f"profile={args.profile}, dataset={args.dataset}, device={device}")
    runner = get_executor(args.executor, args.ray_address)
    torch.set_grad_enabled(False)
    cfg = dd.profile_settings(args.profile, args.dataset)
    G, G_path = source_generator(args.network, device)
    detector = instruments.load_vehicle_detector(args.vehicle_detector or "embedded", device)
    annotator = instruments.load_pose_estimator(args.pose_annotator or "embedded", device)
    if args.dataset != "toycars":
        print(instruments.describe(args.vehicle_detector, args.pose_annotator))
    print(ds.generator_line(G, G_path))

    settings = ProjectionSettings(steps=cfg["projection_steps"], vgg16_weights=args.vgg16_weights,
                                  lpips_weights=args.lpips_weights)
    targets = heldout_targets(G, args.dataset, cfg["n_eval_per_class"], args.data_root, classes=args.classes,
                              projection_settings=settings, executor=runner)
    reference_yaw = dd.circular_mean_deg(annotator.predict(targets.images))
    print(targets.source)
    print(f"reference yaw (annotator, circular mean): {reference_yaw:.1f} deg")

    samples = dd.annotate_samples(G, cfg["n_samples"], detector, annotator, cfg["sample_seed"])
    print(f"{len(samples)} generated, {samples.accepted.mean():.0%} accepted by the vehicle detector")
    directions = dd.fit_directions(G, samples, annotator, reference_yaw, n_calibration=cfg["n_calibration"],
                                   calibration_rounds=cfg["calibration_rounds"], methods=cfg["methods"])
    with pd.option_context("display.width", 200, "display.max_columns", 40):
        print(ds.candidates_table(directions).to_string(index=False))
        choice = dd.choose_direction(G, directions, samples, detector, annotator, reference_yaw, cfg)
        print("\n".join(choice.describe()))
        print(choice.ranked().to_string(index=False))

        generator = display_path(G_path)
        summary, per_image = ds.evaluate_choice(G, choice, targets, cfg, args.dataset, annotator, generator=generator)
        ds.write_evaluation(summary, per_image)
        print(ds.summary_view(summary).to_string(index=False))
    lines = ds.report_lines(summary, choice, args.dataset)
    print("\n".join(lines))
    used = instruments.describe(args.vehicle_detector or "embedded", args.pose_annotator or "embedded")
    ds.write_report(lines, generator, targets.source, used)
    for path in ds.save_chosen_directions(G, choice, args.profile):
        print(f"stored {display_path(path)}")

    fig5 = ds.figure5_data(G, choice, targets, annotator, args.dataset)
    print("\n".join(ds.write_figure5(fig5)))
    plots.fig5_rotation(fig5.images, fig5.table, fig5.coefficients, yaw_label=fig5.yaw_label,
                        path=reports_dir("figures") / "fig5_rotation.png")
    return 0
