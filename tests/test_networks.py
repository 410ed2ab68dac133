"""StyleGAN2 networks and ops: official numerics, fast path equal to the reference, clear errors."""

import itertools

import pytest
import torch

from dapper.stylegan2 import networks, ops

TINY_G = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=256, channel_max=32))


def _perturbed(module):
    """Deterministic non-trivial weights (noise strengths, biases and w_avg away from zero)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.linspace(-0.3, 0.3, p.numel()).reshape(p.shape))
    return module


def tiny_generator(**overrides):
    torch.manual_seed(0)
    kw = {**TINY_G, **overrides}
    G = _perturbed(networks.Generator(**kw)).eval()
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.linspace(-1, 1, G.w_dim))
    return G


def test_generator_matches_official_reference_values():
    # Values produced by stylegan2-ada-pytorch's own networks.py (CPU reference ops) for the same
    # seed-0 initialisation, perturbation and inputs (see tests' history: computed once with a local
    # checkout of the official code). Identical init order means identical weights.
    G = tiny_generator()
    z = torch.linspace(-2, 2, 2 * 32).reshape(2, 32)
    with torch.no_grad(), ops.use_impl("ref"):
        img = G(z, None, truncation_psi=0.7, truncation_cutoff=3, noise_mode="const")
    assert img.shape == (2, 3, 16, 16)
    official_a = torch.tensor([1.8720554113388062, 49.487831115722656, 47.70360565185547])
    official_b = torch.tensor([-7.784271717071533, 21.420883178710938, 29.908363342285156])
    torch.testing.assert_close(img[0, :, 5, 7], official_a, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(img[1, :, 12, 3], official_b, rtol=1e-5, atol=1e-4)
    assert abs(img.sum().item() - 24816.654296875) < 0.5


def test_discriminator_matches_official_reference_values():
    torch.manual_seed(0)
    D = _perturbed(networks.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32))
    x = torch.linspace(-1, 1, 4 * 3 * 16 * 16).reshape(4, 3, 16, 16).sin()
    with torch.no_grad(), ops.use_impl("ref"):
        out = D(x, None).flatten()
    torch.testing.assert_close(out, torch.tensor([6.292101860046387, 2.7458677291870117, 4.704337120056152,
                                                  8.59791088104248]), rtol=1e-5, atol=1e-4)


def test_official_state_dict_names():
    G = networks.Generator(**TINY_G)
    keys = set(G.state_dict())
    for k in ["mapping.fc0.weight", "mapping.fc1.bias", "mapping.w_avg", "synthesis.b4.const",
              "synthesis.b4.conv1.affine.weight", "synthesis.b4.conv1.noise_const", "synthesis.b4.conv1.noise_strength",
              "synthesis.b8.conv0.resample_filter", "synthesis.b16.torgb.weight", "synthesis.b16.resample_filter"]:
        assert k in keys, k
    assert G.num_ws == 6  # 1 + 2 + 2 convs, + torgb of the last block
    D = networks.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32)
    for k in ["b16.fromrgb.weight", "b16.skip.weight", "b8.conv1.weight", "b4.fc.weight", "b4.out.bias"]:
        assert k in D.state_dict(), k


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("flip_filter", [False, True])
def test_upfirdn2d_fast_equals_reference(up, down, flip_filter):
    torch.manual_seed(1)
    for f in (ops.setup_filter([1, 3, 3, 1]), torch.rand(3, 5)):
        for padding in (0, (1, 2, 0, 3), (-1, 2, 2, -1)):
            x = torch.randn(2, 3, 9, 11)
            with ops.use_impl("ref"):
                a = ops.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=up * up)
            with ops.use_impl("fast"):
                b = ops.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=up * up)
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act,clamp,grad", list(itertools.product(["linear", "lrelu", "relu", "tanh"], [None, 0.5],
                                                                   [False, True])))
def test_bias_act_fast_equals_reference(act, clamp, grad):
    x = torch.randn(4, 5, 3, 3, requires_grad=grad)
    b = torch.randn(5)
    with ops.use_impl("ref"):
        a = ops.bias_act(x, b, act=act, clamp=clamp, gain=1.7)
    with ops.use_impl("fast"):
        c = ops.bias_act(x, b, act=act, clamp=clamp, gain=1.7)
    torch.testing.assert_close(a, c)
    if grad:
        (ga,) = torch.autograd.grad(a.sum(), x)
        (gc,) = torch.autograd.grad(c.sum(), x)
        torch.testing.assert_close(ga, gc)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_fused_equals_unfused(up, demodulate):
    torch.manual_seed(2)
    x, w, s = torch.randn(3, 4, 8, 8), torch.randn(6, 4, 3, 3), torch.randn(3, 4)
    f = ops.setup_filter([1, 3, 3, 1])
    kw = dict(up=up, padding=1, resample_filter=f, demodulate=demodulate, flip_weight=(up == 1))
    with ops.use_impl("ref"):
        a = ops.modulated_conv2d(x, w, s, fused_modconv=True, **kw)
        b = ops.modulated_conv2d(x, w, s, fused_modconv=False, **kw)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_generator_and_discriminator_fast_equal_reference_with_gradients():
    G = tiny_generator()
    torch.manual_seed(3)
    D = _perturbed(networks.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32))
    z = torch.randn(4, 32)
    outs = {}
    for impl in ("ref", "fast"):
        with ops.use_impl(impl):
            G.eval()
            with torch.no_grad():
                img = G(z, noise_mode="const")
            G.train()
            ws = G.mapping(z, None, skip_w_avg_update=True).detach().requires_grad_(True)
            score = D(G.synthesis(ws, noise_mode="const")).sum()
            (gws,) = torch.autograd.grad(score, ws)
            outs[impl] = (img, score.detach(), gws)
    for a, b in zip(outs["ref"], outs["fast"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * max(1.0, a.abs().max().item()))


def test_truncation_and_cutoff():
    G = tiny_generator()
    z = torch.randn(3, 32)
    with torch.no_grad():
        ws = G.mapping(z, None)
        assert ws.shape == (3, G.num_ws, G.w_dim)
        assert torch.allclose(ws[:, 0], ws[:, -1])
        wt = G.mapping(z, None, truncation_psi=0.0)
        assert torch.allclose(wt, G.mapping.w_avg.expand_as(wt))
        wc = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=2)
        assert torch.allclose(wc[:, 2:], ws[:, 2:])
        assert torch.allclose(wc[:, :2], G.mapping.w_avg.lerp(ws[:, :2], 0.5))


def test_noise_modes():
    G = tiny_generator()
    z = torch.randn(2, 32)
    with torch.no_grad():
        a, b = G(z, noise_mode="const"), G(z, noise_mode="const")
        assert torch.equal(a, b)
        r1, r2 = G(z, noise_mode="random"), G(z, noise_mode="random")
        assert not torch.equal(r1, r2)
        assert not torch.equal(G(z, noise_mode="none"), a)
    with pytest.raises(ValueError, match="noise_mode"):
        G(z, noise_mode="bogus")


def test_content_box_and_resolution_checks():
    G = networks.Generator(**{**TINY_G, "synthesis_kwargs": dict(channel_base=256, channel_max=32,
                                                                  content_box=(0, 2, 16, 14))})
    assert G.content_box == (0, 2, 16, 14)
    assert networks.Generator(**TINY_G).content_box == (0, 0, 16, 16)
    with pytest.raises(ValueError, match="content_box"):
        networks.Generator(**{**TINY_G, "synthesis_kwargs": dict(channel_base=256, content_box=(0, 0, 17, 16))})
    with pytest.raises(ValueError, match="power of two"):
        networks.Generator(**{**TINY_G, "img_resolution": 24})


def test_shape_errors_are_clear():
    G = networks.Generator(**TINY_G)
    with pytest.raises(ValueError, match=r"mapping z: expected shape \[\*, 32\], got \[2, 31\]"):
        G(torch.randn(2, 31))
    with pytest.raises(ValueError, match="synthesis ws"):
        G.synthesis(torch.randn(2, G.num_ws + 1, 32))
    D = networks.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=256, channel_max=32)
    with pytest.raises(ValueError, match="discriminator image"):
        D(torch.randn(4, 3, 32, 32))


def test_conditional_generator_and_any_power_of_two():
    for res in (4, 8, 32):
        G = networks.Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=res, img_channels=1,
                               synthesis_kwargs=dict(channel_base=64, channel_max=8))
        out = G(torch.randn(2, 8), torch.eye(3)[:2])
        assert out.shape == (2, 1, res, res) and torch.isfinite(out).all()


def test_cpu_bf16_runs_the_highest_resolutions_in_bfloat16_and_keeps_the_image():
    G = tiny_generator()
    z = torch.linspace(-2, 2, 4 * 32).reshape(4, 32)
    with torch.no_grad():
        ref = G(z, None, noise_mode="const")
    assert G.numerics == "" and G.set_cpu_bf16(0) == []
    assert G.set_cpu_bf16(2) == [8, 16]  # 16 px: the two highest resolutions, as num_fp16_res=2 picks
    assert G.numerics == "cpu-bf16:8,16"
    assert G.set_cpu_bf16(4) == [8, 16]  # never below 8 px, as the official rule
    with torch.no_grad():
        out = G(z, None, noise_mode="const")
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert not torch.equal(out, ref)  # it really ran in another precision
    rel = (out - ref).norm() / ref.norm()
    assert rel < 2e-2, rel
    # gradients reach the latents (projection), and force_fp32 gives the official numerics back
    ws = G.mapping(z, None).detach().requires_grad_(True)
    G.synthesis(ws, noise_mode="const").square().mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.equal(G(z, None, noise_mode="const", force_fp32=True), ref)
    assert G.set_cpu_bf16(0) == [] and G.numerics == ""
    with torch.no_grad():
        assert torch.equal(G(z, None, noise_mode="const"), ref)
    with pytest.raises(ValueError, match=">= 0"):
        G.set_cpu_bf16(-1)


def test_weights_hash_tells_the_numerics_apart():
    from dapper.utils import weights_hash

    G = tiny_generator()
    official = weights_hash(G)
    G.set_cpu_bf16(2)
    fast = weights_hash(G)  # the same weights computed otherwise: another network to every cache
    assert fast != official
    assert weights_hash(G.synthesis) != weights_hash(tiny_generator().synthesis)
    G.set_cpu_bf16(0)
    assert weights_hash(G) == official
