"""The study's skeleton: pins, the papermill report runner, the report index, shared helpers."""

from __future__ import annotations

import json
import os
import random
import re
import time
import tomllib
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dapper import cli, report
from dapper.cli import report as report_command
from dapper.study.params import check_params
from dapper.utils import (
    atomic_save,
    atomic_write_bytes,
    cache_dir,
    display_path,
    get_device,
    repo_root,
    reports_dir,
    seed_everything,
)

ROOT = repo_root()
NOTEBOOKS = [
    "00_datasets",
    "01_inversion",
    "02_direction_discovery",
    "03_augmentation",
    "04_five_fold_experiments",
    "05_saliency",
    "06_latent_explorer",
]


# ---------------------------------------------------------------------------------------------
# Pins: pyproject.toml, environment.yml and binder/environment.yml must agree


def _name(requirement: str) -> str:
    return re.split(r"[=<>!~\[ ;]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def _pins(requirements: list[str]) -> dict[str, str]:
    pins = {}
    for req in requirements:
        if req.startswith("-"):  # pip options such as --extra-index-url or -e .
            continue
        assert "==" in req, f"{req!r} is not pinned exactly"
        pins[_name(req)] = req.split("==", 1)[1].strip()
    return pins


def _conda_env(path: Path) -> tuple[list[str], dict[str, str]]:
    env = yaml.safe_load(path.read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return conda, _pins(pip)


def test_pins_agree_across_pyproject_and_environment_files():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _pins(project["dependencies"])
    extras = {k: _pins(v) for k, v in project["optional-dependencies"].items()}
    assert project["requires-python"] == ">=3.11"
    assert set(extras) >= {"notebooks", "dev"}
    every = {**runtime, **extras["notebooks"], **extras["dev"]}

    for path, must_hold in [
        (ROOT / "environment.yml", every),
        (ROOT / "binder" / "environment.yml", {**runtime, **extras["notebooks"]}),
    ]:
        conda, pip = _conda_env(path)
        assert "python=3.11" in conda, path
        missing = sorted(set(must_hold) - set(pip))
        assert not missing, f"{path.name} lacks {missing}"
        differ = {k: (v, every.get(k)) for k, v in pip.items() if every.get(k) != v}
        assert not differ, f"{path} pins differ from pyproject (file, pyproject): {differ}"


def test_installed_versions_match_the_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for v in project["optional-dependencies"].values() for r in v]
    drift = {n: (v, version(n)) for n, v in _pins(reqs).items() if version(n) != v}
    assert not drift, f"installed versions differ from pyproject (pin, installed): {drift}"


def test_binder_post_build_installs_the_package():
    post_build = ROOT / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK)
    assert "pip install" in post_build.read_text() and "-e ." in post_build.read_text()


def test_ci_runs_setup_then_the_readme_test_command():
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK)
    commands = [ln.strip() for ln in ci.read_text().splitlines() if ln.strip().startswith("make")]
    assert commands == ["make setup", "make test"]
    readme = (ROOT / "README.md").read_text()
    assert "make setup" in readme and "make report" in readme and "make test" in readme


# ---------------------------------------------------------------------------------------------
# The study's notebooks: parameters cell, kernel, title


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_notebook_skeleton(stem):
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "dapper"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    defaults: dict = {}
    exec(params[0].source, {}, defaults)  # the cell only assigns literals
    assert defaults["profile"] == "quick" and defaults["dataset"] == "toycars"
    assert {"data_root", "network"} <= set(defaults)
    # papermill parses the cell with its own regexes (an "=" in a comment confuses them).
    import papermill

    assert set(papermill.inspect_notebook(str(ROOT / "notebooks" / f"{stem}.ipynb"))) == set(defaults)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit stripped"


# ---------------------------------------------------------------------------------------------
# The papermill runner


def _write_notebook(path: Path, params: str, *cells: str) -> Path:
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    nb.cells = [
        new_markdown_cell(f"# {path.stem}"),
        new_code_cell(params, metadata={"tags": ["parameters"]}),
        *[new_code_cell(c) for c in cells],
    ]
    nbformat.write(nb, path)
    return path


BASE_PARAMS = 'profile = "quick"\ndataset = "toycars"'


def test_unknown_parameter_is_rejected_before_anything_runs(tmp_path, capsys):
    books = tmp_path / "nb"
    books.mkdir()
    _write_notebook(books / "00_a.ipynb", BASE_PARAMS + "\nseed = 0", "raise SystemExit('ran')")
    _write_notebook(books / "01_b.ipynb", BASE_PARAMS, "raise SystemExit('ran')")
    argv = ["--notebooks-dir", str(books), "--reports-dir", str(tmp_path / "rep")]

    assert report_command.main([*argv, "--profile", "quick", "-p", "sede", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'sede'" in err
    assert "00_a.ipynb accepts: profile, dataset, seed" in err
    assert "01_b.ipynb accepts: profile, dataset" in err
    assert not (tmp_path / "rep" / "notebooks" / "00_a.ipynb").exists()

    # A name one notebook declares goes to that notebook only.
    plan = report.plan_parameters(
        report.find_notebooks(books), {"profile": "quick", "dataset": "toycars"}, {"seed": 3}
    )
    assert [p.get("seed") for p in plan.values()] == [3, None]
    # a run of one notebook takes the full run's argument list: the name is known, just not passed
    one = report.plan_parameters(report.find_notebooks(books, "01"), {"profile": "quick", "dataset": "toycars"},
                                 {"seed": 3}, known=report.find_notebooks(books))
    assert list(one.values()) == [{"profile": "quick", "dataset": "toycars"}]


def test_notebook_without_profile_or_dataset_is_rejected(tmp_path):
    _write_notebook(tmp_path / "00_a.ipynb", 'profile = "quick"')
    with pytest.raises(report.ParameterError, match=r"00_a.ipynb does not declare dataset"):
        report.plan_parameters(
            report.find_notebooks(tmp_path), {"profile": "quick", "dataset": "toycars"}, {}
        )


def test_parameter_values_are_python_literals_else_strings():
    assert report.parse_value("3") == 3
    assert report.parse_value("0.5") == 0.5
    assert report.parse_value("None") is None
    assert report.parse_value("/data/cars") == "/data/cars"


def test_failing_notebook_stops_the_batch_and_names_notebook_and_cell(tmp_path, capsys):
    books, reports = tmp_path / "nb", tmp_path / "rep"
    books.mkdir()
    marker = tmp_path / "02_ran"
    _write_notebook(books / "00_ok.ipynb", BASE_PARAMS, "x = 1")
    _write_notebook(books / "01_bad.ipynb", BASE_PARAMS, "y = 2", "raise ValueError('boom')")
    _write_notebook(books / "02_after.ipynb", BASE_PARAMS, f"open({str(marker)!r}, 'w').close()")

    argv = ["--notebooks-dir", str(books), "--reports-dir", str(reports), "--kernel", "python3"]
    assert report_command.main([*argv, "--profile", "quick", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "notebook 01_bad.ipynb failed at cell 3" in err  # markdown, parameters, y = 2, raise
    assert "raise ValueError('boom')" in err and "ValueError: boom" in err
    assert "00_ok.ipynb" in err and "total" in err  # wall times of what ran
    assert not marker.exists(), "the batch went on after a failing notebook"
    assert (reports / "notebooks" / "01_bad.ipynb").exists()
    assert "**The last run of 01_bad.ipynb failed**" in (reports / "index.md").read_text()


def test_report_run_passes_parameters_and_rebuilds_index(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPPER_REPORTS", str(tmp_path / "elsewhere"))  # the runner overrides it
    books, reports = tmp_path / "nb", tmp_path / "rep"
    books.mkdir()
    _write_notebook(
        books / "00_make.ipynb",
        BASE_PARAMS + "\nshots = 1",
        "import json, os\n"
        "from dapper.utils import reports_dir\n"
        "json.dump({'profile': profile, 'dataset': dataset, 'shots': shots, 'cwd': os.getcwd()},\n"
        "          open(reports_dir('results') / 'seen.json', 'w'))\n"
        "(reports_dir('figures') / 'fig6_accuracy_vs_shots.png').write_bytes(b'png')\n"
        "(reports_dir('results') / 'five_fold.csv').write_text('condition,accuracy\\nreal,0.81234\\n')",
    )
    timings = report.run_report(
        "quick", "stanford_cars", {"shots": 5}, notebooks_dir=books, reports_dir=reports,
        kernel="python3", progress=False,
    )
    assert [name for name, _ in timings] == ["00_make.ipynb"]
    seen = json.loads((reports / "results" / "seen.json").read_text())
    assert seen == {"profile": "quick", "dataset": "stanford_cars", "shots": 5, "cwd": str(ROOT)}
    index = (reports / "index.md").read_text()
    assert "![fig6_accuracy_vs_shots](figures/fig6_accuracy_vs_shots.png)" in index
    assert "| real | 0.8123 |" in index
    assert "profile=quick, dataset=stanford_cars, shots=5" in index


def test_only_picks_one_notebook_by_number_or_name(tmp_path):
    for stem in ("00_a", "01_b"):
        _write_notebook(tmp_path / f"{stem}.ipynb", BASE_PARAMS)
    assert [p.name for p in report.find_notebooks(tmp_path, "01")] == ["01_b.ipynb"]
    assert [p.name for p in report.find_notebooks(tmp_path, "00_a")] == ["00_a.ipynb"]
    with pytest.raises(report.ReportError, match="choose one of: 00_a.ipynb, 01_b.ipynb"):
        report.find_notebooks(tmp_path, "07")


# ---------------------------------------------------------------------------------------------
# reports/index.md


def test_index_shows_each_figure_with_its_caption_and_tables(tmp_path):
    figures, results = tmp_path / "figures", tmp_path / "results"
    figures.mkdir()
    results.mkdir()
    (figures / "fig1_reconstructions.png").write_bytes(b"png")
    (figures / "fig9_new.png").write_bytes(b"png")
    (results / "projection.csv").write_text("image,mse\na,0.5\n")
    (results / "fig9_new_numbers.csv").write_text("k,v\nx,1\n")
    (results / "fig9_new.md").write_text("Caption for figure nine.\n")
    (results / "unrelated.csv").write_text("col\n" + "".join(f"{i}\n" for i in range(30)))

    index = (report.write_index(tmp_path)).read_text()
    fig1, fig9, others = (index.index(s) for s in ("## fig1_", "## fig9_", "## Other results"))
    assert fig1 < index.index("| a | 0.5 |") < fig9  # listed in FIGURE_RESULTS
    assert fig9 < index.index("Caption for figure nine.") < index.index("| x | 1 |") < others
    assert others < index.index("### unrelated.csv")
    assert "First 20 of 30 rows; all in `results/unrelated.csv`." in index
    assert not list(tmp_path.glob(".index*")), "temp file left behind"


def test_index_says_which_run_made_each_notebooks_outputs(tmp_path):
    report.record_runs(tmp_path, {"profile": "full", "dataset": "toycars"}, [("04_study.ipynb", 3600.0)])
    report.record_runs(tmp_path, {"profile": "quick", "dataset": "toycars", "only": "05"}, [("05_sal.ipynb", 61.0)])
    runs = json.loads((tmp_path / report.RUNS_FILE).read_text())
    assert runs["04_study.ipynb"]["profile"] == "full" and runs["05_sal.ipynb"]["profile"] == "quick"
    assert "only" not in runs["05_sal.ipynb"]
    index = report.render_index(tmp_path)
    assert "| 04_study.ipynb | toycars | full |" in index and "| 60 min 00.0 s |" in index
    assert "| 05_sal.ipynb | toycars | quick |" in index
    assert "different profiles" in index
    (tmp_path / report.RUNS_FILE).write_text("{broken")  # a damaged record never stops the report
    assert "different profiles" not in report.render_index(tmp_path)
    report.record_runs(tmp_path, {"profile": "quick", "dataset": "toycars"}, [("00_a.ipynb", 1.0)])
    assert list(json.loads((tmp_path / report.RUNS_FILE).read_text())) == ["00_a.ipynb"]
    # an extra parameter is recorded only for the notebooks that were given it
    both = {"profile": "full", "dataset": "toycars"}
    report.record_runs(tmp_path, {**both, "conditions": "all"}, [("00_a.ipynb", 1.0), ("04_b.ipynb", 2.0)],
                       {"00_a.ipynb": both, "04_b.ipynb": {**both, "conditions": "all"}})
    runs = json.loads((tmp_path / report.RUNS_FILE).read_text())
    assert "conditions" not in runs["00_a.ipynb"] and runs["04_b.ipynb"]["conditions"] == "all"


def test_index_without_figures_says_so(tmp_path):
    assert "No figures yet" in report.render_index(tmp_path)


# ---------------------------------------------------------------------------------------------
# python -m dapper


def test_cli_lists_every_command_and_each_one_exists(capsys):
    """Every module with a command line is listed, and every listed command's module has a main."""
    import importlib

    assert cli.main(["--help"]) == 0
    usage = capsys.readouterr().out
    for name, (module_name, _) in cli.COMMANDS.items():
        assert name in usage
        assert callable(importlib.import_module(module_name).main), module_name
    front_door = {ROOT / "dapper" / "__main__.py", ROOT / "dapper" / "cli" / "__init__.py"}
    with_main = {p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
                 for p in (ROOT / "dapper").rglob("*.py")
                 if p not in front_door and "\ndef main(" in p.read_text()}
    listed = {m for m, _ in cli.COMMANDS.values()}
    assert with_main == listed
    # command lines live in dapper/cli only: the library has none
    assert all(m.startswith("dapper.cli.") for m in with_main), with_main
    # the engine's command line is reached through the command that gives it the toycars source set
    assert "sources=source_gan.SOURCES, feature_nets=source_gan.FEATURE_NETS" in (
        ROOT / "dapper" / "cli" / "train_gan.py").read_text()
    assert cli.main(["no-such-command"]) == 2


@pytest.mark.parametrize("command, options", [
    ("saliency", ["--augmented", "--cam-method", "--classifier-weights", "--lpips-weights", "--ray-address"]),
    ("augment-identity", ["--pivotal-steps", "--pose-annotator", "--vgg16-weights", "--executor"]),
    ("directions", ["--data-root", "--vehicle-detector", "--pose-annotator", "--vgg16-weights", "--lpips-weights",
                    "--executor", "--ray-address"]),
])
def test_the_notebook_commands_explain_themselves(command, options, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith(f"usage: python -m dapper {command}")
    assert [o for o in options + ["--profile", "--dataset", "--network", "--classes"] if o not in usage] == []


# ---------------------------------------------------------------------------------------------
# dapper.utils


def test_atomic_write_leaves_only_the_file(tmp_path):
    target = tmp_path / "sub" / "blob.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["blob.bin"]


def test_atomic_save_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    seen = []

    def broken(tmp: Path):
        seen.append(tmp)
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_save(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    assert seen[0].parent == tmp_path and seen[0].suffix == ".csv"  # writers pick format by suffix


def test_cache_and_reports_dirs_follow_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("DAPPER_REPORTS", str(tmp_path / "r"))
    assert cache_dir("projections", "toycars") == tmp_path / "c" / "projections" / "toycars"
    assert (tmp_path / "c" / "projections" / "toycars").is_dir()
    assert reports_dir("figures") == tmp_path / "r" / "figures"
    monkeypatch.delenv("DAPPER_CACHE")
    monkeypatch.setattr("dapper.utils.repo_root", lambda: tmp_path / "repo")
    assert cache_dir() == tmp_path / "repo" / ".cache"


def test_seeding_is_reproducible():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first


def test_device_choice(monkeypatch):
    monkeypatch.delenv("DAPPER_DEVICE", raising=False)
    assert get_device("cpu").type == "cpu"
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv("DAPPER_DEVICE", "cpu")
    assert get_device().type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            get_device("cuda")


def test_check_params_names_the_bad_parameter(tmp_path):
    check_params("quick", "toycars")
    with pytest.raises(ValueError, match="profile='fast'"):
        check_params("fast", "toycars")
    with pytest.raises(ValueError, match="dataset='cars'"):
        check_params("quick", "cars")
    with pytest.raises(FileNotFoundError, match="data_root="):
        check_params("full", "stanford_cars", data_root=tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="network="):
        check_params("full", "toycars", network=tmp_path / "G.pkl")
    # real mode: a notebook passes both paths; unset ones are named before anything runs
    with pytest.raises(ValueError, match="needs data_root, network "):
        check_params("quick", "stanford_cars", None, None)
    with pytest.raises(ValueError, match="needs network"):
        check_params("quick", "stanford_cars", tmp_path, None)
    check_params("full", "stanford_cars")  # the study's own config check passes no paths
    text = tmp_path / "notes.txt"
    text.write_text("not a network")
    with pytest.raises(ValueError, match="network=.*not a StyleGAN2 checkpoint"):
        check_params("quick", "toycars", None, text)


def test_real_mode_names_every_missing_model_and_checks_each_given_one(tmp_path):
    (tmp_path / "cars").mkdir()
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    real = dict(data_root=tmp_path / "cars", network=None, classifier_weights=None, vehicle_detector="embedded",
                pose_annotator=None, vgg16_weights=weights, lpips_weights=weights)
    with pytest.raises(ValueError) as err:
        check_params("quick", "stanford_cars", **real)
    message = str(err.value)
    assert "needs network, classifier_weights, pose_annotator (" in message
    assert "-p classifier_weights " in message and "-p vehicle_detector " in message  # the command to run
    # the toycars world needs none of them; a named model must still exist
    check_params("quick", "toycars", **{k: None for k in real})
    with pytest.raises(FileNotFoundError, match="classifier_weights='.*' is not a file"):
        check_params("quick", "toycars", classifier_weights=tmp_path / "none.pth")
    with pytest.raises(ValueError, match="pose_annotator='nomodule_xyz:f'.*cannot be found"):
        check_params("quick", "toycars", pose_annotator="nomodule_xyz:f")
    with pytest.raises(ValueError, match="expected 'module:function'"):
        check_params("quick", "toycars", pose_annotator="just_a_name")
    check_params("quick", "toycars", pose_annotator="dapper.instruments:describe", classifier_weights="scratch")
    with pytest.raises(ValueError, match="even number"):
        check_params("quick", "toycars", classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="named twice"):
        check_params("quick", "toycars", classes=["a", "a"])
    check_params("quick", "toycars", classes=["a", "b"])
    with pytest.raises(TypeError, match="unknown"):
        check_params("quick", "toycars", detector="x")


def test_classifier_is_a_timm_name_and_needs_weights_where_a_notebook_fine_tunes():
    check_params("quick", "stanford_cars", classifier="resnet50")
    with pytest.raises(ValueError, match="classifier='resnext50_32x4' is not a timm model.*resnext50_32x4d"):
        check_params("quick", "stanford_cars", classifier="resnext50_32x4")  # close matches named
    # toycars: only the embedded model ships weights, so a notebook that fine-tunes needs them...
    with pytest.raises(ValueError, match="needs classifier_weights"):
        check_params("quick", "toycars", classifier="resnet50", classifier_weights=None)
    check_params("quick", "toycars", classifier="resnet50", classifier_weights="scratch")
    # ...while one that reads only the input size (notebook 03) declares no weights
    check_params("quick", "toycars", classifier="resnet50")
    check_params("quick", "toycars", classifier="dapper_resnext_8x4d", classifier_weights=None)


def test_display_path_is_relative_inside_the_repo_only(tmp_path):
    shipped = ROOT / "checkpoints" / "source_gan_v2.safetensors"
    assert display_path(shipped) == "checkpoints/source_gan_v2.safetensors"
    assert display_path(str(shipped)) == "checkpoints/source_gan_v2.safetensors"
    outside = tmp_path / "my_gan.pkl"
    assert display_path(outside) == str(outside)  # a user's file elsewhere keeps its full path


def test_real_mode_models_are_checked_for_every_notebook_before_the_first_runs(tmp_path, capsys):
    books = tmp_path / "nb"
    books.mkdir()
    real = BASE_PARAMS + "\ndata_root = None\nnetwork = None"
    _write_notebook(books / "00_a.ipynb", real, "raise SystemExit('ran')")
    _write_notebook(books / "04_b.ipynb", real + "\nclassifier_weights = None", "raise SystemExit('ran')")
    (tmp_path / "cars").mkdir()
    ckpt = tmp_path / "G.pkl"
    ckpt.write_bytes(b"\x80\x04" + b"\x00" * 64)  # a pickle's first bytes: a StyleGAN2 checkpoint's format
    argv = ["--notebooks-dir", str(books), "--reports-dir", str(tmp_path / "rep"), "--profile", "quick",
            "--dataset", "stanford_cars", "-p", "data_root", str(tmp_path / "cars"), "-p", "network", str(ckpt)]
    assert report_command.main(argv) == 2
    err = capsys.readouterr().err
    assert "needs classifier_weights" in err and "-p classifier_weights" in err
    assert not (tmp_path / "rep" / "notebooks" / "00_a.ipynb").exists()  # nothing ran


def test_a_failed_run_marks_its_stale_outputs_in_the_index(tmp_path):
    books, reports = tmp_path / "nb", tmp_path / "rep"
    books.mkdir()
    _write_notebook(books / "00_a.ipynb", BASE_PARAMS,
                    "from dapper.utils import reports_dir\n"
                    "(reports_dir('figures') / 'fig0_new.png').write_bytes(b'png')")
    _write_notebook(books / "01_b.ipynb", BASE_PARAMS, "raise RuntimeError('boom')")
    with pytest.raises(report.NotebookFailed):
        report.run_report("quick", "toycars", notebooks_dir=books, reports_dir=reports, kernel="python3",
                          progress=False)
    index = (reports / "index.md").read_text()
    assert "**The last run of 01_b.ipynb failed**" in index and "01_b.ipynb (FAILED)" in index
    assert "| 00_a.ipynb | toycars | quick |" in index  # the notebook that finished is this run's
    runs = json.loads((reports / "notebook_runs.json").read_text())
    assert runs["01_b.ipynb"]["status"] == "FAILED" and "status" not in runs["00_a.ipynb"]


def test_an_interrupted_run_keeps_the_record_of_the_notebooks_it_finished(tmp_path, monkeypatch):
    books, reports = tmp_path / "nb", tmp_path / "rep"
    books.mkdir()
    for name in ("00_a.ipynb", "01_b.ipynb", "02_c.ipynb"):
        _write_notebook(books / name, BASE_PARAMS, "x = 1")
    ran = []

    def fake_run(nb, out, params, kernel, progress):
        if nb.name == "01_b.ipynb":
            time.sleep(0.2)
            raise KeyboardInterrupt
        ran.append(nb.name)

    monkeypatch.setattr(report, "run_notebook", fake_run)
    with pytest.raises(KeyboardInterrupt):
        report.run_report("quick", "toycars", notebooks_dir=books, reports_dir=reports, kernel="python3",
                          progress=False)
    assert ran == ["00_a.ipynb"]
    runs = json.loads((reports / "notebook_runs.json").read_text())
    assert "status" not in runs["00_a.ipynb"] and runs["00_a.ipynb"]["profile"] == "quick"
    assert runs["01_b.ipynb"]["status"] == "FAILED" and "interrupted" in runs["01_b.ipynb"]["error"]
    assert runs["01_b.ipynb"]["seconds"] >= 0.2  # how long it ran before it stopped
    assert "02_c.ipynb" not in runs
    assert "**The last run of 01_b.ipynb failed**" in (reports / "index.md").read_text()


def test_the_readme_real_mode_command_names_every_model_parameter():
    from dapper.study.params import REAL_MODE_MODELS

    readme = (ROOT / "README.md").read_text()
    start = readme.index("make report PROFILE=quick DATASET=stanford_cars")
    command = readme[start:readme.index("```", start)]
    assert [n for n in REAL_MODE_MODELS if f"-p {n} " not in command] == []


def test_the_runner_writes_where_DAPPER_REPORTS_points(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPPER_REPORTS", str(tmp_path / "elsewhere"))
    assert report.reports_root() == tmp_path / "elsewhere"  # the runner's default, as every notebook's reports_dir()
    monkeypatch.delenv("DAPPER_REPORTS")
    assert report.reports_root() == ROOT / "reports"


def test_a_damaged_cache_file_is_remade_and_said_once(tmp_path, caplog):
    import logging

    from dapper import utils

    calls = []

    def make():
        calls.append(1)
        return {"x": np.arange(3)}

    good = tmp_path / "c" / "good.npz"
    assert utils.cached_arrays(good, make)["x"].tolist() == [0, 1, 2]
    assert utils.cached_arrays(good, make)["x"].tolist() == [0, 1, 2] and len(calls) == 1  # read, not remade
    bad = [tmp_path / "c" / f"bad{i}.npz" for i in range(2)]
    for p in bad:
        p.write_bytes(b"PK\x03\x04 not really a zip")
    with caplog.at_level(logging.WARNING, logger="dapper"):
        for p in bad:
            assert utils.cached_arrays(p, make)["x"].tolist() == [0, 1, 2]
    assert len(calls) == 3
    said = [r for r in caplog.records if "damaged cache file" in r.getMessage()]
    assert len(said) == 1 and "bad0.npz" in said[0].getMessage()
    # and the remade files are whole now
    assert all(utils.read_cached_arrays(p)["x"].tolist() == [0, 1, 2] for p in bad)
    assert utils.read_cached_arrays(tmp_path / "missing.npz") is None


def test_weights_hash_is_kept_per_state_and_follows_every_change():
    import torch

    from dapper.utils import weights_hash

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    twin.load_state_dict(net.state_dict())
    first = weights_hash(net)
    assert weights_hash(net) == first == weights_hash(twin)  # the same weights, whatever object
    with torch.no_grad():
        net[0].weight[0, 0] += 1.0  # in place
    changed = weights_hash(net)
    assert changed != first
    net.load_state_dict(twin.state_dict())  # copied back in place
    assert weights_hash(net) == first
    net[0].bias.data = net[0].bias.data + 1.0  # a new tensor under the same parameter
    assert weights_hash(net) not in (first, changed)
    net.train()(torch.randn(5, 3))  # a buffer (running mean) moves in a forward pass
    assert weights_hash(net) != weights_hash(twin)
