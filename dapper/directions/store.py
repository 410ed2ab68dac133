"""Pose directions fitted once per generator and profile, cached for the later notebooks."""

from __future__ import annotations

from pathlib import Path

from dapper.judges.annotators import load_pose_annotator, load_vehicle_detector
from dapper.utils import cache_dir, weights_hash

from .calibrate import calibrate_direction, calibration_latents
from .methods import (
    DEFAULT_REFERENCE_YAW,
    Direction,
    annotate_samples,
    coarse_layers,
    ganspace_direction,
    interfacegan_direction,
    paper_pose_direction,
    random_direction,
    sefa_direction,
    w_spread,
)

PROFILES = {
    # quick: a few minutes on 2 busy CPU cores (CI); full: the paper's 25,000 samples, 50 held-out targets.
    # methods: the candidates fitted (None: every one of DIRECTION_METHODS); n_selection: the second sample set
    # the method selects on (never the one the directions are fitted on)
    "quick": dict(n_samples=1000, n_selection=200, n_calibration=8, calibration_rounds=1, n_eval_per_class=1,
                  eval_step=10, projection_steps=40, sample_seed=0, evaluate_all=True, methods=None, response_steps=13),
    "full": dict(n_samples=25000, n_selection=5000, n_calibration=64, calibration_rounds=2, n_eval_per_class=5,
                 eval_step=5, projection_steps=200, sample_seed=0, evaluate_all=True, methods=None, response_steps=13),
}
# Real mode's quick profile: a generated image costs several times more at 128-512 px than at 64 px,
# so the smoke test draws fewer samples, fits two of the candidates (the paper's and its local ridge
# variant, each on all and on the coarse rows), calibrates on fewer latents and evaluates only the
# directions it reports on (the method's choice and the paper's), with a shorter response sweep, and
# projects its targets (notebooks 01, 02 and 06) with 10 steps from the mean w, a smoke test's
# reconstruction (bench/real_quick.py times the quick profile against its budget at 128 px).
REAL_QUICK_PROFILE = dict(PROFILES["quick"], n_samples=100, n_selection=50, n_calibration=4, projection_steps=10,
                          evaluate_all=False, methods=("paper", "ridge-local"), response_steps=7)


def profile_settings(profile: str, dataset: str = "toycars") -> dict:
    """Notebook 02's settings for ``profile`` on ``dataset`` (:data:`PROFILES`; real mode's quick
    profile is :data:`REAL_QUICK_PROFILE`)."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {', '.join(PROFILES)}")
    return dict(REAL_QUICK_PROFILE if profile == "quick" and dataset != "toycars" else PROFILES[profile])



# Bumped when a stored direction's content changes meaning (2: the calibration's measured response),
# so a cache written before is never read as if it had it.
STORE_VERSION = 2


def _direction_dir(G) -> Path:
    return cache_dir("directions", f"{weights_hash(G)[:16]}-v{STORE_VERSION}")


def _chosen_path(G, profile: str, variant: str) -> Path:
    if variant not in ("all", "split"):
        raise ValueError(f"variant must be 'all' or 'split', got {variant!r}")
    return _direction_dir(G) / (f"{profile}-chosen.json" if variant == "all" else f"{profile}-chosen-split.json")


def save_chosen_direction(G, direction: Direction, profile: str, name: str, variant: str = "all",
                          reason: str = "") -> Path:
    """Store the direction notebook 02 chose with the method's own instruments
    (:func:`dapper.directions.select_direction`), for notebooks 03/06 and :mod:`dapper.augment`:
    ``variant="all"`` edits every W+ row, ``"split"`` only the rows :func:`choose_layer_split` kept."""
    d = direction.replace()
    d.metadata.update(chosen_as=name, chosen_variant=variant, chosen_because=reason)
    return d.save(_chosen_path(G, profile, variant))


def load_or_fit_pose_direction(G, profile: str = "quick", method: str = "chosen", detector=None, annotator=None,
                               reference_yaw: float = DEFAULT_REFERENCE_YAW, progress: bool = True,
                               dataset: str = "toycars") -> Direction:
    """The pose direction for generator ``G``, calibrated in annotator degrees.

    ``method="chosen"``: the one notebook 02 picked for this generator and profile if it ran,
    else the paper's (all layers); ``"chosen-split"``: its variant on the rows the method kept,
    else the paper's on the coarse rows. ``method="paper"`` (or ``"<method>/<range>"`` such as
    ``"interfacegan/coarse"``): that method. Fitted on ``profile_settings(profile, dataset)`` samples and cached
    in ``cache_dir("directions", "<hash>-v<STORE_VERSION>")``. Coefficients are degrees;
    ``.in_paper_units()`` gives the paper's units for the paper's direction.
    """
    folder = _direction_dir(G)
    if method in ("chosen", "chosen-split"):
        chosen = _chosen_path(G, profile, "all" if method == "chosen" else "split")
        if chosen.exists():
            return Direction.load(chosen)
        method = "paper/all" if method == "chosen" else "paper/coarse"
    if "/" not in method:
        method = f"{method}/all"
    path = folder / f"{profile}-{method.replace('/', '-')}-ref{reference_yaw:g}.json"
    if path.exists():
        return Direction.load(path)

    cfg = profile_settings(profile, dataset)
    detector = load_vehicle_detector(device=next(G.parameters()).device) if detector is None else detector
    annotator = load_pose_annotator(device=next(G.parameters()).device) if annotator is None else annotator
    samples = annotate_samples(G, cfg["n_samples"], detector, annotator, cfg["sample_seed"], progress=progress)
    kind, rng = method.split("/")
    lr = {"all": (0, G.num_ws), "coarse": coarse_layers(G)}[rng]
    if kind == "paper":
        d = paper_pose_direction(G, samples=samples, reference_yaw=reference_yaw, layers=lr)
    elif kind == "ridge-local":
        d = paper_pose_direction(G, samples=samples, threshold_quantile=0.0, reference_yaw=reference_yaw, layers=lr,
                                 window=60.0, method="ridge-local")
    elif kind == "interfacegan":
        d = interfacegan_direction(samples, reference_yaw, lr)
    elif kind == "sefa":
        d = sefa_direction(G, samples, lr, reference_yaw)
    elif kind == "ganspace":
        d = ganspace_direction(samples, lr, reference_yaw)
    elif kind == "random":
        d = random_direction(G.w_dim, lr, 0, samples, reference_yaw)
    else:
        raise ValueError(f"unknown method {method!r}")
    ws = calibration_latents(samples, cfg["n_calibration"], reference_yaw, num_ws=G.num_ws)
    d = calibrate_direction(G, d, annotator, ws, max_shift=w_spread(samples), rounds=cfg["calibration_rounds"],
                            response_steps=cfg["response_steps"])
    d.save(path)
    return d


