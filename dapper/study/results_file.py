"""The study's results file: one row per finished run, appended under a file lock so parallel
processes can share it; rows of a superseded study id move to an archive beside it."""

from __future__ import annotations

import csv
import fcntl
import os
from pathlib import Path

import pandas as pd

from dapper.utils import atomic_save, atomic_write_bytes, reports_dir

REQUIRED_COLUMNS = ["dataset", "condition", "shots_per_class", "fold", "seed", "accuracy", "n_real", "n_synthetic"]
EXTRA_COLUMNS = ["scenario", "accuracy_fold", "accuracy_views", "n_test", "n_test_views", "steps", "profile",
                 "study_id", "generator", "seconds", "cpu_seconds", "finished_at", "device",
                 "classifier", "classifier_weights", "instruments"]
COLUMNS = REQUIRED_COLUMNS + EXTRA_COLUMNS


def results_path() -> Path:
    return reports_dir("results") / "five_fold.csv"


def append_row(path: str | Path, row: dict) -> None:
    """Append ``row`` to the CSV at ``path`` (header first if the file is new), holding an
    exclusive lock so that parallel processes never interleave lines."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", newline="") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            f.seek(0)
            first = f.readline()
            header = next(csv.reader([first])) if first.strip() else None
            if header is not None and any(c not in header for c in COLUMNS if c in row):
                header = _widen_header(f, path, header)
            columns = header or COLUMNS
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            f.seek(0, os.SEEK_END)
            if header is None:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in columns})
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _widen_header(f, path: Path, header: list[str]) -> list[str]:
    """Rewrite the locked, open results file ``f`` under a header with every column of
    :data:`COLUMNS` (a file written before a column existed keeps its rows, blank in the new ones);
    return the new header. The rewrite happens in place, since other processes wait on this file's
    lock, not its name; a copy beside it (``.bak``), written first and removed last, keeps the rows
    should the rewrite be interrupted."""
    columns = header + [c for c in COLUMNS if c not in header]
    f.seek(0)
    old = f.read()
    backup = path.with_name(path.name + ".bak")
    atomic_write_bytes(backup, old.encode())
    rows = list(csv.DictReader(old.splitlines()))
    f.seek(0)
    f.truncate()
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    f.flush()
    os.fsync(f.fileno())
    backup.unlink()
    return columns


def read_results(path: str | Path | None = None, study_id: str | dict | None = None):
    """The results file as a data frame; empty if missing. ``study_id``: keep only that study's rows
    (a string, or a dict condition -> id as in :attr:`StudyInputs.ids`)."""
    path = Path(path) if path is not None else results_path()
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.read_csv(path, dtype={"study_id": str, "generator": str})
    if study_id is not None and "study_id" in df.columns:
        if isinstance(study_id, dict):
            keep = df["study_id"] == df["condition"].map(study_id)
        else:
            keep = df["study_id"] == study_id
        df = df[keep].reset_index(drop=True)
    return df


def row_key(scenario, condition, shots, fold) -> tuple:
    return (str(scenario), str(condition), int(shots), int(fold))


def archive_path(path: str | Path) -> Path:
    """Where :func:`archive_superseded` keeps the rows it takes out of ``path``."""
    path = Path(path)
    return path.with_name(path.stem + "_archive" + path.suffix)


def archive_superseded(path: str | Path, ids: dict, profile: str, dataset: str) -> int:
    """Move the rows of ``path`` that this study (``ids``: condition -> study id) supersedes, rows of
    the same profile, dataset and condition made with other settings, code or models, to
    :func:`archive_path` (appended), so the results file holds one study. Returns how many moved.
    Rows of other profiles or datasets stay."""
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "r+", newline="") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            df = pd.read_csv(f, dtype={"study_id": str, "generator": str})
            if df.empty or "study_id" not in df.columns:
                return 0
            mine = (df.get("profile", pd.Series(profile, index=df.index)).astype(str) == profile) & (
                df["dataset"].astype(str) == dataset) & df["condition"].isin(list(ids))
            old = mine & (df["study_id"] != df["condition"].map(ids))
            if not old.any():
                return 0
            archive = archive_path(path)
            # archive first, then replace the file atomically: a crash in between duplicates rows in
            # the archive and never loses one (the study runs start only after this)
            _append_to_archive(archive, df[old])
            atomic_save(path, lambda p: df[~old].to_csv(p, index=False))
            return int(old.sum())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _append_to_archive(archive: Path, rows) -> None:
    """Append ``rows`` (a data frame) to the archive under its own header; an archive whose header
    lacks a column of ``rows`` (written before the column existed) is rewritten whole, widened."""
    if not archive.exists() or archive.stat().st_size == 0:
        rows.to_csv(archive, index=False)
        return
    header = pd.read_csv(archive, nrows=0).columns.tolist()
    if set(rows.columns) <= set(header):
        rows.reindex(columns=header).to_csv(archive, mode="a", header=False, index=False)
        return
    whole = pd.concat([pd.read_csv(archive, dtype={"study_id": str, "generator": str}), rows], ignore_index=True)
    atomic_save(archive, lambda p: whole.to_csv(p, index=False))


def adopt_rows(path: str | Path, ids: dict, sources, keys: set[tuple], profile: str, dataset: str) -> int:
    """Append to ``path`` the rows of other results files (``sources``, first one first) that this
    study would make itself: their condition's study id in ``ids`` (same settings, code and models,
    so the same run), their profile and dataset, and their key ``(scenario, condition, shots, fold)``
    in ``keys`` and not yet in ``path``. Returns how many were adopted. A study that shares
    conditions with another (the filter study's unfiltered ones, the ceiling's real-only runs) then
    reads the same runs as it instead of repeating them."""
    path = Path(path)
    have = finished_runs(path, ids)
    adopted = 0
    for source in sources:
        source = Path(source)
        if source.resolve() == path.resolve():
            continue
        df = read_results(source, ids)
        if df.empty:
            continue
        if "profile" in df.columns:
            df = df[df["profile"].astype(str) == profile]
        df = df[df["dataset"].astype(str) == dataset]
        for key, (_, row) in zip(_row_keys(df), df.iterrows()):
            if key in keys and key not in have:
                append_row(path, {k: v for k, v in row.items() if not pd.isna(v)})
                have.add(key)
                adopted += 1
    return adopted


def finished_runs(path: str | Path, study_id: str | dict) -> set[tuple]:
    """Keys ``(scenario, condition, shots, fold)`` of the rows the study already wrote."""
    return set(_row_keys(read_results(path, study_id)))


def _row_keys(df: pd.DataFrame) -> list[tuple]:
    """Each row's key ``(scenario, condition, shots, fold)``, in order."""
    # Rows without a scenario come from the plain cross-validation over the pool.
    scenario = df["scenario"].astype(object) if "scenario" in df.columns else pd.Series("diverse", index=df.index)
    scenario[scenario.isna()] = "diverse"
    df = df.assign(scenario=scenario)
    return [row_key(r.scenario, r.condition, r.shots_per_class, r.fold) for r in df.itertuples()]
