"""Pose directions in W, the method's part that turns a vehicle.

* :mod:`.methods`: the paper's supervised direction (ridge from W to yaw, thresholded), the
  ``ridge-local`` variant and four baselines (InterFaceGAN, SeFa, GANSpace, random), fitted on
  generated samples that the method's own detector and pose annotator labelled; editing along them.
* :mod:`.calibrate`: rescaling a direction so that one unit is one degree of yaw as the annotator
  reads it; every method fitted on one set of samples.
* :mod:`.select`: the choice of direction and of the rows an edit touches, by the annotator and
  the vehicle detector alone.
* :mod:`.store`: the direction of a generator and profile, fitted once and cached for the notebooks.

How well a direction turns a vehicle and keeps its identity is measured by the independent oracles
in :mod:`dapper.study.direction_eval`; nothing in this package reads them.
"""

from .calibrate import (
    DIRECTION_METHODS,
    annotator_response,
    calibrate_direction,
    calibration_latents,
    fit_directions,
    own_responses,
    with_response,
)
from .methods import (
    DEFAULT_REFERENCE_YAW,
    PAPER_COEFFICIENTS,
    Direction,
    PoseSamples,
    annotate_samples,
    apply_direction,
    circular_mean_deg,
    coarse_layers,
    edit_images,
    fit_ridge,
    ganspace_direction,
    interfacegan_direction,
    paper_pose_direction,
    random_direction,
    sefa_basis,
    sefa_direction,
    srgb_to_lab,
    style_layers,
    threshold_weights,
    unwrap_deg,
    w_spread,
    wrap_deg,
    yaw_sequence_metrics,
)
from .select import (
    SELECTION_COLUMNS,
    SELECTION_RULE,
    DirectionChoice,
    Selection,
    choose_direction,
    choose_layer_split,
    foreground_mask,
    masked_mean_lab,
    measure_candidates,
    select_direction,
)
from .store import (
    PROFILES,
    REAL_QUICK_PROFILE,
    load_or_fit_pose_direction,
    profile_settings,
    save_chosen_direction,
)

__all__ = [
    "Direction", "PoseSamples", "apply_direction", "edit_images", "annotate_samples", "paper_pose_direction",
    "interfacegan_direction", "sefa_direction", "sefa_basis", "ganspace_direction", "random_direction",
    "DIRECTION_METHODS", "annotator_response", "calibrate_direction", "calibration_latents", "fit_directions",
    "fit_ridge", "threshold_weights", "with_response", "own_responses",
    "w_spread", "load_or_fit_pose_direction", "save_chosen_direction", "style_layers", "coarse_layers",
    "wrap_deg", "unwrap_deg", "circular_mean_deg", "srgb_to_lab", "yaw_sequence_metrics", "PAPER_COEFFICIENTS",
    "DEFAULT_REFERENCE_YAW", "PROFILES", "REAL_QUICK_PROFILE", "profile_settings", "SELECTION_COLUMNS",
    "SELECTION_RULE", "Selection", "measure_candidates",
    "select_direction", "choose_layer_split", "DirectionChoice", "choose_direction", "foreground_mask",
    "masked_mean_lab",
]
