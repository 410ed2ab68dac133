"""Small stand-ins for the generator, the pose direction and projection, shared by the study tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def _maps_and_image_layer(module: nn.Module, resolution: int) -> nn.Linear:
    """Register the toy's mapping (``w_scale``, ``w_shift``) on ``module`` and return its image layer,
    both drawn from one seeded generator."""
    g = torch.Generator().manual_seed(0)
    module.register_buffer("w_scale", torch.linspace(0.5, 2.0, module.w_dim))
    module.register_buffer("w_shift", torch.randn(module.w_dim, generator=g))
    out = nn.Linear(module.w_dim, 3 * resolution * resolution)
    with torch.no_grad():
        out.weight.copy_(torch.randn(out.weight.shape, generator=g) * 0.3)
        out.bias.zero_()
    return out


def _draw(out: nn.Linear, ws, resolution: int):
    return torch.tanh(out(ws.mean(1))).view(-1, 3, resolution, resolution)


class FakeGenerator(nn.Module):
    """Generator-shaped toy: mapping is an affine map whose per-dimension spread is known
    (``W_SCALE``), synthesis a fixed random linear map of the mean ws row to an image."""

    z_dim = w_dim = 8
    num_ws = 3
    c_dim = 0
    img_channels = 3

    def __init__(self, resolution: int = 8):
        super().__init__()
        self.img_resolution = resolution
        self.out = _maps_and_image_layer(self, resolution)

    def mapping(self, z, c=None, truncation_psi=1.0):
        w = z * self.w_scale + self.w_shift
        return w[:, None, :].repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode="const"):
        return _draw(self.out, ws, self.img_resolution)

    def forward(self, z, c=None, **kwargs):
        return self.synthesis(self.mapping(z, c))


class _FakeSynthesis(nn.Module):
    def __init__(self, out: nn.Linear, resolution: int):
        super().__init__()
        self.out, self.resolution = out, resolution

    def forward(self, ws, noise_mode="const"):
        return _draw(self.out, ws, self.resolution)


class TunableFakeGenerator(nn.Module):
    """:class:`FakeGenerator` with the synthesis a submodule of its own, as pivotal tuning (which
    tunes ``G.synthesis``'s weights) needs."""

    z_dim = w_dim = 8
    num_ws = 3
    c_dim = 0
    img_channels = 3
    mapping = FakeGenerator.mapping
    forward = FakeGenerator.forward

    def __init__(self, resolution: int = 8):
        super().__init__()
        self.img_resolution = resolution
        self.synthesis = _FakeSynthesis(_maps_and_image_layer(self, resolution), resolution)


class FakeDirection:
    """A pose direction of a fixed unit vector on every row, ``degrees_per_unit`` degrees per unit."""

    def __init__(self, w_dim: int = 8, degrees_per_unit: float = 2.0):
        v = torch.zeros(w_dim)
        v[0] = 1.0
        self.vector = v
        self.degrees_per_unit = degrees_per_unit


def fake_apply_direction(ws, direction, coefficients):
    """ws [N, L, D] -> [N, K, L, D]: ``ws + c * vector`` on every row."""
    ws = torch.as_tensor(ws, dtype=torch.float32)
    c = torch.as_tensor(np.asarray(coefficients, np.float32)).view(1, -1, 1, 1)
    return ws[:, None] + c * direction.vector.view(1, 1, 1, -1)


def fake_project(G, images):
    """Deterministic 'projection': ws from the image's mean colour (same image, same ws)."""
    x = torch.as_tensor(np.asarray(images)).float().mean((1, 2)) / 255.0  # [N, 3]
    w = torch.cat([x, x[:, :1] * 0.5, x[:, 1:2] * 2, x.sum(1, keepdim=True), x[:, 2:] - x[:, :1], x[:, :1] ** 2], 1)
    return w[:, None, :].repeat(1, G.num_ws, 1)


class LatentWorld(nn.Module):
    """Generator-shaped toy whose image carries the first coordinate of its mean W row (over 100)."""

    z_dim = w_dim = 4
    num_ws = 2
    c_dim = 0
    img_channels = 3
    img_resolution = 4

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def synthesis(self, ws, noise_mode="const"):
        return (ws.mean(1)[:, :1] / 100).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).clone()


class FlipAnnotator:
    """Reads :class:`LatentWorld`'s coordinate as the yaw up to 25 degrees; beyond, a front/back flip
    (180 degrees off). Takes float NCHW or uint8 NHWC images."""

    def predict(self, images):
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        x = x.permute(0, 3, 1, 2).double() / 127.5 - 1 if x.dtype == torch.uint8 else x.double()
        w0 = x[:, 0, 0, 0].numpy() * 100
        return np.where(np.abs(w0) <= 25, w0, w0 + 180) % 360


class RednessAnnotator:
    """A pose annotator stand-in: reads 'yaw' from how much redder the left half of a 16 px image is
    than the right."""

    config = {"heldout": "fake"}

    def predict(self, images):
        x = torch.as_tensor(images).float()
        return ((40 + 200 * (x[:, 0, :, :8].mean((1, 2)) - x[:, 0, :, 8:].mean((1, 2)))) % 360).numpy()

    def predict_pose(self, images):
        y = self.predict(images)
        return y, np.zeros_like(y)


class AcceptingDetector:
    """A vehicle detector stand-in that accepts every image, with one fixed box."""

    threshold = 0.5
    config = {"heldout": "fake"}

    def predict(self, images):
        n = len(images)
        return np.ones(n), np.tile([2.0, 3.0, 14.0, 13.0], (n, 1))


def tiny_study_inputs(tmp_path, monkeypatch, conditions=("real", "real+perturb")):
    """A quick-profile study of 5 images per class at 32 px, one fold at one shot, on the fake
    generator and projection, its inputs prepared in a cache under ``tmp_path``."""
    from dapper.classify import FineTuneSettings
    from dapper.study import experiments as E

    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    cfg = E.study_config("quick", n_per_class=5, image_size=32, folds=(0,), shots=(1,), n_test_views=0,
                         conditions=conditions, classifier_weights=None, workers=1,
                         finetune=FineTuneSettings(min_steps=2, max_steps=2, batch_size=8))
    return cfg, E.prepare_inputs(cfg, progress=False, G=FakeGenerator(32), project=fake_project)
