"""Projection: tiny generators made here, so every test runs in well under a second or two."""

import warnings

import numpy as np
import pytest
import torch

from dapper.inversion import projection as P
from dapper.inversion.perceptual import FeatureNet
from dapper.inversion.projection import ProjectionSettings, project_images
from dapper.stylegan2 import Generator
from dapper.utils import weights_hash


def tiny_generator(seed=0, content_box=None):
    torch.manual_seed(seed)
    syn = dict(channel_base=64, channel_max=16)
    if content_box is not None:
        syn["content_box"] = content_box
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), synthesis_kwargs=syn)
    with torch.no_grad():  # a trained generator tracks w_avg; a fresh one has zeros there
        G.mapping.w_avg.copy_(G.mapping(torch.randn(256, 16), None)[:, 0].mean(0))
    return G.eval().requires_grad_(False)


@pytest.fixture(autouse=True)
def small_perceptual(monkeypatch):
    # A small random feature network at the tiny generator's size keeps the tests fast and
    # independent of the shipped checkpoint (tested separately below).
    torch.manual_seed(1)
    net = FeatureNet(widths=(4, 6, 8, 8))
    net.input_size = 16
    net.eval().requires_grad_(False)
    monkeypatch.setattr(P, "_perceptual_for", lambda settings, device: net)
    return net


FAST = ProjectionSettings(init="w_avg", steps=25, lr=0.05, early_stop_tol=None, w_avg_samples=512)


def targets_from(G, n, seed=5):
    torch.manual_seed(seed)
    with torch.no_grad():
        w = G.mapping(torch.randn(n, G.z_dim), None)
        return G.synthesis(w, noise_mode="const").clamp(-1, 1)


def test_projection_reduces_loss():
    G = tiny_generator()
    x = targets_from(G, 3)
    start = project_images(G, x, settings=FAST.replace(steps=0), cache=False, progress=False)
    end = project_images(G, x, settings=FAST, cache=False, progress=False)
    assert end.ws.shape == (3, G.num_ws, G.w_dim)
    assert end.reconstructions.shape == (3, 3, 16, 16)
    assert (end.metrics["psnr"] > start.metrics["psnr"] + 1).all()
    assert (end.metrics["perceptual"] < start.metrics["perceptual"]).all()
    assert (end.metrics["steps"] == 25).all() and not end.metrics["cached"].any()
    assert list(end.metrics["failed"]) == ["", "", ""]


def test_projection_under_no_grad_still_optimises():
    """Called inside torch.no_grad() (a notebook's inference block), projection turns gradients on
    for itself: the same codes as outside it, not every image left at its start."""
    G = tiny_generator()
    x = targets_from(G, 3)
    free = project_images(G, x, settings=FAST, cache=False, progress=False)
    with torch.no_grad():
        inside = project_images(G, x, settings=FAST, cache=False, progress=False)
    assert torch.allclose(inside.ws, free.ws, atol=1e-6)
    assert torch.is_grad_enabled()  # the caller's mode is back once its block ends
    assert (inside.ws[:, 0] - inside.ws[:, 0].mean(0)).abs().max() > 1e-3  # codes differ per image


def test_w_rows_equal_and_wplus_rows_differ():
    G = tiny_generator()
    x = targets_from(G, 2)
    w = project_images(G, x, settings=FAST.replace(steps=5), cache=False, progress=False)
    assert torch.equal(w.ws, w.ws[:, :1].expand_as(w.ws))
    wp = project_images(G, x, settings=FAST.replace(steps=5, space="w+"), cache=False, progress=False)
    assert not torch.allclose(wp.ws[:, 0], wp.ws[:, -1])


def test_cache_hit_on_rerun_skips_optimisation(monkeypatch):
    G = tiny_generator()
    x = targets_from(G, 3)
    first = project_images(G, x, settings=FAST.replace(steps=5), progress=False)
    assert not first.metrics["cached"].any()

    def boom(*args, **kwargs):
        raise AssertionError("optimised although every image is cached")

    monkeypatch.setattr(P, "_optimise_batch", boom)
    again = project_images(G, x, settings=FAST.replace(steps=5), progress=False)
    assert again.metrics["cached"].all()
    assert torch.equal(again.ws, first.ws)
    assert (again.metrics["steps"] == first.metrics["steps"]).all()
    np.testing.assert_allclose(again.metrics["psnr"], first.metrics["psnr"], rtol=1e-5)


def test_resume_after_kill(monkeypatch):
    G = tiny_generator(seed=3)
    x = targets_from(G, 4, seed=11)
    settings = FAST.replace(steps=4, seed=7)
    real = P._optimise_batch
    calls = []

    def killed_on_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "_optimise_batch", killed_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        project_images(G, x, settings=settings, batch_size=2, progress=False)
    monkeypatch.setattr(P, "_optimise_batch", real)
    resumed = project_images(G, x, settings=settings, batch_size=2, progress=False)
    assert list(resumed.metrics["cached"]) == [True, True, False, False]
    assert resumed.info["n_optimised"] == 2


def test_nan_image_is_flagged_and_others_finish():
    G = tiny_generator()
    x = targets_from(G, 3).clone()
    x[1, :, 4:6, 4:6] = float("nan")
    proj = project_images(G, x, settings=FAST.replace(steps=10), cache=False, progress=False)
    failed = proj.metrics["failed"]
    assert "non-finite" in failed[1] and "input image" in failed[1]
    assert failed[0] == "" and failed[2] == ""
    assert (proj.metrics["steps"][[0, 2]] == 10).all() and proj.metrics["steps"][1] == 0
    assert torch.isfinite(proj.ws).all()
    assert np.isfinite(proj.metrics["psnr"][[0, 2]]).all()


def test_any_size_is_letterboxed_into_the_content_box():
    G = tiny_generator(content_box=(0, 4, 16, 12))  # a 2:1 picture inside the square canvas
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (10, 30, 3), dtype=np.uint8), rng.integers(0, 256, (40, 12, 3), dtype=np.uint8),
              rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)]
    proj = project_images(G, images, settings=FAST.replace(steps=2), cache=False, progress=False)
    assert proj.targets.shape == (3, 3, 16, 16)
    m = proj.masks
    assert not m[:, :4].any() and not m[:, 12:].any()  # nothing outside the content box
    assert m[2, 4:12].all()  # 8x16 fills the 16x8 box exactly
    assert m[1].sum() < m[0].sum()  # a tall image uses a narrow strip
    # float input of another size goes the same way
    f = project_images(G, torch.zeros(1, 3, 20, 40), settings=FAST.replace(steps=1), cache=False, progress=False)
    assert f.masks[0, 4:12].all() and not f.masks[0, :4].any()


def test_photos_on_the_canvas_are_placed_once_and_their_bars_never_count():
    from dapper.data.images import letterbox

    G = tiny_generator(content_box=(0, 4, 16, 12))  # a 2:1 picture inside the square canvas, as LSUN car's 4:3
    rng = np.random.default_rng(0)
    photos = [rng.integers(1, 256, (10, 30, 3), dtype=np.uint8), rng.integers(1, 256, (40, 12, 3), dtype=np.uint8),
              rng.integers(1, 256, (8, 16, 3), dtype=np.uint8), rng.integers(1, 256, (16, 16, 3), dtype=np.uint8)]
    placed = [letterbox(ph, content_size=(16, 8), out_size=16) for ph in photos]  # what load_pool gives
    canvas = np.stack([c for c, _ in placed])
    content = np.stack([m for _, m in placed])
    proj = project_images(G, canvas, masks=content, on_canvas=True, settings=FAST.replace(steps=1), cache=False,
                          progress=False)
    # the target is the canvas itself (placed once) and only the photo's pixels count
    assert torch.equal(proj.targets, torch.from_numpy(canvas).permute(0, 3, 1, 2).float() / 127.5 - 1)
    assert torch.equal(proj.masks, torch.from_numpy(content))
    # letterboxing the canvas again shrinks the photo and counts the bars: what on_canvas prevents
    twice = project_images(G, canvas, masks=content, settings=FAST.replace(steps=1), cache=False, progress=False)
    assert twice.masks.sum() < proj.masks.sum()
    # without masks, the content box still keeps the canvas's bars out
    box_only = project_images(G, canvas, on_canvas=True, settings=FAST.replace(steps=1), cache=False, progress=False)
    assert box_only.masks[:, 4:12].all() and not box_only.masks[:, :4].any() and not box_only.masks[:, 12:].any()
    with pytest.raises(ValueError, match="canvas must be 16x16"):
        project_images(G, photos[:1], on_canvas=True, settings=FAST.replace(steps=1), cache=False, progress=False)
    # the same pixels placed otherwise are another cache entry
    assert P._settings_hash(FAST, G, "p", None) != P._settings_hash(FAST, G, "p", None, on_canvas=True)


def test_object_mask_restricts_the_loss():
    G = tiny_generator()
    x = targets_from(G, 1)
    mask = np.zeros((1, 16, 16), bool)
    mask[0, 4:12, 4:12] = True
    proj = project_images(G, x, masks=mask, settings=FAST.replace(steps=1), cache=False, progress=False)
    assert proj.masks.sum() == 64
    other = project_images(G, x, settings=FAST.replace(steps=1), cache=False, progress=False)
    assert proj.keys[0] != other.keys[0]


def test_settings_change_the_cache_key(monkeypatch):
    G = tiny_generator()
    x = targets_from(G, 2)
    project_images(G, x, settings=FAST.replace(steps=3), progress=False)
    changed = project_images(G, x, settings=FAST.replace(steps=3, lr=0.02), progress=False)
    assert not changed.metrics["cached"].any()
    assert P._settings_hash(FAST, G, "p", None) != P._settings_hash(FAST.replace(space="w+"), G, "p", None)
    assert P._settings_hash(FAST, G, "p", None) != P._settings_hash(FAST, G, "q", None)
    # the same image under another generator is another cache entry
    other = project_images(tiny_generator(seed=9), x, settings=FAST.replace(steps=3), progress=False)
    assert not other.metrics["cached"].any()


def test_early_stop_cuts_steps():
    G = tiny_generator()
    x = targets_from(G, 2)
    proj = project_images(G, x, settings=FAST.replace(steps=200, early_stop_tol=0.05, early_stop_window=5,
                                                      min_steps=10), cache=False, progress=False)
    assert proj.metrics["converged"].all()
    assert (proj.metrics["steps"] < 200).all()


def test_official_schedule_runs_with_noise_maps():
    s = ProjectionSettings.official()
    assert (s.steps, s.lr, s.init, s.optimize_noise, s.noise_reg_weight) == (1000, 0.1, "w_avg", True, 1e5)
    G = tiny_generator()
    before = weights_hash(G)
    x = targets_from(G, 2)
    proj = project_images(G, x, settings=s.replace(steps=6, w_avg_samples=512), cache=False, progress=False)
    assert torch.isfinite(proj.ws).all() and (proj.metrics["steps"] == 6).all()
    assert weights_hash(G) == before  # noise maps were swapped in and back, G untouched


def test_the_shipped_encoder_stays_closed_for_a_generator_of_another_world(monkeypatch):
    from dapper.inversion import encoder as E

    if not E.DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no shipped encoder")
    monkeypatch.setattr(E, "load_encoder", lambda *a, **k: pytest.fail("the shipped encoder was opened"))
    G = tiny_generator()  # 16 px, w_dim 16: not the shipped encoder's shape
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and nothing to warn about: no encoder is expected for it
        assert E.encoder_for(G) is None


def test_encoder_is_used_only_for_its_generator(tmp_path):
    from safetensors.torch import save_file

    from dapper.inversion import encoder as E

    G = tiny_generator()
    enc = E.Encoder(G.w_dim, input_size=16, widths=(4, 8, 8), hidden=16)
    path = tmp_path / "enc.safetensors"
    import json

    def save(g_hash):
        save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(path))
        cfg = {"generator_hash": g_hash, "architecture": {"w_dim": G.w_dim, "input_size": 16, "widths": [4, 8, 8],
                                                          "hidden": 16}}
        path.with_suffix(".json").write_text(json.dumps(cfg))
        E._LOADED.clear()

    x = targets_from(G, 1)
    save("0" * 64)
    with pytest.warns(UserWarning, match="trained for generator"):
        proj = project_images(G, x, settings=FAST.replace(init="encoder", encoder=str(path), steps=1), cache=False,
                              progress=False)
    assert proj.info["init"] == "w_avg"
    save(weights_hash(G))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proj = project_images(G, x, settings=FAST.replace(init="encoder", encoder=str(path), steps=1), cache=False,
                              progress=False)
    assert proj.info["init"] == "encoder"


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_vgg16_lpips_from_state_dicts_and_torchscript_refused(tmp_path):
    from dapper.inversion.perceptual import _VGG_CHANNELS, load_perceptual, vgg16_trunk

    torch.manual_seed(0)
    feats = vgg16_trunk()  # same keys as torchvision's vgg16().features, without the classifier
    vgg_path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, vgg_path)
    lin_path = tmp_path / "lpips_vgg.pth"
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(_VGG_CHANNELS)}, lin_path)
    net = load_perceptual(vgg_path, lin_path)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    d = net(x, x.flip(0))
    assert d.shape == (2,) and (d > 0).all()
    assert net(x, x).abs().max() < 1e-6

    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    ts_path = tmp_path / "vgg16.pt"
    scripted.save(str(ts_path))
    with pytest.raises(ValueError, match="TorchScript"):
        load_perceptual(ts_path, lin_path)


def test_shipped_perceptual_network_if_present():
    from dapper.inversion.perceptual import DEFAULT_CHECKPOINT, load_perceptual

    if not DEFAULT_CHECKPOINT.exists():
        pytest.skip("checkpoints/perceptual_toycars.safetensors not trained yet")
    net = load_perceptual()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert net(x, x).abs().max() < 1e-6 and (net(x, x.flip(0)) > 0).all()


def test_cli_projects_a_folder_and_skips_bad_files(tmp_path):
    from PIL import Image

    from dapper.cli.project import main as project_main
    from dapper.stylegan2 import save_generator

    G = tiny_generator()
    net_path = save_generator(G, tmp_path / "g.safetensors")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8), mode="L").save(folder / "b.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    rc = project_main(["--network", str(net_path), "--images", str(folder), "--out", str(out), "--steps", "2",
                       "--init", "w_avg", "--no-cache"])
    assert rc == 0
    with np.load(out / "ws.npz") as d:
        assert d["ws"].shape == (2, G.num_ws, G.w_dim)
        assert list(d["names"]) == ["a.png", "b.jpg"]
    assert sorted(p.name for p in (out / "reconstructions").iterdir()) == ["a.png", "b.png"]
    import pandas as pd

    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics["image"]) == ["a.png", "b.jpg"] and "psnr" in metrics
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["image"].map(lambda s: s.rsplit("/", 1)[-1])) == ["broken.png"]
