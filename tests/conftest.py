"""Shared test setup: keep every test's derived files out of the checkout."""

import pytest


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
