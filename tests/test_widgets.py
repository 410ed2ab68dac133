"""dapper.widgets: the latent explorer's logic and its ipywidgets, driven without a browser.

A tiny generator (16 px) and a stand-in pose direction are made here; no checkpoint is read.
Sliders are moved by setting their values, as the browser's widget manager does.
"""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from dapper.directions import Direction, apply_direction
from dapper.widgets import ExplorerState, LatentExplorer


@pytest.fixture(scope="module")
def G(tiny_generator):
    return tiny_generator(track_w_avg=True)  # a tracked w_avg, as in a trained generator


def pose_direction(G, degrees_per_unit=1.0, units="degrees"):
    v = np.random.default_rng(3).standard_normal(G.w_dim)
    return Direction(v, (0, G.num_ws), "stand-in", scale=0.05, units=units, degrees_per_unit=degrees_per_unit)


@pytest.fixture
def explorer(G, tmp_path):
    ws = G.mapping(torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(1)), None)
    originals = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    return LatentExplorer(G, ws, originals, names=["a", "b", "c"], pose_direction=pose_direction(G),
                          n_components=2, w_samples=256, save_dir=tmp_path / "saved")


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def shown(ex) -> np.ndarray:
    return decode(ex.images["edited"].value)


def synth(G, ws) -> np.ndarray:
    with torch.no_grad():
        img = G.synthesis(torch.as_tensor(ws, dtype=torch.float32)[None], noise_mode="const").clamp(-1, 1)
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def test_pose_slider_moves_along_the_direction(G, explorer):
    ex = explorer
    ex.widget()
    recon = decode(ex.images["reconstruction"].value)
    assert np.array_equal(recon, synth(G, ex.ws[0]))
    assert np.array_equal(decode(ex.images["original"].value), ex.originals[0])
    assert np.array_equal(shown(ex), recon)  # pose 0: the reconstruction

    ex.controls["pose"].value = 20.0
    moved = shown(ex)
    assert ex.state.pose == 20.0
    assert np.abs(moved.astype(int) - recon).max() > 0
    expected = apply_direction(ex.ws[:1], ex.pose_direction, [20.0])[0, 0]
    assert np.array_equal(moved, synth(G, expected))

    ex.controls["pose"].value = -20.0
    assert not np.array_equal(shown(ex), moved)
    ex.controls["pose"].value = 20.0
    assert np.array_equal(shown(ex), moved)  # same values, same image
    ex.controls["pose"].value = 0.0
    assert np.array_equal(shown(ex), recon)
    assert "update" in ex.status.value and len(ex.update_seconds) == 4


def test_every_slider_changes_the_image_and_returns_it(G, explorer):
    ex = explorer
    ex.widget()
    recon = shown(ex)
    c = ex.controls
    for widget, value in [(c["strength"], 1.0), (c["components"][0], 2.0), (c["components"][1], -1.5),
                          (c["truncation"], 0.5)]:
        before = shown(ex)
        widget.value = value
        assert not np.array_equal(shown(ex), before), widget.description
    for widget, value in [(c["perturb_seed"], 7), (c["method"], "ganspace"), (c["layers"], (0, 2))]:
        before = shown(ex)
        widget.value = value
        assert not np.array_equal(shown(ex), before), widget.description
    assert ex.state == ExplorerState("image", 0, 0, 0.0, 1.0, 7, "ganspace", (0, 2), (2.0, -1.5), 0.5)
    assert np.array_equal(shown(ex), ex.render().edited)
    for widget, value in [(c["strength"], 0.0), (c["components"][0], 0.0), (c["components"][1], 0.0),
                          (c["truncation"], 1.0)]:
        widget.value = value
    assert np.array_equal(shown(ex), recon)


def test_components_edit_only_their_rows_in_standard_deviations(G, explorer):
    ex = explorer
    for method in ("sefa", "ganspace"):
        u, sigma = ex.component_basis(method, (1, 3))
        assert u.shape == (2, G.w_dim) and sigma.shape == (2,) and (sigma > 0).all()
        np.testing.assert_allclose((u @ u.T).numpy(), np.eye(2), atol=1e-5)
        ex.set(method=method, layers=(1, 3), components=(1.5, 0.0))
        delta = ex.edited_ws() - ex.ws[0]
        expected = (1.5 * sigma[0] * u[0]).expand(2, -1)
        np.testing.assert_allclose(delta[1:3].numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
        assert delta[0].abs().max() == 0 and delta[3:].abs().max() == 0


def test_truncation_zero_gives_the_mean_car(G, explorer):
    ex = explorer
    ex.widget()
    ex.controls["pose"].value = 15.0
    ex.controls["strength"].value = 0.8
    ex.controls["truncation"].value = 0.0
    mean_car = synth(G, G.mapping.w_avg.expand(G.num_ws, -1))
    assert np.array_equal(shown(ex), mean_car)
    ex.controls["image"].value = 2  # any source, any edit: the same mean car
    assert np.array_equal(shown(ex), mean_car)


def test_image_and_seed_sources(G, explorer):
    ex = explorer
    ex.widget()
    first = shown(ex)
    ex.controls["image"].value = 1
    assert ex.state.source == "image" and ex.state.image == 1
    assert np.array_equal(decode(ex.images["original"].value), ex.originals[1])
    assert np.array_equal(decode(ex.images["reconstruction"].value), synth(G, ex.ws[1]))
    assert not np.array_equal(shown(ex), first)
    assert ex.controls["seed"].disabled

    ex.controls["image"].value = -1  # "random seed"
    assert ex.state.source == "seed" and not ex.controls["seed"].disabled
    car = shown(ex)
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0))
    assert np.array_equal(car, synth(G, G.mapping(z, None)[0]))
    assert np.array_equal(decode(ex.images["original"].value), car)  # nothing was projected: shown twice
    ex.controls["seed"].value = 5
    assert ex.state.seed == 5 and not np.array_equal(shown(ex), car)
    ex.controls["seed"].value = 0
    assert np.array_equal(shown(ex), car)


def test_save_button_writes_image_latent_and_state(G, explorer, tmp_path):
    ex = explorer
    ex.widget()
    ex.controls["pose"].value = 10.0
    ex.controls["components"][0].value = 1.0
    ex.save_button.click()
    folder = tmp_path / "saved"
    files = sorted(p.name for p in folder.iterdir())
    assert len(files) == 3 and not any(f.startswith(".") for f in files), files  # no temp files left
    png, npy, js = (next(folder.glob(f"*.{ext}")) for ext in ("png", "npy", "json"))
    assert png.stem == npy.stem == js.stem and png.stem.startswith("image000_")
    assert np.array_equal(np.asarray(Image.open(png)), shown(ex))
    latent = np.load(npy)
    assert latent.dtype == np.float32 and latent.shape == (G.num_ws, G.w_dim)
    assert np.array_equal(synth(G, latent), shown(ex))  # the latent redraws the saved image
    record = json.loads(js.read_text())
    assert record["state"]["pose"] == 10.0 and record["pose_units"] == "degrees" and record["source_name"] == "a"
    assert "saved" in ex.status.value and png.name in ex.status.value

    ex.save_button.click()  # the same state again: the same files, nothing new
    assert sorted(p.name for p in folder.iterdir()) == files
    ex.controls["pose"].value = 11.0
    paths = ex.save(tmp_path / "elsewhere")
    assert all(p.exists() and p.parent == tmp_path / "elsewhere" for p in paths.values())


def test_calibration_units(G):
    ws = torch.zeros(1, G.num_ws, G.w_dim)
    raw = pose_direction(G, degrees_per_unit=None, units="w")
    ex = LatentExplorer(G, ws, pose_direction=raw, n_components=0, w_samples=64)
    assert ex.pose_units == "w" and ex.pose_range > 0
    assert ex.widget() is ex.widget()
    assert ex.controls["pose"].description == "pose (w)"

    calibrated = pose_direction(G, degrees_per_unit=4.0, units="w")  # 4 degrees per W unit
    ex = LatentExplorer(G, ws, pose_direction=calibrated, n_components=0, w_samples=64)
    assert ex.pose_units == "degrees" and ex.pose_range == 45.0
    ex.set(pose=8.0)  # 8 degrees = 2 units of the raw direction
    expected = apply_direction(ws, calibrated, [2.0])[0, 0]
    np.testing.assert_allclose(ex.edited_ws().numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)

    # with the annotator's measured response, degrees go through it: 8 degrees where it reads 8 is 1 unit
    responding = pose_direction(G)
    responding.metadata["response"] = {"coefficients": [-4.0, 0.0, 1.0, 4.0], "degrees": [-4.0, 0.0, 8.0, 12.0]}
    ex = LatentExplorer(G, ws, pose_direction=responding, n_components=0, w_samples=64)
    ex.set(pose=8.0)
    assert ex.pose_coefficient(8.0) == 1.0
    np.testing.assert_allclose(ex.edited_ws().numpy(), apply_direction(ws, responding, [1.0])[0, 0].numpy(),
                               rtol=1e-5, atol=1e-6)

    ex = LatentExplorer(G, ws, n_components=1, w_samples=64)  # no direction: the slider is inert
    ex.widget()
    assert ex.pose_units == "none" and ex.controls["pose"].disabled
    ex.set(pose=10.0)
    assert np.array_equal(ex.render().edited, ex.render().reconstruction)


def test_invalid_input_gives_clear_errors_and_keeps_the_state(G, explorer):
    ex = explorer
    ex.set(pose=5.0)
    before = ex.state
    for changes, error, match in [
        (dict(image=3), ValueError, r"image=3 does not exist: choose 0\.\.2"),
        (dict(pose=float("nan")), ValueError, "pose must be finite"),
        (dict(pose="left"), TypeError, "pose must be a number"),
        (dict(truncation=2.5), ValueError, r"truncation=2.5 is outside \[0, 2\]"),
        (dict(strength=-1.0), ValueError, "strength"),
        (dict(layers=(3, 3)), ValueError, f"0 <= start < stop <= {G.num_ws}"),
        (dict(layers=(0, 1, 2)), ValueError, "layers must be"),
        (dict(components=(1.0,)), ValueError, "needs 2 coefficients"),
        (dict(method="pca"), ValueError, "method must be one of"),
        (dict(seed=-1), ValueError, "seeds must be >= 0"),
        (dict(image=1.5), TypeError, "image must be an integer"),
        (dict(zoom=2), TypeError, "unknown explorer setting"),
    ]:
        with pytest.raises(error, match=match):
            ex.set(**changes)
        assert ex.state == before, changes

    ex.widget()
    image = shown(ex)
    ex.controls["layers"].value = (2, 2)  # a range slider can be closed to nothing
    assert "not applied" in ex.status.value and "start < stop" in ex.status.value
    assert np.array_equal(shown(ex), image) and ex.state.layers == before.layers

    ws = torch.zeros(2, G.num_ws, G.w_dim)
    with pytest.raises(ValueError, match=rf"ws must be \[N, {G.num_ws}, 16\]"):
        LatentExplorer(G, torch.zeros(2, 3, G.w_dim))
    with pytest.raises(ValueError, match="non-finite"):
        LatentExplorer(G, torch.full_like(ws, float("nan")))
    with pytest.raises(ValueError, match=r"originals must be \[2, 16, 16, 3\]"):
        LatentExplorer(G, ws, np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="2 names for 1 images"):
        LatentExplorer(G, ws[:1], names=["x", "y"])
    with pytest.raises(ValueError, match="w_dim 8"):
        LatentExplorer(G, ws, pose_direction=Direction(np.ones(8), (0, 1), "x"))
    with pytest.raises(ValueError, match=f"the generator has {G.num_ws}"):
        LatentExplorer(G, ws, pose_direction=Direction(np.ones(16), (0, 9), "x"))
    with pytest.raises(TypeError, match="StyleGAN2 generator"):
        LatentExplorer(torch.nn.Linear(2, 2))
    alone = LatentExplorer(G, n_components=0, w_samples=64)  # nothing projected: random cars only
    assert alone.state.source == "seed"
    with pytest.raises(ValueError, match="no projected images, use a seed"):
        alone.set(image=0)


def test_from_images_projects_and_shows_the_targets(G, monkeypatch):
    calls = {}

    def fake_project(G_, images, masks=None, settings=None, cache=True, progress=True, on_canvas=False):
        calls.update(n=len(images), settings=settings, cache=cache)
        targets = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        ws = G_.mapping(torch.randn(len(images), G_.z_dim, generator=torch.Generator().manual_seed(2)), None)
        return type("P", (), {"ws": ws, "targets": targets})()

    monkeypatch.setattr("dapper.widgets.project_images", fake_project)
    images = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    ex = LatentExplorer.from_images(G, images, names=["x", "y"], settings="quick", cache=False, n_components=1,
                                    w_samples=64)
    assert calls == {"n": 2, "settings": "quick", "cache": False}
    shown_ = ex.render()
    assert np.abs(shown_.original.astype(int) - images[0]).max() <= 1  # the letterboxed target, as uint8
    assert np.array_equal(shown_.reconstruction, synth(G, ex.ws[0]))


def test_latency_is_measured_over_real_updates(G, explorer):
    stats = explorer.measure_latency(n=5)
    assert stats["n"] == 5 and stats["control"] == "pose (degrees)"
    assert 0 < stats["cpu_median_ms"] and 0 < stats["median_ms"] <= stats["max_ms"]
    assert explorer.controls["pose"].value == 0.0 and explorer.state.pose == 0.0  # restored


def test_pose_degrees_go_through_each_cars_own_response_with_the_annotator(G, monkeypatch, tmp_path):
    import dapper.widgets as W  # own_responses, where the explorer looks it up

    ws = G.mapping(torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1)), None)
    responding = pose_direction(G)
    responding.metadata["response"] = {"coefficients": [-4.0, 0.0, 1.0, 4.0], "degrees": [-4.0, 0.0, 8.0, 12.0]}
    calls = []

    def fake_own(G_, direction, annotator, ws_, batch_size=64):
        # the second car turns half as steeply as the first: 8 degrees take 1 unit, then 4 (its sweep reads 8 at 4)
        calls.append(ws_.clone())
        own = direction.replace()
        slope = 1.0 if len(calls) == 1 else 0.5
        own.metadata["response"] = {"coefficients": [-4.0, 0.0, 1.0, 4.0],
                                    "degrees": [-4.0 * slope, 0.0, 8.0 * slope, 16.0 * slope]}
        return [own], 0

    monkeypatch.setattr(W, "own_responses", fake_own)

    class Annotator:
        def predict(self, images):
            return np.zeros(len(images))

    with pytest.raises(TypeError, match="predict"):
        LatentExplorer(G, ws, pose_direction=responding, n_components=0, w_samples=64, pose_annotator=object())
    ex = LatentExplorer(G, ws, pose_direction=responding, n_components=0, w_samples=64, pose_annotator=Annotator(),
                        save_dir=tmp_path)
    ex.set(image=0, pose=8.0)
    assert ex.pose_response()[1] == "own" and ex.pose_coefficient(8.0) == 1.0
    ex.set(image=1, pose=8.0)
    assert ex.pose_coefficient(8.0) == 4.0  # its own, not the first car's
    np.testing.assert_allclose(ex.edited_ws().numpy(), apply_direction(ws[1:2], responding, [4.0])[0, 0].numpy(),
                               rtol=1e-5, atol=1e-6)
    ex.set(pose=-4.0)
    ex.set(image=0, pose=4.0)
    assert len(calls) == 2 and torch.equal(calls[1][0], ws[1])  # read once per car, on that car's latent
    assert "own response" in ex.describe()
    record = json.loads(ex.save()["json"].read_text())
    assert record["pose_direction"]["response_kind"] == "own" and record["pose_direction"]["pose_coefficient"] == 0.5
    # a car whose turn is not read both ways keeps the direction's response, and says so
    monkeypatch.setattr(W, "own_responses", lambda G_, d, a, w, batch_size=64: ([d], 1))
    ex = LatentExplorer(G, ws, pose_direction=responding, n_components=0, w_samples=64, pose_annotator=Annotator())
    ex.set(pose=8.0)
    assert ex.pose_response()[1] == "direction" and ex.pose_coefficient(8.0) == 1.0
    assert "own response" not in ex.describe()
