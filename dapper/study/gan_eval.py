"""How good is the source GAN? Frechet distance, pose coverage and (with projection) identity kept.

``python -m dapper gan-eval [--network PATH] [--n 5000]`` writes ``results/source_gan.csv`` and
``figures/fig_source_gan.png`` under :func:`dapper.utils.reports_dir`.

* Frechet distance between generated images and source renders in the feature space of a network
  the GAN never saw (the identity oracle's pooled features, trained on labelled target renders),
  next to the same distance between two disjoint halves of fresh source renders: the ratio says
  how far the generator is from the source distribution in units of sampling noise. Two reference
  rows put the number on a scale one can picture: the distance of real source renders whose detail
  was removed by resampling them to 3/4 and 1/2 of the resolution and back (48 and 32 px for the
  shipped 64 px generator; the oracle's features are detail-sensitive, so blur alone costs a lot).
  The distance is also split into its mean and covariance terms.
* Pose coverage: share of 36 yaw bins (10 degrees each) in which the pose oracle finds at least
  a fifth of the uniform share of generated samples; the same number for source renders.
* Identity kept after projection: share of held-out target images (pickups included) whose
  reconstruction the identity oracle still assigns to their class (needs ``dapper.inversion.projection``),
  in W (the study's space, where the goal is judged) and in W+ (one code per layer); and after
  pivotal tuning (the tuned conditions' inversion): a copy of the generator tuned on each view
  alone around its W projection redraws it, with the tuning's CPU-seconds per view.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import linalg
from tqdm.auto import tqdm

from dapper.data import toycars
from dapper.inversion.perceptual import load_perceptual
from dapper.inversion.pivotal import tune_generator
from dapper.inversion.projection import ProjectionSettings, project_images
from dapper.judges import oracles
from dapper.study.inputs import project_in_parallel
from dapper.utils import atomic_save, display_path, reports_dir

YAW_BINS = 36
COVERAGE_MIN_SHARE = 0.2  # a bin counts as covered with >= 20% of the uniform share of samples
REFERENCE_FRACTIONS = (0.75, 0.5)  # source renders resampled to these fractions of the resolution and back


def _render_workers() -> int:
    """Processes for rendering the references (each image depends only on its seed and index)."""
    return max(2, (os.cpu_count() or 2) - 1)


def frechet_terms(feat_a: np.ndarray, feat_b: np.ndarray) -> tuple[float, float]:
    """(mean term, covariance term) of the Frechet distance between Gaussians fitted to two
    feature sets [N, D]; their sum is :func:`frechet_distance`."""
    mu_a, mu_b = feat_a.mean(0), feat_b.mean(0)
    cov_a = np.cov(feat_a, rowvar=False)
    cov_b = np.cov(feat_b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    covmean = np.real(covmean[0] if isinstance(covmean, tuple) else covmean)
    return float(((mu_a - mu_b) ** 2).sum()), float(np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def frechet_distance(feat_a: np.ndarray, feat_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets [N, D]."""
    return float(sum(frechet_terms(feat_a, feat_b)))


def resample(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, 3] shrunk to ``size`` px (antialiased) and enlarged back (bilinear): the same
    images with the detail finer than ``size`` px removed."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    small = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    back = torch.nn.functional.interpolate(small, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
    return back.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def oracle_features(images, net: torch.nn.Module | None = None, batch_size: int = 256) -> np.ndarray:
    """Pooled features [N, D] of the identity oracle for uint8 NHWC or float NCHW images."""
    net = net or oracles.load_identity_oracle()
    device = next(net.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = oracles.to_model_input(images[i:i + batch_size], device)
        if x.shape[-2:] != (oracles.INPUT_SIZE, oracles.INPUT_SIZE):
            x = torch.nn.functional.interpolate(x, size=(oracles.INPUT_SIZE,) * 2, mode="bilinear",
                                                antialias=True, align_corners=False)
        h = net.features(x)
        if net.trunk is not None:
            h = net.trunk(h)
        out.append(h.float().cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def generate(G, n: int, seed: int = 0, batch_size: int = 250, truncation_psi: float = 1.0) -> np.ndarray:
    """n generated images as uint8 [n, H, W, 3]."""
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in tqdm(range(0, n, batch_size), desc="generate", leave=False):
        z = torch.randn([min(batch_size, n - i), G.z_dim], generator=gen).to(device)
        img = G(z, None, truncation_psi=truncation_psi, noise_mode="const")
        out.append(((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def yaw_coverage(yaw_deg: np.ndarray) -> tuple[float, np.ndarray]:
    """(share of covered 10-degree bins, histogram counts [36])."""
    counts = np.bincount((np.asarray(yaw_deg) % 360 // (360 / YAW_BINS)).astype(int), minlength=YAW_BINS)
    needed = COVERAGE_MIN_SHARE * len(yaw_deg) / YAW_BINS
    return float((counts >= needed).mean()), counts


# Issue goals of the world-v2 generator (bench/gan_legs.py draws them, the README status states them).
GOALS = {"identity_kept_w": 0.85, "identity_kept_wplus": 0.92, "pair_kept_w": 0.97, "pose_coverage": 0.95,
         "identity_kept_pivotal": 0.95}


FORECAST_MEASURES = ("fd_ratio", "identity_kept_w", "identity_kept_wplus", "pair_kept_w")


def _forecast_transform(metric: str, values: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The scale on which a measure is fitted as a straight line in log kimg: log for the FD
    ratio (a power law), logit for a share (it saturates at 1), the share clipped half a view away
    from 0 and 1 so a perfect score stays finite."""
    if metric == "fd_ratio":
        return np.log(values)
    p = np.clip(values, 0.5 / n, 1 - 0.5 / n)
    return np.log(p / (1 - p))


def goal_forecast(legs):
    """How many training CPU-hours each goal of :data:`GOALS` (and the FD ratio's, that of source renders resampled
    to 48 px) is away, extrapolated from the legs measured so far (``bench/results/source_gan_v2_legs.csv``: one
    row per leg with ``cpu_hours``, ``kimg``, the measures and ``n_projected``).

    Each measure is fitted as a line in log kimg on the scale of :func:`_forecast_transform` (least squares over
    every leg; kimg, not CPU-seconds, is the training's clock: a leg that shared the cores counts more CPU-
    seconds for the same images), and the line is followed to the goal. One row per measure: ``latest`` (the
    last leg's value), ``goal``, ``slope`` (per doubling of kimg, on the fitted scale), ``kimg_at_goal`` (the
    last leg's kimg when that leg meets the goal; inf when the fit does not move towards it; else nan with fewer than
    two legs), ``cpu_hours_at_goal`` (at the legs' mean kimg per CPU-hour) and ``holdout_error``: the last leg's
    value predicted from the others minus the one measured (nan with fewer than three legs), the forecast's own
    track record. An extrapolation of few points: it says the order of magnitude left, not a date."""
    df = legs[(legs["cpu_hours"] > 0) & (legs["kimg"] > 0)].sort_values("kimg")
    kimg = df["kimg"].to_numpy(float)
    n = df["n_projected"].to_numpy(float) if "n_projected" in df else np.full(len(df), 100.0)
    last = df.iloc[-1] if len(df) else None
    kimg_per_hour = float(kimg[-1] / df["cpu_hours"].iloc[-1]) if len(df) else np.nan
    rows = []
    for metric in FORECAST_MEASURES:
        if metric not in df or last is None:
            continue
        goal = float(last["fd_ratio_source_48px"]) if metric == "fd_ratio" else GOALS[metric]
        y = _forecast_transform(metric, df[metric].to_numpy(float), n)
        x = np.log2(kimg)
        target = _forecast_transform(metric, np.array([goal]), np.array([1e9]))[0]
        at_goal = slope = err = np.nan
        latest = float(last[metric])
        met = latest <= goal if metric == "fd_ratio" else latest >= goal  # the FD ratio falls towards its goal
        if len(df) >= 2:
            slope, icpt = np.polyfit(x, y, 1)
            towards = (target - y[-1]) * slope > 0 or (target - y[-1]) == 0
            at_goal = float(2 ** ((target - icpt) / slope)) if towards else np.inf
            if len(df) >= 3:
                s2, i2 = np.polyfit(x[:-1], y[:-1], 1)
                pred = s2 * x[-1] + i2
                pred = float(np.exp(pred)) if metric == "fd_ratio" else float(1 / (1 + np.exp(-pred)))
                err = pred - latest
        if met:  # reached: no extrapolation, whatever the line does
            at_goal = float(kimg[-1])
        rows.append({"metric": metric, "latest": latest, "goal": goal, "points": len(df),
                     "kimg_now": float(kimg[-1]), "cpu_hours_now": float(last["cpu_hours"]), "slope": slope,
                     "kimg_at_goal": at_goal, "cpu_hours_at_goal": at_goal / kimg_per_hour,
                     "holdout_error": err})
    return pd.DataFrame(rows)


STOP_RULE_MORE_CPU_HOURS = 40.0
STOP_RULE_LEGS = 3
STOP_RULE_MEASURES = ("identity_kept_w", "identity_kept_wplus", "pair_kept_w")


def stop_rule(forecast) -> dict | None:
    """The legs' stop rule, read from :func:`goal_forecast`'s table: once at least
    :data:`STOP_RULE_LEGS` measured legs put a goal of :data:`STOP_RULE_MEASURES` more than
    :data:`STOP_RULE_MORE_CPU_HOURS` training CPU-hours beyond the CPU-hours spent (or never in reach),
    training stops and the best generator measured is shipped. ``None`` with too few legs; otherwise
    ``applies``, the farthest goal's ``metric``, ``more_cpu_hours`` (inf when its line does not move
    towards it), ``cpu_hours_now``, ``kimg_now`` and ``points``."""
    f = forecast[forecast["metric"].isin(STOP_RULE_MEASURES)] if len(forecast) else forecast
    if not len(f) or int(f["points"].iloc[0]) < STOP_RULE_LEGS:
        return None
    more = (f["cpu_hours_at_goal"].astype(float) - f["cpu_hours_now"].astype(float)).clip(lower=0.0)
    more[f["latest"].astype(float) >= f["goal"].astype(float)] = 0.0  # a goal met is no hour away
    far = f.loc[more.idxmax()]
    return {"applies": bool(more.max() > STOP_RULE_MORE_CPU_HOURS), "metric": str(far.metric),
            "goal": float(far.goal), "more_cpu_hours": float(more.max()), "cpu_hours_now": float(far.cpu_hours_now),
            "kimg_now": float(far.kimg_now), "points": int(far.points)}


def identity_after_projection(G, n_per_class: int, steps: int | None = None, spaces=("w",),
                              init: str = "encoder", pivotal=None, pivot_space: str = "w", workers: int = 1) -> dict:
    """How the identity oracle sees held-out target views projected in each of ``spaces`` ("w",
    "w+"; dapper's default schedule otherwise), rendered and judged once for all spaces:
    ``oracle_on_originals`` (the oracle's accuracy on the views themselves: the ceiling) and, per
    space, ``kept`` (share assigned to their class), ``per_class`` (that share per class [10]) and
    ``pair_kept`` (share assigned to their class or its look-alike twin: what is left when only the
    fine detail is lost). ``init``: the projection's start (``"w_avg"`` for a generator with no
    encoder of its own).

    ``pivotal`` (a :class:`dapper.inversion.pivotal.PivotalSettings`): also the inversion the tuned
    conditions use, under ``"pivotal"``: each view's projection in ``pivot_space`` is the pivot of
    a copy of ``G`` tuned on that view alone, whose redraw of the pivot is judged; with
    ``cpu_seconds_per_view``, what the tuning cost. ``workers`` > 1: the projections are made by that many
    single-thread processes first (into the projection cache), as the study makes its own."""
    views = toycars.target_test_views(n_per_class, seed=7, size=G.img_resolution, workers=_render_workers())
    labels = np.asarray(views.labels)
    original, _ = oracles.predict_identity(views.images)
    out = {"oracle_on_originals": float((original == labels).mean())}
    spaces = tuple(spaces) + ((pivot_space,) if pivotal is not None and pivot_space not in spaces else ())
    for space in spaces:
        settings = ProjectionSettings(space=space, init=init)
        if steps is not None:
            settings = settings.replace(steps=steps)
        if workers > 1:
            project_in_parallel(G, views.images, settings, workers)
        proj = project_images(G, views.images, settings=settings, progress=True)
        pred, _ = oracles.predict_identity(proj.reconstructions)
        out[space] = identity_shares(pred, labels, len(toycars.TARGET_CLASSES), toycars.PAIRS)
        if pivotal is not None and space == pivot_space:
            redrawn, cpu = pivotal_redraws(G, views.images, proj.ws, pivotal)
            pred, _ = oracles.predict_identity(redrawn)
            out["pivotal"] = {**identity_shares(pred, labels, len(toycars.TARGET_CLASSES), toycars.PAIRS),
                              "pivot": space, "cpu_seconds_per_view": cpu / len(labels),
                              "settings": pivotal.to_dict()}
    return out


def pivotal_redraws(G, images, ws, settings) -> tuple[torch.Tensor, float]:
    """Each image redrawn by a copy of ``G`` pivotally tuned on it alone around its projection
    ``ws[i]`` (:func:`dapper.inversion.pivotal.tune_generator`): float [N, 3, R, R] in [-1, 1], and
    the tuning's CPU-seconds in all."""
    device = next(G.parameters()).device
    perceptual = (load_perceptual(settings.vgg16_weights, settings.lpips_weights, device=device)
                  if settings.perceptual_weight > 0 else None)
    out, cpu = [], 0.0
    for i in tqdm(range(len(images)), desc="pivotal tuning per view", leave=False):
        tuned, info = tune_generator(G, np.asarray(images[i:i + 1]), ws[i:i + 1], settings, perceptual=perceptual)
        cpu += info["cpu_seconds"]
        with torch.no_grad():
            out.append(tuned.synthesis(ws[i:i + 1].to(device), noise_mode="const").clamp(-1, 1).cpu())
    return torch.cat(out), cpu


def self_identity_after_projection(G, n: int = 100, pool: int = 1000, seed: int = 11, spaces=("w",),
                                   init: str = "encoder") -> dict:
    """The projection's own ceiling: of ``pool`` generated images, the ``n`` the identity oracle
    names most confidently are projected back (as :func:`identity_after_projection` does); per
    space, the share whose reconstruction the oracle names as it named the image (``kept``) or its
    twin (``pair_kept``). The generator can draw these identities, so a low share here points at
    the projection (its start, schedule or loss), a high one beside a low held-out share at what
    the generator cannot draw. Also ``confidence``: the oracle's lowest probability among them."""
    images = generate(G, pool, seed=seed)
    named, probs = oracles.predict_identity(images)
    top = np.argsort(-probs.max(1), kind="stable")[:n]
    out = {"n": len(top), "confidence": float(probs.max(1)[top].min())}
    for space in spaces:
        proj = project_images(G, images[top], settings=ProjectionSettings(space=space, init=init), progress=True)
        pred, _ = oracles.predict_identity(proj.reconstructions)
        shares = identity_shares(pred, named[top], len(toycars.TARGET_CLASSES), toycars.PAIRS)
        out[space] = {k: shares[k] for k in ("kept", "pair_kept")}
    return out


def pair_hits(pred, labels, pairs) -> np.ndarray:
    """bool [N]: each prediction is its true label or that label's look-alike twin (``pairs`` of
    class indices; a class outside every pair is its own pair)."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    twin = np.arange(int(max(pred.max(initial=0), labels.max(initial=0), *(max(p) for p in pairs))) + 1)
    for a, b in pairs:
        twin[a], twin[b] = b, a
    return (pred == labels) | (pred == twin[labels])


def identity_shares(pred, labels, n_classes: int, pairs) -> dict:
    """``kept``, ``per_class`` and ``pair_kept`` (see :func:`identity_after_projection`) of
    predicted against true labels, and per image ``hits`` and ``pair_hits`` (bool [N], for paired
    comparisons of two generators on the same views); classes outside every pair count as their own pair."""
    pred, labels = np.asarray(pred), np.asarray(labels)
    hit = pred == labels
    per_class = np.array([hit[labels == c].mean() if (labels == c).any() else np.nan for c in range(n_classes)])
    pair = pair_hits(pred, labels, pairs)
    return {"kept": float(hit.mean()), "per_class": per_class, "pair_kept": float(pair.mean()),
            "hits": hit, "pair_hits": pair}


def evaluate(G, n: int = 5000, seed: int = 0, with_projection: bool = True, n_per_class: int = 20,
             pivotal=None) -> dict:
    """Every measure of the module docstring; ``pivotal`` (:class:`dapper.inversion.pivotal.PivotalSettings`,
    with projection only): also identity kept after pivotal tuning per view around the W pivot."""
    t0 = time.time()
    fake = generate(G, n, seed=seed)
    # Fresh source renders from a seed the GAN was not trained on (training used data_seed 0).
    real, _ = toycars.source_batch(2 * n, seed=1000 + seed, size=G.img_resolution, workers=_render_workers())
    f_fake = oracle_features(fake)
    f_real = oracle_features(real)
    fd_mean, fd_cov = frechet_terms(f_fake, f_real[:n])
    fd_gen = fd_mean + fd_cov
    fd_halves = frechet_distance(f_real[:n], f_real[n:])
    # References: the second half of the real renders, detail removed, against the first half.
    fd_reference = {size: frechet_distance(oracle_features(resample(real[n:], size)), f_real[:n])
                    for size in (round(f * G.img_resolution) for f in REFERENCE_FRACTIONS)}
    yaw_fake = oracles.predict_yaw(fake)
    yaw_real = oracles.predict_yaw(real[:n])
    cov_fake, hist_fake = yaw_coverage(yaw_fake)
    cov_real, hist_real = yaw_coverage(yaw_real)
    result = {
        "n": n, "fd_generated_vs_source": fd_gen, "fd_source_halves": fd_halves, "fd_ratio": fd_gen / fd_halves,
        "fd_mean_term": fd_mean, "fd_covariance_term": fd_cov, "fd_source_resampled": fd_reference,
        "pose_coverage_generated": cov_fake, "pose_coverage_source": cov_real,
        "yaw_hist_generated": hist_fake.tolist(), "yaw_hist_source": hist_real.tolist(),
        "samples": fake[:32],
    }
    if with_projection:
        ident = identity_after_projection(G, n_per_class, spaces=("w", "w+"), pivotal=pivotal)
        w, wplus = ident["w"], ident["w+"]
        result["identity_kept_after_projection"] = w["kept"]
        result["identity_kept_per_class"] = w["per_class"].tolist()
        result["pair_kept_after_projection"] = w["pair_kept"]
        result["identity_oracle_on_originals"] = ident["oracle_on_originals"]
        result["n_projected"] = n_per_class * len(w["per_class"])
        result["identity_kept_after_projection_wplus"] = wplus["kept"]
        result["pair_kept_after_projection_wplus"] = wplus["pair_kept"]
        if "pivotal" in ident:
            result["identity_kept_after_pivotal"] = ident["pivotal"]["kept"]
            result["pair_kept_after_pivotal"] = ident["pivotal"]["pair_kept"]
            result["pivotal_cpu_seconds_per_view"] = ident["pivotal"]["cpu_seconds_per_view"]
            result["pivotal_steps"] = ident["pivotal"]["settings"]["steps"]
    result["seconds"] = time.time() - t0
    return result


def checkpoint_kimg(path) -> float | None:
    """The training kimg a generator checkpoint's JSON sidecar records (None when it has none)."""
    sidecar = Path(path).with_suffix(".json")
    return json.loads(sidecar.read_text()).get("metadata", {}).get("kimg") if sidecar.exists() else None


def training_log(network) -> Path | None:
    """The training log beside a generator checkpoint: ``<name>_log.csv`` as the shipped exports have
    it, else a run folder's ``log.csv``; None when there is neither."""
    network = Path(network)
    logs = [p for p in (network.with_name(network.stem + "_log.csv"), network.with_name("log.csv")) if p.exists()]
    return logs[0] if logs else None


def write_results(result: dict, network: str, out_dir: Path | None = None, generator_hash: str = "",
                  kimg=None) -> Path:
    """``results/source_gan.csv``: one row per measure, with the goal of :data:`GOALS` where it has
    one (the FD ratio's goal: below that of source renders resampled to 3/4 of the resolution) and whether it is met;
    every row names the generator measured (``network``, its :func:`dapper.utils.weights_hash` and
    training kimg when known), so a later reader can tell whether the shipped generator has moved on."""
    floor = result["fd_source_halves"]
    ref_size = max(result["fd_source_resampled"], default=None)  # 3/4 of the resolution: 48 px at 64
    ref = None if ref_size is None else result["fd_source_resampled"][ref_size] / floor
    rows = [
        ("fd_generated_vs_source", result["fd_generated_vs_source"], "", ""),
        ("fd_source_halves", floor, "", ""),
        ("fd_ratio", result["fd_ratio"], "" if ref is None else f"< {ref:.3g} (source resampled to {ref_size} px)",
         "" if ref is None else result["fd_ratio"] < ref),
        ("fd_mean_term", result["fd_mean_term"], "", ""),
        ("fd_covariance_term", result["fd_covariance_term"], "", ""),
    ]
    for size, fd in sorted(result["fd_source_resampled"].items(), reverse=True):
        rows += [(f"fd_source_resampled_{size}px", fd, "", ""),
                 (f"fd_ratio_source_resampled_{size}px", fd / floor, "", "")]
    goal = GOALS["pose_coverage"]
    rows += [
        ("pose_coverage_generated", result["pose_coverage_generated"], f">= {goal:.2f}",
         result["pose_coverage_generated"] >= goal),
        ("pose_coverage_source", result["pose_coverage_source"], "", ""),
    ]
    # the identity goals are judged on the projections (W, the study's space, and W+)
    for key, goal_key in (("identity_kept_after_projection", "identity_kept_w"),
                          ("identity_kept_after_projection_wplus", "identity_kept_wplus"),
                          ("pair_kept_after_projection", "pair_kept_w"),
                          ("identity_kept_after_pivotal", "identity_kept_pivotal")):
        if key in result:
            rows.append((key, result[key], f">= {GOALS[goal_key]:.2f}", result[key] >= GOALS[goal_key]))
    plain = ("pair_kept_after_projection_wplus", "identity_oracle_on_originals", "pair_kept_after_pivotal",
             "pivotal_cpu_seconds_per_view", "pivotal_steps")
    rows += [(k, result[k], "", "") for k in plain if k in result]
    df = pd.DataFrame(rows, columns=["metric", "value", "goal", "met"])
    df["n_generated"] = result["n"]
    df["network"] = display_path(network)
    df["generator_hash"] = generator_hash
    df["kimg"] = "" if kimg is None else kimg
    csv = Path(out_dir or reports_dir("results")) / "source_gan.csv"
    atomic_save(csv, lambda p: df.to_csv(p, index=False))
    return csv
