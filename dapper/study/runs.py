"""The study's runs: one fine-tuning per (scenario, condition, shots, fold) on its real images and
its synthetic ones (:func:`run_synthetic`: kept or dropped by the method's own filter, never an
oracle) (:func:`fit_run`, :func:`run_one`), and the grid of them (:func:`five_fold_runs`: resumable,
in local processes or as Ray tasks)."""

from __future__ import annotations

import dataclasses
import dataclasses as dc
import datetime
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dapper.classify import accuracy, create_classifier, data_config, predict, prepare_images, train_classifier
from dapper.executor import ProcessExecutor, get_executor
from dapper.study.agreement_store import agreement_stored
from dapper.study.ceiling import renderer_condition
from dapper.study.config import (
    CONDITION_METHOD,
    StudyConfig,
    ceiling_condition,
    condition_compose,
    condition_tuned,
    filter_settings,
    filtered_base,
    model_sources,
    study_device,
    study_executor,
)
from dapper.study.folds import RunSpec, plan_runs, real_subset, run_steps
from dapper.study.ids import classifier_weights_path
from dapper.study.inputs import StudyInputs, prepare_inputs
from dapper.study.results_file import (
    adopt_rows,
    append_row,
    archive_path,
    archive_superseded,
    finished_runs,
    read_results,
    results_path,
    row_key,
)
from dapper.synthetic_filter import keep_by_classifier, keep_by_nearest_shot
from dapper.utils import torch_threads


def _filter_mask(inputs: StudyInputs, spec: RunSpec, syn, device=None) -> np.ndarray:
    """Which of a run's synthetic images ``syn`` the method's own filter keeps (bool [M]): the
    real-only classifier of the same run (:func:`fit_run` of ``real``: its shots, seed and recipe), or
    the pretrained classifier's features against the run's real shots. Never an oracle."""
    settings = filter_settings(inputs.config)
    p = _prepared(inputs, spec.scenario)
    n_classes = len(inputs.data[spec.scenario].class_names)
    syn_x = prepare_images(syn.images, p["config"])
    bf16 = inputs.config.finetune.bf16
    if settings.by == "classifier":
        model = _real_only_model(inputs, spec, device)
        return keep_by_classifier(predict(model, syn_x, bf16=bf16), syn.labels, settings.min_confidence)
    d = inputs.data[spec.scenario]
    real_idx = real_subset(d.labels, inputs.folds[spec.scenario][spec.fold][0], spec.shots, spec.fold,
                          inputs.config.seed)
    features = create_classifier(0, inputs.config.classifier, classifier_weights_path(inputs.config))
    features = features.to(study_device(inputs.config) if device is None else device)
    return keep_by_nearest_shot(predict(features, syn_x, bf16=bf16), syn.labels,
                                predict(features, p["x"][real_idx], bf16=bf16), d.labels[real_idx], n_classes)


_REAL_ONLY: dict = {}  # per process: the last few real-only classifiers the filter read, by run


def _real_only_model(inputs: StudyInputs, spec: RunSpec, device=None):
    """The real-only classifier of ``spec``'s run (:func:`fit_run` of ``real``: same shots, seed and
    recipe), fitted once per process for every filtered condition of that run and for the label
    agreement (fitting is deterministic, so a kept model is the one a refit would give). Keeps four."""
    key = (inputs.ids["real"], spec.scenario, spec.fold, spec.shots, spec.seed, str(device))
    if key not in _REAL_ONLY:
        while len(_REAL_ONLY) >= 4:
            _REAL_ONLY.pop(next(iter(_REAL_ONLY)))
        _REAL_ONLY[key] = fit_run(inputs, dataclasses.replace(spec, condition="real"), device).model
    return _REAL_ONLY[key]


def run_synthetic(inputs: StudyInputs, spec: RunSpec, device=None, before_filter: bool = False):
    """The synthetic images (a :class:`dapper.augment.SyntheticSet`) one run trains on beside its real
    shots; None for a condition without any. Checked against the run's test fold. A filtered
    condition's are its base condition's that the method's own filter keeps (``before_filter``: all of
    them); the filter trains on ``device``."""
    base = filtered_base(spec.condition)
    if base is not None:
        syn = run_synthetic(inputs, dataclasses.replace(spec, condition=base))
        if before_filter or syn is None:
            return syn
        keep = _filter_mask(inputs, spec, syn, device)
        idx = np.flatnonzero(keep)
        return type(syn)(syn.images[idx], syn.labels[idx], syn.manifest.iloc[idx].reset_index(drop=True))
    d = inputs.data[spec.scenario]
    train_idx, test_idx = inputs.folds[spec.scenario][spec.fold]
    keys = [d.keys[i] for i in real_subset(d.labels, train_idx, spec.shots, spec.fold, inputs.config.seed)]
    test_keys = [d.keys[i] for i in test_idx]
    ceiling = renderer_condition(spec.condition)
    if ceiling is not None:
        method, share = ceiling
        return inputs.rendered[spec.scenario].select(keys, method, share, test_keys=test_keys, fold=spec.fold)
    method = CONDITION_METHOD.get(spec.condition)
    if method is None:
        return None
    pool = (inputs.tuned[(spec.scenario, spec.fold, spec.shots)] if condition_tuned(spec.condition)
            else inputs.synthetic[spec.scenario])
    return pool.select(keys, [method], test_keys=test_keys, fold=spec.fold, compose=condition_compose(spec.condition))



_PREPARED: dict = {}  # per process: (scenario, kind) -> prepared classifier tensors


def prepared_config(inputs: StudyInputs, scenario: str) -> dict:
    """The classifier's data config the study prepares a scenario's images with."""
    return _prepared(inputs, scenario)["config"]


def _prepared(inputs: StudyInputs, scenario: str):
    key = (inputs.study_id, scenario)
    if key not in _PREPARED:
        d = inputs.data[scenario]
        cfg = data_config(create_classifier(len(d.class_names), inputs.config.classifier,
                                            classifier_weights_path(inputs.config)))
        views = prepare_images(d.views_images, cfg) if len(d.views_images) else None
        _PREPARED[key] = {"x": prepare_images(d.images, cfg), "y": torch.from_numpy(d.labels), "views": views,
                          "views_y": torch.from_numpy(d.views_labels), "config": cfg}
    return _PREPARED[key]


@dataclass
class FittedRun:
    """A classifier fine-tuned as the study fine-tunes one run, and what it was fitted on."""

    model: object
    real_idx: np.ndarray
    test_idx: np.ndarray
    n_synthetic: int
    steps: int
    device: object


def fit_run(inputs: StudyInputs, spec: RunSpec, device=None) -> FittedRun:
    """Fine-tune the classifier of one (scenario, condition, shots, fold), exactly as the study does
    (the one function behind :func:`run_one` and :func:`dapper.study.saliency.train_pair`): the
    fold's nested real subset, the condition's synthetic images of those (its composition), the
    study's settings and seed, on ``device`` (default: :func:`study_device`)."""
    cfg = inputs.config
    device = study_device(cfg) if device is None else device
    d = inputs.data[spec.scenario]
    train_idx, test_idx = inputs.folds[spec.scenario][spec.fold]
    real_idx = real_subset(d.labels, train_idx, spec.shots, spec.fold, cfg.seed)
    p = _prepared(inputs, spec.scenario)
    real_x, real_y = p["x"][real_idx], p["y"][real_idx]
    syn_x = syn_y = None
    n_syn = 0
    syn = run_synthetic(inputs, spec, device)
    if syn is not None and len(syn):
        syn_x = prepare_images(syn.images, p["config"])
        syn_y = torch.from_numpy(syn.labels)
        n_syn = len(syn)
    settings = dc.replace(cfg.finetune, affine=spec.condition == "real+affine")
    model = train_classifier(real_x, real_y, len(d.class_names), syn_x, syn_y, settings, seed=spec.seed,
                             model_name=cfg.classifier, weights=classifier_weights_path(cfg), device=device)
    return FittedRun(model.eval(), real_idx, test_idx, n_syn, settings.steps(len(real_idx)), device)


def run_one(inputs: StudyInputs, spec: RunSpec, device=None) -> dict:
    """Fine-tune (:func:`fit_run`) and test one (scenario, condition, shots, fold); returns the
    results row."""
    t0, cpu0 = time.time(), time.process_time()
    cfg = inputs.config
    d = inputs.data[spec.scenario]
    p = _prepared(inputs, spec.scenario)
    fitted = fit_run(inputs, spec, device)
    model, real_idx, test_idx, n_syn = fitted.model, fitted.real_idx, fitted.test_idx, fitted.n_synthetic
    method = CONDITION_METHOD.get(spec.condition)
    bf16 = cfg.finetune.bf16
    acc_fold = accuracy(model, p["x"][test_idx], p["y"][test_idx], bf16=bf16)
    acc_views = accuracy(model, p["views"], p["views_y"], bf16=bf16) if p["views"] is not None else math.nan
    primary = acc_views if spec.scenario == "homogeneous" else acc_fold
    return {
        "dataset": cfg.dataset, "condition": spec.condition, "shots_per_class": spec.shots, "fold": spec.fold,
        "seed": spec.seed, "accuracy": round(primary, 6), "n_real": len(real_idx), "n_synthetic": n_syn,
        "scenario": spec.scenario, "accuracy_fold": round(acc_fold, 6),
        "accuracy_views": round(acc_views, 6) if math.isfinite(acc_views) else "",
        "n_test": len(test_idx), "n_test_views": len(d.views_labels), "steps": fitted.steps,
        "profile": cfg.profile, "study_id": inputs.ids[spec.condition], "device": str(fitted.device),
        "generator": ("renderer" if ceiling_condition(spec.condition)
                      else inputs.generator if method is not None else ""),
        "seconds": round(time.time() - t0, 2), "cpu_seconds": round(time.process_time() - cpu0, 2),
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
        **model_sources(cfg),
    }


def _grid_task(inputs: StudyInputs, job: tuple) -> dict:
    """One grid cell as an executor's task: ``job = (spec, threads)``; returns its row."""
    spec, threads = job
    torch.set_num_threads(threads)
    return run_one(inputs, spec)


def study_inputs(config: StudyConfig, progress: bool = True, path: str | Path | None = None,
                 results: str | Path | None = None, **prepare) -> StudyInputs:
    """The five-fold study's inputs (:func:`prepare_inputs`), its synthetic images left unmade when
    nothing needs them: every planned run of these study ids is in the results file ``path`` (default
    :func:`results_path`) and the identity oracle's label agreement that the study's outputs read
    (every image, and the fewest shots') is stored under ``results``
    (:mod:`dapper.study.agreement_store`). A new generator, direction, setting or code changes the
    ids, and the images are made again. ``prepare``: further keyword arguments of :func:`prepare_inputs`."""
    path = Path(path) if path is not None else results_path()
    planned = plan_runs(config)

    def skip(ids: dict) -> str | None:
        done = finished_runs(path, ids)
        if any(row_key(s.scenario, s.condition, s.shots, s.fold) not in done for s in planned):
            return None
        if not all(agreement_stored(config, ids, shots, results) for shots in (None, min(config.shots))):
            return None
        return (f"all {len(planned)} planned runs of this study are in {path.name} and the oracle's label agreement "
                "is stored for them: no synthetic image is needed")

    return prepare_inputs(config, progress=progress, skip_images=skip, **prepare)


def five_fold_runs(config: StudyConfig, inputs: StudyInputs | None = None, path: str | Path | None = None,
                   workers: int | None = None, progress: bool = True, threads: int = 1, executor=None,
                   adopt_from=()):
    """Run every planned run not yet in the results file; return the study's rows (data frame).

    Each row is appended as soon as its run ends, so an interrupted study resumes where it
    stopped. ``workers > 1`` runs in that many processes (spawned, ``threads`` torch threads each).
    ``executor`` (default: the config's, see :mod:`dapper.executor`): with Ray every run is a task
    asking for ``threads`` CPUs and, when the study is not pinned to the CPU and the cluster has
    GPUs, one GPU; this process appends the rows as the tasks finish (same file, lock and resume
    rules; ``workers`` does not apply). ``adopt_from``: other results files whose rows of this very
    study (same condition id, profile and dataset) are copied in rather than run again
    (:func:`dapper.study.results_file.adopt_rows`).
    """

    inputs = inputs or prepare_inputs(config, progress=progress)
    path = Path(path) if path is not None else results_path()
    moved = archive_superseded(path, inputs.ids, config.profile, config.dataset)
    if moved and progress:
        print(f"{moved} superseded rows moved to {archive_path(path).name}")
    planned = plan_runs(config)
    if adopt_from:
        keys = {row_key(s.scenario, s.condition, s.shots, s.fold) for s in planned}
        adopted = adopt_rows(path, inputs.ids, adopt_from, keys, config.profile, config.dataset)
        inputs.timings["n_adopted"] = adopted
        if adopted and progress:
            print(f"{adopted} rows of this study adopted from {', '.join(Path(p).name for p in adopt_from)}")
    done = finished_runs(path, inputs.ids)
    todo = [s for s in planned if row_key(s.scenario, s.condition, s.shots, s.fold) not in done]
    if todo and inputs.skipped:
        raise RuntimeError(f"{len(todo)} runs of this study are not in {path}, but its inputs were prepared without "
                           f"synthetic images ({inputs.skipped}): prepare them with images (prepare_inputs)")
    workers = config.workers if workers is None else workers
    if study_device(config).type == "cuda":  # one GPU: runs one after another, each on it
        workers = 1
    workers = max(1, min(workers, len(todo)))

    executor = study_executor(config) if executor is None else get_executor(executor)
    t = time.time()
    bar = None
    if progress and todo:
        bar = tqdm(total=len(todo), desc="five-fold runs", unit="run")
    if todo and (executor.name != "local" or workers > 1):
        if executor.name != "local":
            on_cpu = config.device is not None and str(config.device).startswith("cpu")
            gpus = 0 if on_cpu or not executor.gpus_available() else 1
            # longest first (a run's steps depend on its real images only): a first-come queue then
            # finishes soonest (dapper.study.cluster_plan)
            n_classes = {sc: len(d.class_names) for sc, d in inputs.data.items()}
            todo = sorted(todo, key=lambda s: -run_steps(config, s, n_classes[s.scenario]))
        else:
            executor, gpus = ProcessExecutor(workers, threads=threads), 0
        for _, row in executor.map(_grid_task, [(s, threads) for s in todo], shared=inputs, num_cpus=threads,
                                   num_gpus=gpus):
            append_row(path, row)
            if bar is not None:
                bar.update(1)
    elif todo:
        with torch_threads(threads):
            for spec in todo:
                append_row(path, run_one(inputs, spec))
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    inputs.timings["runs"] = time.time() - t
    inputs.timings["n_runs"] = len(todo)
    return read_results(path, inputs.ids)
