"""Real mode end to end, as a user runs it: ``python -m dapper report --profile quick --dataset
stanford_cars`` with every model named, on a fake Stanford Cars (bad files mixed in) and model files
made here (an official stylegan2-ada-pytorch ``.pkl``, random weights; see ``real_fakes``). Every
notebook must finish, write its outputs into the run's reports folder, and use nothing of the
embedded world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from real_fakes import make_devkit, write_real_mode_models

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _run_report(tmp_path: Path, params: dict, models_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, DAPPER_REPORTS=str(tmp_path / "reports"), DAPPER_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join(p for p in (str(models_dir), os.environ.get("PYTHONPATH", "")) if p))
    args = [sys.executable, "-m", "dapper", "report", "--profile", "quick", "--dataset", "stanford_cars"]
    for name, value in params.items():
        args += ["-p", name, str(value)]
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)


def test_every_notebook_runs_in_real_mode(tmp_path):
    data = make_devkit(tmp_path / "stanford_cars", per_class=(7, 3), varied=True, photo_size=(96, 64))
    (data / "cars_train" / "00003.jpg").write_text("not a jpeg")  # a bad file: logged, skipped, the run goes on
    models_dir = tmp_path / "models"
    models = write_real_mode_models(models_dir, resolution=32, classifier="test_resnet")
    proc = _run_report(tmp_path, dict(data_root=data, **models), models_dir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    reports = tmp_path / "reports" / "stanford_cars"  # real mode's report lives apart from the embedded world's
    assert not (tmp_path / "reports" / "index.md").exists()
    runs = json.loads((reports / "notebook_runs.json").read_text())
    assert sorted(runs) == NOTEBOOKS
    assert all(r["dataset"] == "stanford_cars" and r["profile"] == "quick" and r.get("status") != "FAILED"
               for r in runs.values()), runs
    assert "The last run of" not in (reports / "index.md").read_text()  # the marker of a failed notebook
    assert (reports / "figures" / "fig0_datasets.png").is_file()  # real mode's own fig0: the photos
    # the study ran on the fake photos with the named classifier, and its rows say so
    rows = pd.read_csv(reports / "results" / "five_fold.csv")
    assert set(rows.dataset) == {"stanford_cars"} and set(rows.profile) == {"quick"}
    assert len(rows) == len(rows.drop_duplicates(["scenario", "condition", "shots_per_class", "fold"]))
    assert rows.accuracy.between(0, 1).all()
    # the direction was chosen by the named instruments (the fake estimator), never the embedded ones
    notebooks = reports / "notebooks"
    text02 = (notebooks / "02_direction_discovery.ipynb").read_text()
    assert "fake_pose:load" in text02 and "detector.pth" in text02
    assert "embedded toycars" not in text02  # instruments.describe names an embedded instrument so
