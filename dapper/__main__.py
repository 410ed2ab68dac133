"""``python -m dapper <command> [args]``: one front door for the study's command-line tools.

Each command lives in its own module with a ``main(argv: list[str] | None) -> int | None``;
modules are imported only when their command is used, so one missing or heavy module never
breaks the others.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "report": ("dapper.report", "run the notebooks with papermill and rebuild reports/index.md"),
    "status": ("dapper.study.status", "the README's status from the results files (--write updates README.md)"),
    "project": ("dapper.inversion.projection", "project real images into the generator's W space"),
    "augment": ("dapper.augment", "write synthetic training images for a fold"),
    "experiments": ("dapper.study.experiments", "run the five-fold study (resumable) and write its tables"),
    "noise-curve": ("dapper.study.noise_curve",
                    "the world's ceiling (renderer conditions) and the label-noise curve"),
    "filter-study": ("dapper.study.filter_study", "the paper's synthetic images with and without the method's filter"),
    "settings-sweep": ("dapper.study.settings_sweep",
                       "synthetic share of a batch and images per real one, on the ceiling, chosen on training folds"),
    "train-gan": ("dapper.study.source_gan", "train a StyleGAN2 (resumable, in legs) on toycars or your images"),
    "gan-eval": ("dapper.study.gan_eval", "measure a source generator: FD ratio, pose coverage, identity kept"),
    "encoder": ("dapper.inversion.encoder", "train the encoder that starts projection for a generator"),
    "world-calibration": ("dapper.study.world_calibration", "measure the embedded world against its 64 px instruments"),
    "oracles": ("dapper.judges.oracles", "train or measure the evaluation oracles (never feed the method)"),
    "annotators": ("dapper.judges.annotators", "train or measure the method's pose annotator and vehicle detector"),
    "perceptual": ("dapper.inversion.perceptual", "train the toycars perceptual network used by projection"),
    "classify": ("dapper.classify", "pretrain the embedded classifier on source renders"),
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
    module_name = COMMANDS[name][0]
    module = importlib.import_module(module_name)
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
