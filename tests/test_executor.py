"""dapper.executor: the study's grid and projection batches on a local Ray cluster (started here, on
127.0.0.1) give the rows and codes of the local executor; a worker killed mid-task is retried by
Ray and no row is lost or written twice; an interrupted driver resumes."""

import functools
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
from study_fakes import FakeDirection, FakeGenerator, fake_apply_direction, fake_project

from dapper import executor as X
from dapper.study import experiments as E
from dapper.study import runs

ray = pytest.importorskip("ray", reason="the dev extra brings Ray")

HERE = Path(__file__).resolve().parent
# Columns that say when and how long, not what: they differ between any two runs.
TIMING = ["seconds", "cpu_seconds", "finished_at"]


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster on the loopback address with 2 CPUs; its workers import this folder's
    modules (the killing wrapper below) like the test does."""
    if ray.is_initialized():
        ray.shutdown()
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(address="local", num_cpus=2, _node_ip_address="127.0.0.1", include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path,
                                                            "DAPPER_CACHE": os.environ["DAPPER_CACHE"]}})
    yield X.RayExecutor(max_retries=3)
    ray.shutdown()


def _square(shared, item):
    return shared * item * item


def _die_once_then(fn, marker, shared, item):
    """Kill this worker process the first time any task gets here (``marker`` records it)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return fn(shared, item)
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


class DyingOnce(X.RayExecutor):
    """Ray, with the first task's worker killed mid-task."""

    def __init__(self, marker, **kw):
        super().__init__(**kw)
        self.marker = str(marker)

    def map(self, fn, items, **kw):
        return super().map(functools.partial(_die_once_then, fn, self.marker), items, **kw)


def test_executor_names_are_checked():
    assert X.get_executor("local").name == "local"
    with pytest.raises(ValueError, match="executor='dask'"):
        X.get_executor("dask")
    with pytest.raises(ValueError, match="set executor='ray'"):
        X.check_executor("local", "auto")
    from dapper.study.params import check_params

    with pytest.raises(ValueError, match="executor="):
        check_params("quick", "toycars", executor="slurm")


def test_local_and_ray_map_give_every_result_once(cluster, tmp_path):
    local = dict(X.LocalExecutor().map(_square, range(6), shared=3))
    assert local == {i: 3 * i * i for i in range(6)}
    assert dict(cluster.map(_square, range(6), shared=3)) == local
    dying = DyingOnce(tmp_path / "died", max_retries=3)
    got = list(dying.map(_square, range(6), shared=3))
    assert (tmp_path / "died").exists()  # a worker really died
    assert sorted(i for i, _ in got) == list(range(6)) and dict(got) == local
    never = DyingOnce(tmp_path / "died-again", max_retries=0)
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        list(never.map(_square, range(2), shared=3))


def _tiny_study(tmp_path):
    from dapper.classify import FineTuneSettings

    cfg = E.study_config("quick", n_per_class=5, image_size=32, folds=(0, 1), shots=(1, 2), n_test_views=1,
                         conditions=("real", "real+affine", "real+perturb"), classifier_weights=None, workers=1,
                         finetune=FineTuneSettings(min_steps=2, max_steps=2, batch_size=8))
    inputs = E.prepare_inputs(cfg, progress=False, G=FakeGenerator(resolution=32), direction=FakeDirection(),
                              project=fake_project, apply_direction=fake_apply_direction)
    return cfg, inputs


def _rows(path):
    df = pd.read_csv(path, dtype={"study_id": str, "generator": str})
    return df.drop(columns=TIMING).sort_values(["condition", "shots_per_class", "fold"]).reset_index(drop=True)


def test_ray_grid_equals_local_and_survives_a_killed_worker_and_driver(cluster, tmp_path, monkeypatch):
    cfg, inputs = _tiny_study(tmp_path)
    n = len(E.plan_runs(cfg))
    E.five_fold_runs(cfg, inputs, path=tmp_path / "local.csv", progress=False, threads=1)
    E.five_fold_runs(cfg, inputs, path=tmp_path / "ray.csv", progress=False, threads=1, executor=cluster)
    local, by_ray = _rows(tmp_path / "local.csv"), _rows(tmp_path / "ray.csv")
    assert len(local) == n
    pd.testing.assert_frame_equal(by_ray, local)

    # A worker dies mid-task: Ray runs the task again; every row once.
    E.five_fold_runs(cfg, inputs, path=tmp_path / "dying.csv", progress=False, threads=1,
                     executor=DyingOnce(tmp_path / "died"))
    assert (tmp_path / "died").exists()
    pd.testing.assert_frame_equal(_rows(tmp_path / "dying.csv"), local)

    # The driver stops after writing two rows (an interrupt): a rerun adds the rest, none twice.
    path = tmp_path / "interrupted.csv"
    real_append = E.append_row
    written = []

    def append_then_stop(p, row):
        real_append(p, row)
        written.append(row)
        if len(written) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(runs, "append_row", append_then_stop)
    with pytest.raises(KeyboardInterrupt):
        E.five_fold_runs(cfg, inputs, path=path, progress=False, threads=1, executor=cluster)
    monkeypatch.setattr(runs, "append_row", real_append)
    assert len(pd.read_csv(path)) == 2
    E.five_fold_runs(cfg, inputs, path=path, progress=False, threads=1, executor=cluster)
    pd.testing.assert_frame_equal(_rows(path), local)


def test_ray_projection_equals_local_and_fills_the_cache(cluster, tiny_generator, monkeypatch):
    from dapper.inversion import projection as P
    from dapper.inversion.perceptual import FeatureNet

    torch.manual_seed(1)
    net = FeatureNet(widths=(4, 6, 8, 8))
    net.input_size = 16
    net.eval().requires_grad_(False)
    monkeypatch.setattr(P, "_perceptual_for", lambda settings, device: net)
    G = tiny_generator(track_w_avg=True)
    with torch.no_grad():
        x = G.synthesis(G.mapping(torch.randn(5, 16, generator=torch.Generator().manual_seed(4)), None))
    settings = P.ProjectionSettings(init="w_avg", steps=6, lr=0.05, early_stop_tol=None, w_avg_samples=256, seed=9)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = P.project_images(G, x, settings=settings, cache=False, progress=False, batch_size=2)
    finally:
        torch.set_num_threads(threads)
    by_ray = P.project_images(G, x, settings=settings, cache=True, progress=False, batch_size=2, executor=cluster)
    assert torch.equal(by_ray.ws, local.ws)
    assert (by_ray.metrics["steps"] == local.metrics["steps"]).all()
    assert by_ray.info["n_optimised"] == 5
    again = P.project_images(G, x, settings=settings, cache=True, progress=False, batch_size=2, executor=cluster)
    assert again.metrics["cached"].all() and torch.equal(again.ws, local.ws)


def test_the_command_lines_take_the_executor(tmp_path, capsys):
    from dapper.cli.experiments import main as experiments_main
    from dapper.cli.project import main as project_main

    (tmp_path / "imgs").mkdir()
    assert project_main(["--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "o"),
                         "--executor", "local", "--ray-address", "auto"]) == 2
    assert "set executor='ray'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="set executor='ray'"):
        experiments_main(["--profile", "quick", "--ray-address", "auto"])
    with pytest.raises(SystemExit):
        experiments_main(["--executor", "dask"])


def _square_plus(shared, item):
    return item * item + shared


def test_process_executor_runs_every_task_once_with_the_shared_state():
    from dapper.executor import ProcessExecutor

    got = dict(ProcessExecutor(2, threads=None, start="fork").map(_square_plus, range(7), shared=10))
    assert got == {i: i * i + 10 for i in range(7)}
    ordered = [i for i, _ in ProcessExecutor(2, threads=None, start="fork").map(_square_plus, range(7), shared=0,
                                                                                  ordered=True)]
    assert ordered == list(range(7))
    # one worker: in this process, in order
    assert list(ProcessExecutor(1).map(_square_plus, [3, 4], shared=1)) == [(0, 10), (1, 17)]
    with pytest.raises(ValueError, match="start"):
        ProcessExecutor(2, start="forkserver-ish")
