"""dapper.inversion.pivotal: tuning the synthesis network around pivots, on a tiny generator."""

import numpy as np
import pytest
import torch

from dapper.inversion.pivotal import PivotalSettings, tune_generator
from dapper.utils import weights_hash


class _Pixels(torch.nn.Module):
    """A stand-in perceptual network: the image's pixels, coarsened."""

    def features(self, x):
        return torch.nn.functional.avg_pool2d(x, 4).flatten(1)


def _pivots(G, n=3):
    g = torch.Generator().manual_seed(1)
    ws = G.mapping(torch.randn(n, G.z_dim, generator=g), None)
    # targets the generator does not draw from these latents: other vehicles' images, shifted in colour
    other = G.mapping(torch.randn(n, G.z_dim, generator=g), None)
    with torch.no_grad():
        targets = (G.synthesis(other, noise_mode="const") * 0.8 + 0.1).clamp(-1, 1)
    return targets, ws


def test_tuning_redraws_the_pivots_and_leaves_the_generator_alone(tiny_generator):
    G = tiny_generator()
    before = weights_hash(G)
    targets, ws = _pivots(G)
    tuned, info = tune_generator(G, targets, ws, PivotalSettings(steps=60, lr=3e-3, batch_size=2),
                                 perceptual=_Pixels())
    assert weights_hash(G) == before  # a copy was tuned
    assert info["loss_after"] < 0.5 * info["loss_before"] and info["steps"] == 60 and info["cpu_seconds"] > 0
    assert torch.equal(tuned.mapping(torch.ones(1, G.z_dim), None), G.mapping(torch.ones(1, G.z_dim), None))
    assert not any(p.requires_grad for p in tuned.parameters()) and not tuned.training
    with torch.no_grad():
        err = (tuned.synthesis(ws, noise_mode="const") - targets).square().mean()
        err0 = (G.synthesis(ws, noise_mode="const") - targets).square().mean()
    assert err < 0.5 * err0
    # uint8 images in, no perceptual term: the same kind of result
    u8 = ((targets + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    _, info2 = tune_generator(G, u8, ws, PivotalSettings(steps=5, perceptual_weight=0.0))
    assert np.isfinite(info2["loss_after"])


def test_tuning_refuses_bad_input(tiny_generator):
    G = tiny_generator()
    targets, ws = _pivots(G)
    with pytest.raises(ValueError, match="resolution|px"):
        tune_generator(G, targets[:, :, :8, :8], ws, perceptual=_Pixels())
    with pytest.raises(ValueError, match="ws must be"):
        tune_generator(G, targets, ws[:2], perceptual=_Pixels())
    bad = targets.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        tune_generator(G, bad, ws, perceptual=_Pixels())
    with pytest.raises(ValueError, match="steps"):
        PivotalSettings(lr=0.0)


def test_a_cached_tuning_is_read_back_not_redone_and_a_damaged_entry_is_retuned(tiny_generator, tmp_path,
                                                                                 monkeypatch):
    from dapper.inversion.pivotal import tune_generator_cached

    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path))
    G = tiny_generator()
    targets, ws = _pivots(G)
    s = PivotalSettings(steps=4, lr=3e-3, batch_size=2)
    tuned, info = tune_generator_cached(G, targets, ws, s, perceptual=_Pixels())
    again, info2 = tune_generator_cached(G, targets, ws, s, perceptual=_Pixels())
    assert not info["cached"] and info2["cached"] and info2["loss_after"] == info["loss_after"]
    assert weights_hash(again) == weights_hash(tuned) != weights_hash(G)
    assert not any(p.requires_grad for p in again.parameters()) and not again.training
    # other pivots, other settings: their own entries
    _, info3 = tune_generator_cached(G, targets[:2], ws[:2], s, perceptual=_Pixels())
    _, info4 = tune_generator_cached(G, targets, ws, PivotalSettings(steps=3, lr=3e-3, batch_size=2),
                                     perceptual=_Pixels())
    assert not info3["cached"] and not info4["cached"]
    # a truncated weights file or a damaged record is tuned again, never trusted
    entry = sorted((tmp_path / "pivotal").glob("*.safetensors"))
    assert len(entry) == 3
    for e in entry:
        e.write_bytes(e.read_bytes()[:100])
    redone, info5 = tune_generator_cached(G, targets, ws, s, perceptual=_Pixels())
    assert not info5["cached"] and weights_hash(redone) == weights_hash(tuned)
    for e in (tmp_path / "pivotal").glob("*.json"):
        e.write_text("{")
    assert not tune_generator_cached(G, targets, ws, s, perceptual=_Pixels())[1]["cached"]
    # the perceptual network's files are part of the key, by content
    files = [tmp_path / n for n in ("vgg_a.pt", "lpips.pt", "vgg_b.pt")]
    for f, data in zip(files, (b"a", b"l", b"b")):
        f.write_bytes(data)
    named = dict(s.to_dict(), vgg16_weights=str(files[0]), lpips_weights=str(files[1]))
    assert not tune_generator_cached(G, targets, ws, PivotalSettings(**named), perceptual=_Pixels())[1]["cached"]
    assert tune_generator_cached(G, targets, ws, PivotalSettings(**named), perceptual=_Pixels())[1]["cached"]
    files[0].write_bytes(b"changed")
    assert not tune_generator_cached(G, targets, ws, PivotalSettings(**named), perceptual=_Pixels())[1]["cached"]


def test_tunings_made_in_parallel_processes_equal_those_made_here(tiny_generator, tmp_path, monkeypatch):
    from dapper.inversion.pivotal import tune_generator_cached
    from dapper.study.config import pivotal_settings, study_config
    from dapper.study.tuned import tune_in_parallel

    G = tiny_generator()
    targets, ws = _pivots(G, n=4)
    jobs = [(targets[i:i + 1], ws[i:i + 1]) for i in range(4)]
    cfg = study_config("quick", pivotal={"steps": 3, "lr": 3e-3, "perceptual_weight": 0.0})
    settings = pivotal_settings(cfg)
    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path / "parallel"))
    tune_in_parallel(cfg, G, jobs, workers=2)
    parallel = [tune_generator_cached(G, im, w, settings) for im, w in jobs]
    assert all(info["cached"] for _, info in parallel)
    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path / "here"))
    torch.set_num_threads(2)  # whatever this process runs with, a tuning runs with one thread
    here = [tune_generator_cached(G, im, w, settings) for im, w in jobs]
    assert not any(info["cached"] for _, info in here)
    assert [weights_hash(t) for t, _ in here] == [weights_hash(t) for t, _ in parallel]


def test_masked_pixels_never_pull_the_tuning(tiny_generator):
    from dapper.inversion.pivotal import _cache_key

    G = tiny_generator()
    targets, ws = _pivots(G, n=2)
    r = G.img_resolution
    masks = np.zeros((2, r, r), bool)
    masks[:, r // 4: 3 * r // 4] = True  # a photo between two bars
    bars = torch.from_numpy(~masks[0])
    other = targets.clone()
    other[:, :, bars] = -other[:, :, bars]  # the bars differ, the photo not
    s = PivotalSettings(steps=3, lr=3e-3, perceptual_weight=0.0)
    a, _ = tune_generator(G, targets, ws, s, masks=masks)
    b, _ = tune_generator(G, other, ws, s, masks=masks)
    assert weights_hash(a) == weights_hash(b)
    c, _ = tune_generator(G, other, ws, s)
    assert weights_hash(c) != weights_hash(a)  # unmasked, the bars count
    assert _cache_key(G, targets, ws, s) != _cache_key(G, targets, ws, s, masks)
    with pytest.raises(ValueError, match="masks must be bool"):
        tune_generator(G, targets, ws, s, masks=masks[:, :4])
