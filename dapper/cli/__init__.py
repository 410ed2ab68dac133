"""``python -m dapper <command> [args]``: the one front door of the study's command-line tools.

Each command lives in its own module here (``dapper/cli/<command>.py``) with a
``main(argv: list[str] | None) -> int`` that parses its options and calls the library; the library
itself never parses a command line nor draws. Modules are imported only when their command is used,
so one missing or heavy module never breaks the others.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "report": ("dapper.cli.report", "run the notebooks with papermill and rebuild reports/index.md"),
    "status": ("dapper.cli.status", "the README's status from the results files (--write updates README.md)"),
    "project": ("dapper.cli.project", "project real images into the generator's W space"),
    "augment": ("dapper.cli.augment", "write synthetic training images for a fold"),
    "experiments": ("dapper.cli.experiments", "run the five-fold study (resumable) and write its tables"),
    "directions": ("dapper.cli.directions",
                   "fit the pose direction and baselines, the method's choice, the oracles' measures (notebook 02)"),
    "saliency": ("dapper.cli.saliency",
                 "Grad-CAM of the real-only and the augmented classifier per fold, compared (notebook 05)"),
    "augment-identity": ("dapper.cli.augment_identity",
                         "which edits keep the vehicle's identity, read by the oracles (notebook 03, toycars)"),
    "noise-curve": ("dapper.cli.noise_curve",
                    "the world's ceiling (renderer conditions) and the label-noise curve"),
    "filter-study": ("dapper.cli.filter_study", "the paper's synthetic images with and without the method's filter"),
    "settings-sweep": ("dapper.cli.settings_sweep",
                       "synthetic share of a batch and images per real one, on the ceiling, chosen on training folds"),
    "train-gan": ("dapper.cli.train_gan", "train a StyleGAN2 (resumable, in legs) on toycars or your images"),
    "gan-eval": ("dapper.cli.gan_eval", "measure a source generator: FD ratio, pose coverage, identity kept"),
    "encoder": ("dapper.cli.encoder", "train the encoder that starts projection for a generator"),
    "world-calibration": ("dapper.cli.world_calibration", "measure the embedded world against its 64 px instruments"),
    "oracles": ("dapper.cli.oracles", "train or measure the evaluation oracles (never feed the method)"),
    "annotators": ("dapper.cli.annotators", "train or measure the method's pose annotator and vehicle detector"),
    "perceptual": ("dapper.cli.perceptual", "train the toycars perceptual network used by projection"),
    "classify": ("dapper.cli.classify", "pretrain the embedded classifier on source renders"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: python -m dapper <command> [args]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines.append("\n`python -m dapper <command> --help` describes a command.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)
