"""Two report folders' results files side by side: did a change of the code change any number?

    python bench/compare_reports.py BEFORE_REPORTS AFTER_REPORTS [--out bench/results/NAME.csv]

Each folder is a ``DAPPER_REPORTS`` root (``results/*.csv`` inside), for example the quick profile
run by nbval at two commits. Per results file present in both: its rows, and the columns whose values
differ once the columns that name a run rather than measure it are set aside (timings, dates, study
ids and hashes, which follow the code by design; paths), the rows matched by their label columns (parallel
runs finish in any order). Numbers count as equal within ``--rtol``.
A file in one folder only is listed as such. One row per file goes to ``--out``; the exit status is
1 when any file differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# what names or times a run, not what it measured
RUN_COLUMNS = {"seconds", "cpu_seconds", "finished_at", "study_id", "generator_hash", "device", "eval_seconds",
               "seconds_per_image", "cpu_seconds_per_view", "wall_seconds", "torch", "code", "classifier",
               "classifier_weights", "instruments"}
RUN_SUFFIXES = ("_seconds", "_s", "_at", "_id", "_hash", "_path")


def run_column(name: str) -> bool:
    return name in RUN_COLUMNS or name.endswith(RUN_SUFFIXES) or "seconds" in name or name.endswith("_ms")


def in_key_order(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both frames sorted by their shared label columns (text and whole numbers, run columns aside):
    rows written as parallel runs finish come in any order."""
    key = [c for c in a.columns if c in b.columns and not run_column(c)
           and not pd.api.types.is_float_dtype(a[c]) and not pd.api.types.is_float_dtype(b[c])]
    if not key:
        return a.reset_index(drop=True), b.reset_index(drop=True)

    def ordered(df):
        return df.assign(**{c: df[c].astype(str) for c in key}).sort_values(key, kind="stable").reset_index(drop=True)

    return ordered(a), ordered(b)


def differing_columns(a: pd.DataFrame, b: pd.DataFrame, rtol: float) -> list[str]:
    """Columns of both frames (same length) whose values differ, run columns aside."""
    out = []
    for col in [c for c in a.columns if c in b.columns and not run_column(c)]:
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            same = np.isclose(x.to_numpy(float), y.to_numpy(float), rtol=rtol, atol=1e-12, equal_nan=True).all()
        else:
            same = (x.fillna("").astype(str).to_numpy() == y.fillna("").astype(str).to_numpy()).all()
        if not same:
            out.append(col)
    return out


def compare(before: Path, after: Path, rtol: float = 1e-6) -> pd.DataFrame:
    names = sorted({p.name for folder in (before, after) for p in (folder / "results").glob("*.csv")})
    rows = []
    for name in names:
        pa, pb = before / "results" / name, after / "results" / name
        if not (pa.exists() and pb.exists()):
            rows.append({"file": name, "status": "only before" if pa.exists() else "only after"})
            continue
        a, b = pd.read_csv(pa), pd.read_csv(pb)
        row = {"file": name, "rows_before": len(a), "rows_after": len(b),
               "columns_only_before": " ".join(c for c in a.columns if c not in b.columns),
               "columns_only_after": " ".join(c for c in b.columns if c not in a.columns)}
        if len(a) != len(b):
            row["status"] = "rows differ"
        else:
            diff = differing_columns(*in_key_order(a, b), rtol)
            row["differing_columns"] = " ".join(diff)
            row["status"] = "same" if not diff else "values differ"
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--rtol", type=float, default=1e-6)
    args = p.parse_args(argv)
    table = compare(args.before, args.after, args.rtol)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        print(table.to_string(index=False))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    return int((table["status"] != "same").any())


if __name__ == "__main__":
    sys.exit(main())
