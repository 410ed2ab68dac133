"""The options several commands share, written once, so that an option means the same (name, type,
default, choices) in every command that takes it. Help texts a command words its own way are passed in."""

from __future__ import annotations

import argparse
from pathlib import Path

from dapper.executor import EXECUTORS
from dapper.study.params import DATASETS, PROFILES, REAL_MODE_MODELS

__all__ = ["command_parser", "add_profile", "add_replace_full", "add_workers", "add_threads", "add_seed", "add_scale",
           "add_device", "add_executor", "add_model_training", "add_study_world", "study_models", "print_study_run"]


def command_parser(command: str, description: str | None, as_written: bool = False) -> argparse.ArgumentParser:
    """The parser of ``python -m dapper <command>``; ``as_written``: show ``description`` (a module's
    docstring, with its usage examples) with its own line breaks."""
    return argparse.ArgumentParser(
        prog=f"python -m dapper {command}", description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter if as_written else argparse.HelpFormatter)


def add_profile(parser: argparse.ArgumentParser, default: str = "quick") -> None:
    parser.add_argument("--profile", choices=PROFILES, default=default)


def add_replace_full(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replace-full", action="store_true",
                        help="let a quick call overwrite the tables a full-profile call wrote (refused otherwise)")


def add_workers(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--workers", type=int, default=2, help=help)


def add_threads(parser: argparse.ArgumentParser, default: int | None = 1, help: str | None = None) -> None:
    parser.add_argument("--threads", type=int, default=default, help=help)


def add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0)


def add_scale(parser: argparse.ArgumentParser, help: str = "shrink the data (smoke test)") -> None:
    parser.add_argument("--scale", type=float, default=1.0, help=help)


def add_device(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument("--device", default=None, help=help)


def add_executor(parser: argparse.ArgumentParser, executor_help: str, ray_address_help: str) -> None:
    """``--executor`` and the ``--ray-address`` that only Ray takes (:func:`dapper.executor.check_executor`)."""
    parser.add_argument("--executor", choices=EXECUTORS, default="local", help=executor_help)
    parser.add_argument("--ray-address", default=None, help=ray_address_help)


def add_study_world(parser: argparse.ArgumentParser, models: tuple[str, ...], classifier: bool = True) -> None:
    """The notebooks' world parameters: ``--dataset``, ``--data-root``, ``--network``, ``--classes``,
    ``--classifier`` (unless ``classifier`` is false: a command that trains no classifier) and one
    option per real-mode model of ``models`` (names of :data:`dapper.study.params.REAL_MODE_MODELS`,
    ``--vgg16-weights`` for ``vgg16_weights``); unset means the embedded world's, as a notebook's None."""
    parser.add_argument("--dataset", choices=DATASETS, default="toycars")
    parser.add_argument("--data-root", default=None, help=REAL_MODE_MODELS["data_root"][0])
    parser.add_argument("--network", default=None, help=REAL_MODE_MODELS["network"][0] + "; default: the shipped "
                        "source GAN")
    parser.add_argument("--classes", nargs="+", default=None,
                        help="real mode: class names, look-alike pairs in consecutive places; default: the ten "
                             "default classes")
    if classifier:
        parser.add_argument("--classifier", default=None,
                            help="a timm model name; default: resnext50_32x4d in real mode, the toycars ResNeXt "
                                 "otherwise")
    for name in models:
        parser.add_argument("--" + name.replace("_", "-"), default=None, help=REAL_MODE_MODELS[name][0])


def study_models(args: argparse.Namespace, models: tuple[str, ...]) -> dict:
    """The real-mode model parameters :func:`add_study_world` added, by their notebook names."""
    return {name: getattr(args, name) for name in models}


def add_model_training(parser: argparse.ArgumentParser, out_help: str) -> None:
    """``--out``, ``--scale``, ``--threads`` and ``--seed`` of a command that trains one model file."""
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    add_scale(parser)
    add_threads(parser)
    add_seed(parser)


def print_study_run(out: dict) -> None:
    """What a study command wrote (``out``: its ``statements`` and ``run`` record), then how many runs
    this call made and how long it took."""
    print(out["statements"])
    last = out["run"]["last"]
    print(f"{last['runs_made']} runs made in {last['wall_seconds']:.0f} s")
