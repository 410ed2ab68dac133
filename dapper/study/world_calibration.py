"""Is the embedded world calibrated to its 64 px instruments? One command measures it.

    python -m dapper world-calibration                 # everything (about 15 minutes on 2 cores)
    python -m dapper world-calibration --skip-classifier

writes ``results/world_calibration.csv`` (one row per measure: value, goal, met) and
``figures/fig0_world_calibration.png`` under :func:`dapper.utils.reports_dir`:

* identity oracle on held-out full-diversity target views (its own held-out stream), at 64 px and
  after resampling to 48, 32, 24 and 16 px and back: the look-alike pairs must be told apart at
  64 px and at half resolution, and not at quarter resolution (fine-grained, not coarse);
* pose oracle: median yaw error and share of front/back flips (error over 90 degrees);
* the study's own classifier (the shipped pretrained one, fine-tuned exactly as the five-fold study
  does, real images only, 5 folds): diverse pool at 2 and 32 images per class, homogeneous pool at
  32. Few-shot must stay hard, 32 shots must learn the classes, and the narrow pool must leave a
  gap that augmentation could close. Its runs are kept in ``results/world_calibration_runs.csv``
  (resumable).

The oracles measure here, as everywhere: nothing of this feeds the method.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dapper.data import toycars
from dapper.judges import oracles
from dapper.study.config import study_config
from dapper.study.gan_eval import identity_shares, resample
from dapper.study.runs import five_fold_runs
from dapper.utils import atomic_save, repo_root, reports_dir

RESOLUTIONS = (64, 48, 32, 24, 16)
# measure -> (comparison, bound) of the calibration contract (DESIGN.md)
GOALS = {
    "identity_oracle_64px": (">=", 0.98),
    "identity_oracle_32px": (">=", 0.90),
    "identity_oracle_16px": ("<=", 0.60),
    "pose_oracle_median_yaw_error_deg": ("<=", 3.0),
    "pose_oracle_front_back_flips": ("<=", 0.0),
    "classifier_diverse_32_shots": (">=", 0.70),
    "classifier_diverse_32_minus_2_shots": (">=", 0.25),
    "classifier_diverse_minus_homogeneous_32_shots": (">=", 0.15),
}
FIGURE_YAWS = (30.0, 90.0, 210.0)


def identity_vs_resolution(n_per_class: int = 200, sizes=RESOLUTIONS, model=None) -> list[dict]:
    """The identity oracle's accuracy (and pair accuracy: the right look-alike pair) on its held-out
    views at each size in ``sizes`` (resampled down and back to 64 px); one dict per size."""
    model = model or oracles.load_identity_oracle()
    images, labels, _, _ = oracles.heldout_identity_views(n_per_class)
    rows = []
    for size in sizes:
        x = images if size == images.shape[1] else resample(images, size)
        pred, _ = oracles.predict_identity(x, model)
        shares = identity_shares(pred, labels, len(toycars.TARGET_CLASSES), toycars.PAIRS)
        rows.append({"size": int(size), "accuracy": shares["kept"], "pair_accuracy": shares["pair_kept"],
                     "per_class": shares["per_class"].tolist(), "n": int(len(labels))})
    return rows


def pose_oracle_errors(model=None) -> dict:
    """Median yaw error (degrees) and front/back flip share of the pose oracle on its held-out renders."""
    model = model or oracles.load_pose_oracle()
    m = oracles.evaluate("pose", model)
    return {"median_yaw_error_deg": m["median_yaw_error_deg"], "front_back_flips": m["frac_error_over_90deg"],
            "n": m["n"]}


def classifier_real_only(path=None, progress: bool = True, workers: int = 2):
    """Real-only five-fold runs of the study's classifier at 2 and 32 images per class on both pools
    (the study's full-profile fine-tuning; the contract reads three of the four cells). Returns the
    rows (data frame)."""
    cfg = study_config("full", conditions=("real",), shots=(2, 32))
    path = path or reports_dir("results") / "world_calibration_runs.csv"
    return five_fold_runs(cfg, path=path, workers=workers, progress=progress)


def classifier_measures(rows) -> dict:
    """Mean accuracies and the contract's differences from :func:`classifier_real_only` rows."""
    mean = rows.groupby(["scenario", "shots_per_class"])["accuracy"].mean()
    d32, d2 = float(mean[("diverse", 32)]), float(mean[("diverse", 2)])
    h32 = float(mean[("homogeneous", 32)])
    return {"classifier_diverse_2_shots": d2, "classifier_diverse_32_shots": d32,
            "classifier_homogeneous_32_shots": h32, "classifier_diverse_32_minus_2_shots": d32 - d2,
            "classifier_diverse_minus_homogeneous_32_shots": d32 - h32,
            "classifier_folds": int(rows["fold"].nunique())}


def goal_met(measure: str, value: float) -> bool | str:
    if measure not in GOALS:
        return ""
    op, bound = GOALS[measure]
    return bool(value >= bound) if op == ">=" else bool(value <= bound)


def calibration_table(identity_rows: list, pose: dict, classifier: dict | None):
    """One row per measure: ``world``, ``measure``, ``value``, ``goal``, ``met``, ``n``."""
    records = []

    def add(measure, value, n):
        op, bound = GOALS.get(measure, ("", ""))
        records.append({"world": toycars.WORLD_TAG, "measure": measure, "value": float(value),
                        "goal": f"{op} {bound}".strip(), "met": goal_met(measure, float(value)), "n": n})

    for r in identity_rows:
        add(f"identity_oracle_{r['size']}px", r["accuracy"], r["n"])
        add(f"identity_oracle_pair_{r['size']}px", r["pair_accuracy"], r["n"])
    add("pose_oracle_median_yaw_error_deg", pose["median_yaw_error_deg"], pose["n"])
    add("pose_oracle_front_back_flips", pose["front_back_flips"], pose["n"])
    for k, v in (classifier or {}).items():
        if k != "classifier_folds":
            add(k, v, classifier["classifier_folds"])
    return pd.DataFrame(records)


def pair_views(yaws=FIGURE_YAWS, size: int = 64) -> np.ndarray:
    """uint8 [n_pairs, len(yaws), 2, size, size, 3]: each look-alike pair side by side at each yaw,
    same silver paint, background and framing, at native resolution."""
    out = np.zeros((len(toycars.PAIRS), len(yaws), 2, size, size, 3), np.uint8)
    for p, pair in enumerate(toycars.PAIRS):
        for j, yaw in enumerate(yaws):
            for k, label in enumerate(pair):
                spec = toycars.target_spec(label, (0.70, 0.71, 0.73))
                out[p, j, k] = toycars.render(spec, yaw, 12.0, None, background_seed=5, size=size).image
    return out


def calibrate(skip_classifier: bool = False, n_per_class: int = 200, progress: bool = True, workers: int = 2):
    """Measure everything and write the table; returns (table, identity rows by resolution)."""
    identity_rows = identity_vs_resolution(n_per_class)
    pose = pose_oracle_errors()
    classifier = None
    if not skip_classifier:
        classifier = classifier_measures(classifier_real_only(progress=progress, workers=workers))
    table = calibration_table(identity_rows, pose, classifier)
    path = reports_dir("results") / "world_calibration.csv"
    atomic_save(path, lambda p: table.to_csv(p, index=False, float_format="%.4f"))
    return table, identity_rows


def shipped_paths():
    """(table, figure) of the last calibration run committed with the repository."""
    reports = repo_root() / "reports"
    return reports / "results" / "world_calibration.csv", reports / "figures" / "fig0_world_calibration.png"


def read_table(path=None):
    """The calibration table (default: the committed one); refuses a table of another world."""
    path = path or shipped_paths()[0]
    if not path.is_file():
        raise FileNotFoundError(f"no calibration table at {path}; run `python -m dapper world-calibration`")
    table = pd.read_csv(path)
    worlds = set(table["world"])
    if worlds != {toycars.WORLD_TAG}:
        raise ValueError(f"{path} measured the world {sorted(worlds)}, not {toycars.WORLD_TAG}; "
                         "rerun `python -m dapper world-calibration`")
    return table


def statement(table) -> str:
    """Sentences generated from a calibration table (no number typed by hand)."""
    v = dict(zip(table["measure"], table["value"]))

    def pct(m):
        return f"{100 * v[m]:.1f}%"

    goals = table[table["goal"].notna() & (table["goal"].astype(str) != "")]
    met = goals["met"].astype(str).str.lower() == "true"
    parts = [f"The identity oracle names {pct('identity_oracle_64px')} of held-out views at 64 px, "
             f"{pct('identity_oracle_32px')} after resampling to 32 px and {pct('identity_oracle_16px')} at 16 px "
             f"(look-alike pair right: {pct('identity_oracle_pair_16px')})."]
    parts.append(f"The pose oracle's median yaw error is {v['pose_oracle_median_yaw_error_deg']:.2f} deg with "
                 f"{pct('pose_oracle_front_back_flips')} front/back flips.")
    if "classifier_diverse_32_shots" in v:
        parts.append(f"The study's classifier, real images only, reaches {pct('classifier_diverse_32_shots')} at 32 "
                     f"images per class on the diverse pool and {pct('classifier_diverse_2_shots')} at 2; "
                     f"{pct('classifier_homogeneous_32_shots')} at 32 from the homogeneous pool.")
    parts.append(f"{int(met.sum())} of {len(goals)} calibration goals are met"
                 + ("." if met.all() else f"; missed: {', '.join(goals.loc[~met, 'measure'])}."))
    return " ".join(parts)
