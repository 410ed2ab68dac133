"""Shared test setup: keep every test's derived files out of the checkout."""

import pytest

TINY_G_KWARGS = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                     mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=128, channel_max=16))


@pytest.fixture(scope="session")
def tiny_generator():
    """Factory for a 16 px generator with non-zero biases (so style layers differ from their
    defaults); ``track_w_avg`` also sets w_avg to the mean mapped w, as in a trained generator."""
    import torch

    from dapper.stylegan2.networks import Generator

    def make(track_w_avg: bool = False):
        torch.manual_seed(0)
        g = Generator(**TINY_G_KWARGS)
        with torch.no_grad():
            for name, t in g.state_dict().items():
                if name.endswith("bias"):
                    t.add_(0.1 * torch.randn(t.shape))
            if track_w_avg:
                g.mapping.w_avg.copy_(g.mapping(torch.randn(256, TINY_G_KWARGS["z_dim"]), None)[:, 0].mean(0))
        return g.eval().requires_grad_(False)

    return make


@pytest.fixture(autouse=True, scope="session")
def _scratch_cache_and_reports(tmp_path_factory):
    # Tests must never leave files in <repo>/.cache or overwrite reports/: point both helpers in
    # dapper.utils at a scratch folder for the whole session (one folder, so tests that share a
    # cache within the session still benefit from it).
    patch = pytest.MonkeyPatch()
    patch.setenv("DAPPER_CACHE", str(tmp_path_factory.mktemp("cache")))
    patch.setenv("DAPPER_REPORTS", str(tmp_path_factory.mktemp("reports")))
    yield
    patch.undo()
