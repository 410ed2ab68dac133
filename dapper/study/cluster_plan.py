"""The study's work as tasks for a cluster, and the schedule Ray's first-come queue makes of them.

A study is two kinds of independent tasks (see :mod:`dapper.executor`): projection batches (every
training image a generative condition uses, ``projection steps x batch``) and fine-tuning runs
(one per scenario, condition, shot level and fold, ``FineTuneSettings.steps`` optimiser steps).
Given the seconds one step takes on one worker (measured by ``bench/ray_grid.py`` on the device at
hand), :func:`study_plan` gives the tasks, the work in hours and the hours on N workers when the
tasks are handed out longest first, each to the next free worker (what Ray does with tasks
submitted in that order and one task per worker).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from dapper.study.config import CONDITION_METHOD, projection_settings
from dapper.study.folds import make_folds, plan_runs, real_subset, run_steps

__all__ = ["run_steps", "longest_first", "projected_images", "list_schedule", "StudyTasks", "study_tasks",
           "study_plan"]


def longest_first(config, specs, n_classes: int) -> list:
    """``specs`` ordered by their steps, most first (ties keep their order): the order that lets a
    first-come queue finish soonest."""
    return sorted(specs, key=lambda s: -run_steps(config, s, n_classes))


def projected_images(config, n_classes: int, n_per_class: int) -> int:
    """How many distinct training images the study projects: the union over folds of the real
    subsets at the top shot level, for a pool of ``n_per_class`` images per class."""
    labels = np.repeat(np.arange(n_classes), n_per_class)
    top = max(config.shots)
    used = set()
    for f in config.fold_ids:
        train, _ = make_folds(labels, config.n_folds, config.seed)[f]
        used.update(real_subset(labels, train, top, f, config.seed).tolist())
    return len(used) * len(config.scenarios)


def list_schedule(durations, workers: int) -> float:
    """Finish time when ``durations`` are handed out in order, each to the worker free first."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    free = [0.0] * workers
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + float(d))
    return max(free) if durations else 0.0


@dataclass
class StudyTasks:
    """A study's tasks: the projection batches (images in each, all optimised for at most
    ``projection_steps`` steps) and the fine-tuning runs (optimiser steps of each, longest first)."""

    projection_batches: list[int]  # images per batch
    projection_steps: int  # optimisation steps per batch (the settings' most)
    runs: list[int]  # optimiser steps per run, longest first


def study_tasks(config, n_classes: int, n_per_class: int, projection_batch: int) -> StudyTasks:
    """The tasks of ``config``'s study on a pool of ``n_classes`` x ``n_per_class`` images."""
    generative = any(c in CONDITION_METHOD for c in config.conditions)
    n_images = projected_images(config, n_classes, n_per_class) if generative else 0
    batches = [min(projection_batch, n_images - a) for a in range(0, n_images, projection_batch)]
    steps = [run_steps(config, s, n_classes) for s in longest_first(config, plan_runs(config), n_classes)]
    return StudyTasks(batches, projection_settings(config).steps, steps)


def study_plan(tasks: StudyTasks, workers, step_seconds: float, batch_step_seconds: float) -> list[dict]:
    """Per number of workers: tasks, work hours and hours to finish (projection first, then the
    runs, as the study does). ``step_seconds``: one fine-tuning step on one worker;
    ``batch_step_seconds``: one projection step of a full batch (a smaller last batch is counted at
    its share)."""
    full = max(tasks.projection_batches, default=1)
    proj = [tasks.projection_steps * batch_step_seconds * b / full for b in tasks.projection_batches]
    runs = [s * step_seconds for s in tasks.runs]
    rows = []
    for n in workers:
        hours = (list_schedule(proj, n) + list_schedule(runs, n)) / 3600
        work = (sum(proj) + sum(runs)) / 3600
        rows.append({"workers": n, "projection_tasks": len(proj), "run_tasks": len(runs),
                     "work_hours": round(work, 2), "hours": round(hours, 2),
                     "efficiency": round(work / (n * hours), 3) if hours else math.nan})
    return rows
