"""Source-GAN metrics on planted data."""

import numpy as np

from dapper.gan_eval import frechet_distance, yaw_coverage


def test_frechet_distance_zero_for_same_set_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 8))
    b = rng.normal(size=(2000, 8))
    assert abs(frechet_distance(a, a)) < 1e-6
    near = frechet_distance(a, b)
    far = frechet_distance(a, b + 1.0)
    assert near < 0.1 and abs(far - 8.0) < 0.5  # mean shift of 1 in 8 dims adds 8


def test_yaw_coverage():
    full, counts = yaw_coverage(np.arange(0, 360, 0.5))
    assert full == 1.0 and counts.sum() == 720
    half, _ = yaw_coverage(np.arange(0, 180, 0.5))
    assert half == 0.5
    wrapped, _ = yaw_coverage(np.array([-5.0, 365.0]))
    assert wrapped == 2 / 36
