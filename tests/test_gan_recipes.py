"""The source GAN's recipe options: DiffAugment and a projected discriminator (tiny networks)."""

import json

import numpy as np
import pytest
import torch
from test_train import TINY, _images
from torch import nn

from dapper.stylegan2.diffaugment import diff_augment, parse_policy
from dapper.stylegan2.projected import ProjectedDiscriminator
from dapper.stylegan2.train import (
    TrainConfig,
    Trainer,
    export_generator,
    load_training_state,
    save_training_state,
    train,
    training_state_path,
)


class TinyFeatures(nn.Module):
    """Two frozen feature maps (16 and 8 px), as a caller's feature network gives them."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.ReLU())
        self.b = nn.Sequential(nn.Conv2d(4, 6, 3, 2, 1), nn.ReLU())

    def layers(self, x):
        f1 = self.a(x)
        return [f1, self.b(f1)]


FEATURES = {"tiny": lambda device: TinyFeatures().to(device)}


def test_policies_keep_shape_and_let_gradients_through():
    x = (torch.rand(6, 3, 16, 16) * 2 - 1).requires_grad_(True)
    y = diff_augment(x, "color,translation,cutout")
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert torch.equal(diff_augment(x, ""), x)
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        parse_policy("color,zoom")


def test_config_file_with_an_unknown_policy_is_refused(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"train": {**TINY, "diffaugment": "color,zoom"}}))
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        TrainConfig.from_json(path)


def test_translation_shifts_whole_pixels_and_fills_with_zero():
    torch.manual_seed(0)
    x = torch.arange(1, 1 + 16 * 16, dtype=torch.float32).view(1, 1, 16, 16).repeat(8, 3, 1, 1)
    y = diff_augment(x, "translation")
    for img in y:
        nz = img[0].nonzero()
        dy, dx = int(nz[:, 0].min()), int(nz[:, 1].min())
        # every kept pixel is the original shifted by one integer offset of at most 2 px (1/8 of 16)
        h0, w0 = int(nz[:, 0].max()) + 1, int(nz[:, 1].max()) + 1
        block = img[0, dy:h0, dx:w0]
        src, (bh, bw) = x[0, 0], block.shape
        ok = [(sy, sx) for sy in range(-2, 3) for sx in range(-2, 3)
              if torch.equal(block, src[max(0, -sy):max(0, -sy) + bh, max(0, -sx):max(0, -sx) + bw])]
        assert ok, "not a whole-pixel shift of the image"
        assert (img[0] == 0).sum() == 16 * 16 - block.numel()


def test_cutout_zeroes_at_most_a_quarter_and_color_moves_the_values():
    torch.manual_seed(1)
    x = torch.ones(32, 3, 16, 16)
    y = diff_augment(x, "cutout")
    zero = (y[:, 0] == 0).float().mean(dim=[1, 2])
    assert (zero > 0).all() and (zero <= 0.25 + 1e-6).all() and torch.isclose(zero.max(), torch.tensor(0.25))
    z = diff_augment(torch.rand(8, 3, 16, 16), "color")
    assert z.std(dim=[1, 2, 3]).unique().numel() == 8  # drawn per image


def test_diffaugment_trainer_steps_and_resumes(tmp_path):
    cfg = TrainConfig(**{**TINY, "diffaugment": "color,translation,cutout", "total_kimg": 0.016})
    tr = train(cfg, tmp_path / "run", images=_images(), progress=False)
    assert tr.nimg == 16
    log = (tmp_path / "run" / "log.csv").read_text().strip().splitlines()[-1].split(",")
    assert all(np.isfinite(float(v)) for v in log[2:6])


def test_projected_discriminator_trains_its_heads_only():
    cfg = TrainConfig(**{**TINY, "projected_features": "tiny"})
    tr = Trainer(cfg, torch.device("cpu"), feature_nets=FEATURES)
    feats = {k: v.clone() for k, v in tr.P.features.state_dict().items()}
    mixes = [m.weight.clone() for m in tr.P.mixes]
    heads = {k: v.clone() for k, v in tr.P.heads.state_dict().items()}
    g_before = tr.G.mapping.fc0.weight.clone()
    for _ in range(2):
        stats = tr.step(torch.rand(8, 3, 16, 16) * 2 - 1)
    assert {"loss_g_projected", "loss_d_projected"} <= set(stats) and all(np.isfinite(v) for v in stats.values())
    assert all(torch.equal(v, tr.P.features.state_dict()[k]) for k, v in feats.items())  # frozen, BN stats too
    assert all(torch.equal(a, m.weight) for a, m in zip(mixes, tr.P.mixes))  # fixed random mixing
    assert any(not torch.equal(v, tr.P.heads.state_dict()[k]) for k, v in heads.items())
    assert not torch.equal(g_before, tr.G.mapping.fc0.weight)
    assert tr.P(torch.zeros(3, 3, 16, 16)).shape == (3,)


def test_projected_discriminator_needs_its_feature_network_by_name():
    with pytest.raises(ValueError, match="no such feature network"):
        Trainer(TrainConfig(**{**TINY, "projected_features": "vgg"}), torch.device("cpu"), feature_nets=FEATURES)


def test_projected_state_goes_into_the_training_state_and_back(tmp_path):
    cfg = TrainConfig(**{**TINY, "projected_features": "tiny", "total_kimg": 0.016})
    first = train(cfg, tmp_path / "a", images=_images(), progress=False, feature_nets=FEATURES)
    weights = export_generator(first, tmp_path / "ck" / "gan")
    path = save_training_state(first, training_state_path(tmp_path / "ck" / "gan"), weights)
    state = load_training_state(path)
    assert state["P"] and not any(k.startswith("features.") for k in state["P"])
    second = Trainer(cfg, torch.device("cpu"), feature_nets=FEATURES)
    second.load_state_dict(state, weights_only=True)
    ref = first.projected_state()
    assert all(torch.equal(second.projected_state()[k], ref[k]) for k in ref)
    # a run without a projected discriminator starts from the same state and ignores that part
    plain = Trainer(TrainConfig(**{**TINY, "total_kimg": 0.016}), torch.device("cpu"))
    plain.load_state_dict(state, weights_only=True)
    # and resume.pt of the projected run resumes it
    more = train(TrainConfig(**{**cfg.__dict__, "total_kimg": 0.024}), tmp_path / "a", images=_images(),
                 progress=False, feature_nets=FEATURES)
    assert more.nimg == 24


def test_heads_reach_4px_or_below_from_any_map():
    d = ProjectedDiscriminator(TinyFeatures(), 16)
    logits = [head(mix(f)) for f, mix, head in zip(d.features.layers(torch.zeros(2, 3, 16, 16)), d.mixes, d.heads)]
    assert all(x.shape[-1] <= 4 and x.shape[1] == 1 for x in logits)
