"""Does an augmentation keep the identity of the vehicle it starts from? The oracles' answer, per edit.

:func:`augment_identity` edits the latents of held-out target views projected into the generator
(in W and in W+) the way the augmentation does, perturbation at several strengths and rotation at
several angles, for every variant of the method (all W+ rows: the paper's edit; only the coarse
rows the method chose, the projection's fine styles kept), and asks the independent oracles what
they see: the class (identity kept; pair kept: the class or its look-alike twin), the yaw (how far
the edit turned the vehicle, degrees per unit, jumps along the rotation sweep), and the PSNR of the
edit against the projection it started from. Rotation amounts are annotator degrees, asked for
through the direction's calibration as the augmentation asks (its measured response,
``Direction.coefficients_for``); each row keeps the coefficient used. One row per (space, variant,
edit, amount): ``reports/results/augment_identity.csv``.

With the method's pose annotator given, each variant's rotations are measured a second time as the
augmentation makes them under its pose check (:func:`dapper.augment.pose_checked_edits`: an edit
the annotator reads missing its degrees is halved, then dropped for the projection); those rows'
variant ends in ", pose-checked" and ``pose_kept`` is the share of edits the annotator let through
whole (``pose_factor_mean`` their mean factor). Their ``jump_share`` reads the sweep of the edits as
made (kept, halved and dropped ones side by side), so it says little of turning; ``flip_share``,
on every rotate row, is the share of edits whose oracle-read turn is more than 90 deg from the
turn the edit made was meant to make (a front/back flip).

Identity is counted two ways: against the true class (what a classifier trained on the synthetic
image is told) and against the class the oracle gives the unedited projection (what the edit alone
changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from dapper.augment import perturb_ws, pose_checked_edits, turns_each
from dapper.data import toycars
from dapper.directions import (
    Direction,
    apply_direction,
    load_or_fit_pose_direction,
    own_responses,
    wrap_deg,
    yaw_sequence_metrics,
)
from dapper.inversion.latents import w_statistics
from dapper.inversion.pivotal import PivotalSettings, tune_generator
from dapper.judges import oracles
from dapper.study.config import StudyConfig, projection_settings
from dapper.study.direction_eval import heldout_targets
from dapper.study.gan_eval import checkpoint_kimg, pair_hits
from dapper.study.inputs import checking_annotator, pose_instruments
from dapper.stylegan2 import synthesize
from dapper.utils import default_generator_path, display_path, reports_dir, weights_hash

__all__ = ["GOALS", "IDENTITY_FILES", "IdentityStudy", "augment_identity", "goal_lines", "pivotal_generators",
           "identity_study", "write_identity_outputs"]

IDENTITY_FILES = {"table": "augment_identity.csv", "goals": "augment_identity.md"}
"""The results files, in ``reports_dir("results")``."""

# The method v2 goals, judged on the table (identity against the true class).
GOALS = {"identity_kept": 0.90, "jump_share": 0.0, "oracle_deg_per_unit": (0.8, 1.25)}


def _psnr(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).square().flatten(1).mean(1)
    return (10 * torch.log10(1 / mse.clamp_min(1e-10))).numpy()


def _measure(images: torch.Tensor, labels: np.ndarray, base_cls: np.ndarray, pairs, identity_oracle,
             pose_oracle) -> dict:
    cls = oracles.predict_identity(images, identity_oracle)[0]
    yaw = oracles.predict_yaw(images, pose_oracle)
    return {"cls": cls, "yaw": yaw, "kept": cls == labels, "kept_vs_projection": cls == base_cls,
            "pair_kept": pair_hits(cls, labels, pairs)}


def augment_identity(G, spaces: dict[str, torch.Tensor], labels, variants: dict[str, tuple[Direction, tuple]],
                     w_std: torch.Tensor, strengths=(0.25, 0.5, 1.0), coefficients=(-30, -20, -10, 10, 20, 30),
                     pairs=(), study_strength: float = 0.5, draws: int = 2, seed: int = 0, identity_oracle=None,
                     pose_oracle=None, batch_size: int = 64, pose_annotator=None, pose_tolerance: float = 0.5,
                     pose_tolerance_min_deg: float = 5.0, response_annotator=None):
    """The table described in the module docstring, as a pandas DataFrame.

    ``spaces``: name -> projected latents [N, num_ws, w_dim] of the same N target views (e.g.
    ``{"W": ..., "W+": ...}``); ``labels``: their true classes [N]; ``variants``: name ->
    (pose direction calibrated in degrees, the ``(start, stop)`` rows the perturbation moves);
    ``w_std``: per-dimension W standard deviation (whitened perturbation units); ``draws``
    perturbations per image and strength (seeded). ``study_strength`` marks the study's row.
    ``pose_annotator`` (the method's, never an oracle) adds the pose-checked rotation rows with the
    augmentation's ``pose_tolerance`` and ``pose_tolerance_min_deg``. ``G`` may also be a dict
    ``{class label: generator}`` (say, one pivotally tuned on each class's views,
    :func:`pivotal_generators`): each image is then drawn by its class's generator (without the
    pose-checked rows). ``response_annotator`` (the method's pose annotator) adds the rotation rows
    of each variant once more, ``"<variant>, own response"``: each image asked for its degrees
    through its own response (:func:`dapper.directions.own_responses`, ``AugmentSettings.response
    == "image"``), beside the direction's measured one (variants whose direction has none: no such rows);
    their ``own_response_share`` is the share of images whose turn the annotator read both ways (the
    rest are asked through the direction's response). The pose check of those rows is by the same
    annotator that read each response, so it lets most edits through by construction: the oracle's
    turn is the independent measure.
    """
    labels = np.asarray(labels)
    per_class = isinstance(G, dict)
    if per_class:
        missing = sorted(set(labels.tolist()) - set(G))
        if missing:
            raise ValueError(f"no generator for the classes {missing}")
        if pose_annotator is not None or response_annotator is not None:
            raise ValueError("the pose-checked and own-response rows need one generator, not one per class")

    def draw(latents, owners):  # owners: the image each latent edits
        if not per_class:
            return synthesize(G, latents, batch_size)
        out = None
        for c in np.unique(labels[owners]):
            idx = np.flatnonzero(labels[owners] == c)
            part = synthesize(G[c], latents[torch.from_numpy(idx)], batch_size)
            out = part.new_empty((len(latents), *part.shape[1:])) if out is None else out
            out[torch.from_numpy(idx)] = part
        return out

    identity_oracle = oracles.load_identity_oracle() if identity_oracle is None else identity_oracle
    pose_oracle = oracles.load_pose_oracle() if pose_oracle is None else pose_oracle
    coeffs = np.asarray(sorted(coefficients), dtype=np.float64)
    rows = []
    for space, ws in spaces.items():
        ws = torch.as_tensor(ws, dtype=torch.float32)
        n = len(ws)
        base = draw(ws, np.arange(n))
        base_m = _measure(base, labels, labels, pairs, identity_oracle, pose_oracle)
        base_cls = base_m["cls"]
        common = {"space": space, "n_images": n, "projection_identity_kept": float(base_m["kept"].mean())}
        for variant, (direction, perturb_layers) in variants.items():
            gen = torch.Generator().manual_seed(seed)
            for strength in strengths:
                eps = torch.randn(draws, n, ws.shape[2], generator=gen)
                edited = torch.cat([perturb_ws(ws, w_std, strength, eps[d], perturb_layers) for d in range(draws)])
                images = draw(edited, np.tile(np.arange(n), draws))
                m = _measure(images, np.tile(labels, draws), np.tile(base_cls, draws), pairs, identity_oracle,
                             pose_oracle)
                change = (m["yaw"] - np.tile(base_m["yaw"], draws) + 180) % 360 - 180
                rows.append({**common, "variant": variant, "edit": "perturb", "amount": float(strength),
                             "rows": f"{perturb_layers[0]}-{perturb_layers[1]}",
                             "study_setting": bool(np.isclose(strength, study_strength)),
                             "identity_kept": float(m["kept"].mean()),
                             "identity_kept_vs_projection": float(m["kept_vs_projection"].mean()),
                             "pair_kept": float(m["pair_kept"].mean()),
                             "oracle_yaw_change_median": float(np.median(np.abs(change))),
                             "psnr_to_projection": float(_psnr(images, base.repeat(draws, 1, 1, 1)).mean()),
                             "oracle_deg_per_unit": np.nan, "jump_share": np.nan})
            sweep = np.concatenate([coeffs, [0.0]]) if 0.0 not in coeffs else coeffs
            sweep = sweep[np.argsort(sweep)]  # in annotator degrees
            runs = [("", [direction] * n, None)]
            if response_annotator is not None and direction.response() is not None:
                own, n_shared = own_responses(G, direction, response_annotator, ws, batch_size)
                runs.append((", own response", own, 1.0 - n_shared / n))
            base_yaw = pose_annotator.predict(base) if pose_annotator is not None else None
            for suffix, each, own_share in runs:
                coefs = np.stack([d.coefficients_for(sweep) for d in each])  # [N, K]: each image's coefficients
                edited = apply_direction(ws, direction, coefs)  # [N, K, num_ws, w_dim]
                k = edited.shape[1]
                images = draw(edited.reshape(n * k, *edited.shape[2:]), np.repeat(np.arange(n), k))
                common_run = common if own_share is None else {**common, "own_response_share": own_share}
                measure = dict(labels=labels, base=base, base_cls=base_cls, pairs=pairs,
                               identity_oracle=identity_oracle, pose_oracle=pose_oracle, common=common_run,
                               each=each, sweep=sweep, coefs=coefs)
                rows += _rotation_rows(images, variant + suffix, **measure)
                if pose_annotator is None:
                    continue
                checked = images.reshape(n, k, *images.shape[1:]).clone()
                factors = np.ones((n, k))
                for j, c in enumerate(sweep):
                    if c != 0:
                        checked[:, j], factors[:, j] = pose_checked_edits(
                            G, ws, edited[:, j], turns_each(each, coefs[:, j]), pose_annotator, pose_tolerance,
                            pose_tolerance_min_deg, base_yaw, batch_size, edited_images=checked[:, j],
                            half_degrees=turns_each(each, coefs[:, j] / 2))
                rows += _rotation_rows(checked.reshape(n * k, *images.shape[1:]),
                                       f"{variant}{suffix}, pose-checked", factors=factors, **measure)
    return pd.DataFrame(rows)


def pivotal_generators(G, images, ws, labels, settings=None, progress: bool = False) -> tuple[dict, list[dict]]:
    """One generator per class, pivotally tuned (:func:`dapper.inversion.pivotal.tune_generator`) on
    all of that class's ``images`` [N, R, R, 3] at their projections ``ws`` at once, as the study
    would tune on a class's training shots. Returns ``({label: tuned generator}, [info per class])``."""
    labels = np.asarray(labels)
    ws = torch.as_tensor(ws, dtype=torch.float32)
    tuned, infos = {}, []
    classes = np.unique(labels)
    if progress:
        classes = tqdm(classes, desc="pivotal tuning", unit="class")
    for c in classes:
        idx = np.flatnonzero(labels == c)
        tuned[c], info = tune_generator(G, np.asarray(images)[idx], ws[torch.from_numpy(idx)], settings)
        infos.append({"label": int(c), **info})
    return tuned, infos


def _rotation_rows(images, variant, labels, base, base_cls, pairs, identity_oracle, pose_oracle, common, each,
                   sweep, coefs, factors=None) -> list[dict]:
    """The rotate rows of one variant from its sweep's images [N * K, C, R, R] (K = len(sweep), in
    sweep order, which includes 0; ``sweep`` in annotator degrees, ``coefs`` [N, K] the coefficients
    that ask for them through ``each`` [N], the direction as each image is asked through it);
    ``factors`` [N, K]: the pose check's factors when checked. ``coefficient``: their median."""
    n, k = len(labels), len(sweep)
    m = _measure(images, np.repeat(labels, k), np.repeat(base_cls, k), pairs, identity_oracle, pose_oracle)
    yaw = m["yaw"].reshape(n, k)
    unwrapped = np.unwrap(np.deg2rad(yaw), axis=1)
    j0 = int(np.flatnonzero(sweep == 0)[0])
    psnr = _psnr(images, base.repeat_interleave(k, 0)).reshape(n, k)
    rows = []
    for j, c in enumerate(sweep):
        if c == 0:
            continue
        change = np.rad2deg(unwrapped[:, j] - unwrapped[:, j0])
        within = np.abs(sweep) <= abs(c)
        jumps = yaw_sequence_metrics(sweep[within], yaw[:, within])["n_jumps"]
        # a flip: the oracle's turn is more than 90 deg from the turn the edit made was meant to make
        f = np.ones(n) if factors is None else factors[:, j]
        meant = turns_each(each, coefs[:, j] * f)
        flips = np.abs(wrap_deg(wrap_deg(yaw[:, j] - yaw[:, j0]) - meant)) > 90
        layers = each[0].layers
        row = {**common, "variant": variant, "edit": "rotate", "amount": float(c),
               "coefficient": float(np.median(coefs[:, j])), "rows": f"{layers[0]}-{layers[1]}", "study_setting": True,
               "identity_kept": float(m["kept"].reshape(n, k)[:, j].mean()),
               "identity_kept_vs_projection": float(m["kept_vs_projection"].reshape(n, k)[:, j].mean()),
               "pair_kept": float(m["pair_kept"].reshape(n, k)[:, j].mean()),
               "oracle_yaw_change_median": float(np.median(change)),
               "psnr_to_projection": float(psnr[:, j].mean()),
               "oracle_deg_per_unit": float(np.median(change / c)),
               "jump_share": float((jumps > 0).mean()), "flip_share": float(flips.mean())}
        if factors is not None:
            row.update(pose_kept=float((factors[:, j] == 1).mean()), pose_factor_mean=float(factors[:, j].mean()))
        rows.append(row)
    return rows


def goal_lines(table) -> list[str]:
    """One sentence per (space, variant): which method v2 goals its study settings meet, generated
    from the table (identity kept >= 90% for the study's perturbation and every rotation within
    +-30 deg, no jumps within +-30 deg, 0.8-1.25 oracle degrees per unit)."""
    lines = []
    for (space, variant), df in table.groupby(["space", "variant"], sort=False):
        pert = df[(df.edit == "perturb") & df.study_setting]
        rot = df[(df.edit == "rotate") & (df.amount.abs() <= 30)]
        # a goal with no rows to judge it (the pose-checked variants have rotation rows only) is not measured
        checks = {
            "identity kept >= 90% (perturbation)": (pert, lambda d: d.identity_kept >= GOALS["identity_kept"]),
            "identity kept >= 90% (rotation)": (rot, lambda d: d.identity_kept >= GOALS["identity_kept"]),
            "no jumps within +-30 deg": (rot, lambda d: d.jump_share <= GOALS["jump_share"]),
            "0.8-1.25 oracle deg per unit": (rot, lambda d: d.oracle_deg_per_unit.between(
                *GOALS["oracle_deg_per_unit"])),
        }
        verdicts = [f"{k}: " + ("not measured" if not len(d) else "met" if bool(ok(d).all()) else "NOT met")
                    for k, (d, ok) in checks.items()]
        parts = ([f"identity kept {pert.identity_kept.min():.0%} at the study's perturbation"] if len(pert) else [])
        parts += [f"at least {rot.identity_kept.min():.0%} under rotation within +-30 deg"] if len(rot) else []
        lines.append(f"{space}, {variant}: " + ", ".join(parts) + "; " + "; ".join(verdicts) + ".")
    return lines


@dataclass
class IdentityStudy:
    """:func:`identity_study`'s table (one row per space, variant, edit and amount, led by the
    ``generator``, ``generator_hash`` and ``kimg`` columns), with the pivotal tuning's steps and one
    info per class (empty when not tuned)."""

    table: pd.DataFrame
    pivotal_steps: int = 0
    pivotal: list[dict] = field(default_factory=list)

    def pivotal_summary(self) -> str | None:
        """The tuning's cost and loss in one sentence; None when not tuned."""
        if not self.pivotal:
            return None
        infos = self.pivotal
        return (f"pivotal tuning: {self.pivotal_steps} steps on each class's {infos[0]['n_images']} views, "
                f"{np.mean([i['cpu_seconds'] for i in infos]):.0f} CPU-seconds per class; loss "
                f"{np.mean([i['loss_before'] for i in infos]):.3f} -> {np.mean([i['loss_after'] for i in infos]):.3f}")


def identity_study(G, config: StudyConfig, direction: Direction | None = None, instruments: tuple | None = None,
                   pivotal_steps: int | None = None, executor="local", progress: bool = True) -> IdentityStudy:
    """Which edits keep the vehicle's identity (toycars only: real mode has no identity oracle).

    Held-out target views (1 per class quick, 5 full) projected in W and in W+ with the study's
    projection settings, edited by the paper's direction on every row (``direction``: the study's pose
    direction, fitted or loaded as the augmentation does when None) and by its chosen-split variant
    on the rows the method kept, with the study's augmentation settings (pose check and own
    responses as ``config.augment`` asks); then, unless ``pivotal_steps`` is 0 (None: 20 quick, 100
    full), the same edits in W drawn by a generator pivotally tuned on each class's views.
    ``instruments``: (vehicle detector, pose annotator) of :func:`dapper.study.inputs.pose_instruments`
    (None: loaded from ``config``); ``executor``: where projection batches run.
    """
    if config.dataset != "toycars":
        raise ValueError(f"the identity study needs the toycars oracles; dataset={config.dataset!r} has none")
    profile = config.direction_profile or config.profile
    detector, annotator = pose_instruments(config) if instruments is None else instruments
    if direction is None:
        direction = load_or_fit_pose_direction(G, profile, detector=detector, annotator=annotator,
                                               dataset=config.dataset)
    base_settings = projection_settings(config)
    spaces, views, labels = {}, {}, None
    for space, settings in (("W", base_settings.replace(space="w")), ("W+", base_settings.replace(space="w+"))):
        targets = heldout_targets(G, "toycars", 1 if config.profile == "quick" else 5, projection_settings=settings,
                                  executor=executor)
        spaces[space], views[space], labels = targets.ws, targets.images, targets.labels
    split = load_or_fit_pose_direction(G, profile, method="chosen-split", detector=detector, annotator=annotator)
    variants = {"all rows (paper)": (direction, (0, G.num_ws)),
                f"rows {split.layers[0]}-{split.layers[1]} (method)": (split, split.layers)}
    augment = config.augment
    w_std = w_statistics(G, augment.w_samples, seed=augment.seed).std
    identity = augment_identity(
        G, spaces, labels, variants, w_std, pairs=toycars.PAIRS, study_strength=augment.strength, seed=config.seed,
        pose_annotator=checking_annotator(annotator) if augment.pose_check else None,
        pose_tolerance=augment.pose_tolerance, pose_tolerance_min_deg=augment.pose_tolerance_min_deg,
        response_annotator=checking_annotator(annotator))
    steps = pivotal_steps if pivotal_steps is not None else (20 if config.profile == "quick" else 100)
    infos = []
    if steps:  # one generator per class, tuned on all of that class's views at once (in W, the paper's space)
        tuned, infos = pivotal_generators(G, views["W"], spaces["W"], labels, PivotalSettings(steps=steps),
                                          progress=progress)
        pivotal = augment_identity(
            tuned, {"W": spaces["W"]}, labels, {f"{k}, pivotal-tuned": v for k, v in variants.items()}, w_std,
            pairs=toycars.PAIRS, study_strength=augment.strength, seed=config.seed)
        pivotal["pivotal_steps"] = steps
        pivotal["pivotal_cpu_seconds_per_class"] = float(np.mean([i["cpu_seconds"] for i in infos]))
        identity = pd.concat([identity, pivotal], ignore_index=True)
    network = config.network or default_generator_path()
    identity.insert(0, "generator", display_path(network))
    identity.insert(1, "generator_hash", weights_hash(G)[:16])  # the status says when the shipped one moved on
    identity.insert(2, "kimg", checkpoint_kimg(network))
    return IdentityStudy(identity, steps, infos)


def write_identity_outputs(table: pd.DataFrame, folder=None) -> str:
    """Write the table to ``augment_identity.csv`` and its :func:`goal_lines` to ``augment_identity.md``
    in ``folder`` (default ``reports_dir("results")``); returns the goal lines' text."""
    folder = reports_dir("results") if folder is None else folder
    table.to_csv(folder / IDENTITY_FILES["table"], index=False)
    text = "\n".join(goal_lines(table))
    (folder / IDENTITY_FILES["goals"]).write_text(text + "\n")
    return text
