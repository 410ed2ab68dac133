"""Run the study's notebooks in order with papermill and rebuild ``reports/index.md``.

``make report`` calls ``python -m dapper report --profile full --dataset toycars``. Each numbered
notebook ``notebooks/NN_*.ipynb`` is executed with the repo root as working directory; the
executed copy goes to ``reports/notebooks/``, while the notebooks themselves write figures to
``reports/figures/`` and tables to ``reports/results/`` (found through
:func:`dapper.utils.reports_dir`, which honours ``DAPPER_REPORTS``; the runner sets it so the
kernels write where the runner reads).

Unlike papermill (which only warns), a parameter name that no notebook declares in its
``parameters`` cell is an error, raised before anything runs: a typo must not cost a long run.
Extra ``-p name value`` parameters go only to the notebooks that declare them.

The batch stops at the first failing notebook and prints its name, the failing cell and the error.
"""

from __future__ import annotations

import ast
import csv
import datetime as _dt
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dapper.utils import atomic_write_bytes, display_path, repo_root, reports_root

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
PREFERRED_KERNEL = "dapper"
FALLBACK_KERNEL = "python3"
TABLE_MAX_ROWS = 20

# Which results tables back which figure (file names in reports/results). Tables named after the
# figure (``<figure stem>*.csv``) are attached without being listed here; a ``<figure stem>.md``
# file in reports/results is shown as the figure's caption.
FIGURE_RESULTS: dict[str, list[str]] = {
    "fig1_reconstructions": ["projection.csv"],
    "fig5_rotation": ["rotation.csv", "directions.csv", "directions_by_coefficient.csv"],
    "fig6_accuracy_vs_shots": ["five_fold_summary.csv", "five_fold.csv"],
    "fig6c_noise_curve": ["five_fold_noise_curve.csv", "five_fold_noise_points.csv", "five_fold_ceiling_tests.csv",
                          "five_fold_ceiling_shares.csv", "five_fold_ceiling_agreement.csv"],
    "fig6d_filter": ["five_fold_filter_agreement.csv", "five_fold_filter_tests.csv", "five_fold_filter_summary.csv"],
    "fig7_gradcam": ["saliency.csv"],
}
# Which profile, dataset and time produced each notebook's current outputs: ``make report ONLY=..``
# reruns one notebook, so reports/ can mix runs, and the index must say which is which.
RUNS_FILE = "notebook_runs.json"


class ReportError(Exception):
    """A problem the user must fix; the message says what and where."""


class ParameterError(ReportError):
    pass


@dataclass
class NotebookFailed(ReportError):
    notebook: str
    cell_index: int | None  # 0-based index in the source notebook (markdown cells count)
    exec_count: int | None
    source: str
    error: str
    executed_copy: Path
    timings: list[tuple[str, float]] = field(default_factory=list)  # notebooks run so far

    def __str__(self) -> str:
        where = "the injected parameters" if self.cell_index is None else f"cell {self.cell_index}"
        bar = "-" * 72
        return (
            f"notebook {self.notebook} failed at {where} "
            f"(0-based index, markdown cells included; execution count {self.exec_count}):\n"
            f"{bar}\n{self.source.rstrip()}\n{bar}\n{self.error}\n"
            f"Executed copy with the full traceback: {self.executed_copy}"
        )


# ---------------------------------------------------------------------------------------------
# Notebooks and their parameters


def find_notebooks(notebooks_dir: Path, only: str | None = None) -> list[Path]:
    """Numbered notebooks in run order; ``only`` picks one by file name, stem or number."""
    notebooks = sorted(Path(notebooks_dir).glob(NOTEBOOK_GLOB))
    if not notebooks:
        raise ReportError(f"no notebooks matching {NOTEBOOK_GLOB} in {notebooks_dir}")
    if only is None:
        return notebooks
    picked = [nb for nb in notebooks if only in (nb.name, nb.stem, nb.stem[:2])]
    if not picked:
        names = ", ".join(nb.name for nb in notebooks)
        raise ReportError(f"--only {only!r} matches no notebook; choose one of: {names}")
    return picked


def _read_notebook(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _parameters_cell_index(nb: dict) -> int | None:
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get(
            "tags", []
        ):
            return i
    return None


def declared_parameters(path: Path) -> list[str]:
    """Names assigned at top level in the notebook's ``parameters``-tagged cell, in order."""
    nb = _read_notebook(path)
    index = _parameters_cell_index(nb)
    if index is None:
        raise ParameterError(f"{path.name} has no code cell tagged 'parameters'")
    source = _cell_source(nb["cells"][index])
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ParameterError(f"{path.name}: parameters cell is not valid Python ({exc})") from None
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and target.id not in names:
                names.append(target.id)
    return names


def plan_parameters(
    notebooks: list[Path], base: dict[str, object], extras: dict[str, object], known: list[Path] | None = None
) -> dict[Path, dict[str, object]]:
    """Parameters for each notebook, or :class:`ParameterError` before anything runs.

    ``base`` (profile, dataset) must be declared by every notebook; each name in ``extras`` must
    be declared by at least one notebook of ``known`` (all the numbered notebooks; default: those
    run), so the full run's argument list also serves a run of one notebook, and is passed only to
    the notebooks run that declare it.
    """
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    everywhere = {nb: declared.get(nb) or declared_parameters(nb) for nb in (known or notebooks)}

    def accepted() -> str:
        return "\n".join(f"  {nb.name} accepts: {', '.join(ns)}" for nb, ns in everywhere.items())

    for nb, names in declared.items():
        missing = [name for name in base if name not in names]
        if missing:
            raise ParameterError(
                f"{nb.name} does not declare {', '.join(missing)} in its parameters cell; "
                f"every numbered notebook must take {', '.join(base)}.\n{accepted()}"
            )
    for name in extras:
        if name in base:
            raise ParameterError(f"pass {name} with --{name}, not with -p")
        if not any(name in names for names in everywhere.values()):
            raise ParameterError(
                f"unknown parameter {name!r}: no notebook declares it in its "
                f"parameters cell.\n{accepted()}"
            )
    return {
        nb: {**base, **{k: v for k, v in extras.items() if k in names}}
        for nb, names in declared.items()
    }


def check_models(plan: dict[Path, dict[str, object]], profile: str, dataset: str) -> None:
    """Every model parameter any notebook of the run declares (``dapper.study.params.REAL_MODE_MODELS``,
    ``classes``, ``classifier``, ``executor`` and ``ray_address``), checked at once before the first
    notebook runs: in real mode a model no ``-p`` names is missing for the notebook that needs it,
    hours later otherwise; and real mode's generator and photos themselves
    (:func:`dapper.study.params.check_real_inputs`)."""
    from dapper.study.params import REAL_MODE_MODELS, check_params, check_real_inputs

    names = {n for nb in plan for n in declared_parameters(nb)}
    given = {k: v for params in plan.values() for k, v in params.items()}
    models = {n: given.get(n) for n in REAL_MODE_MODELS if n in names}
    positional = {n: models.pop(n) for n in ("data_root", "network") if n in models}
    extra = {k: given.get(k) for k in ("classes", "classifier") if k in names}
    extra.update({k: given[k] for k in ("executor", "ray_address") if k in names and k in given})
    try:
        check_params(profile, dataset, **positional, **extra, **models)
        if dataset == "stanford_cars":  # the files themselves, read once here rather than in a notebook
            check_real_inputs(positional.get("data_root"), positional.get("network"), extra.get("classes"))
    except (ValueError, FileNotFoundError, ImportError) as exc:
        raise ParameterError(str(exc)) from None


def parse_value(text: str) -> object:
    """``-p`` values: Python literals (3, 0.5, None, True, [1, 2], 'x') else the plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def choose_kernel(preferred: str = PREFERRED_KERNEL) -> str:
    """The ``dapper`` kernel that ``make setup`` registers, else this interpreter's ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    if preferred in KernelSpecManager().find_kernel_specs():
        return preferred
    print(
        f"note: Jupyter kernel {preferred!r} is not registered (run `make setup`); "
        f"using {FALLBACK_KERNEL!r}",
        file=sys.stderr,
    )
    return FALLBACK_KERNEL


# ---------------------------------------------------------------------------------------------
# Running


def run_notebook(
    notebook: Path,
    executed_copy: Path,
    parameters: dict[str, object],
    kernel: str,
    progress: bool = True,
) -> None:
    """Execute ``notebook`` into ``executed_copy``; :class:`NotebookFailed` if a cell raises."""
    import papermill as pm

    try:
        # Recorded in the executed notebook's metadata: relative to the repo when run from its root.
        here = Path.cwd().resolve() == repo_root().resolve()
        pm.execute_notebook(
            display_path(notebook) if here else str(notebook),
            display_path(executed_copy) if here else str(executed_copy),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(repo_root()),
            progress_bar=progress,
        )
    except pm.PapermillExecutionError as exc:
        raise _failure(notebook, executed_copy, exc) from None


def _failure(notebook: Path, executed_copy: Path, exc) -> NotebookFailed:
    # papermill's index counts the injected-parameters cell it inserted right after the
    # parameters cell; map it back to the notebook the user edits.
    params_at = _parameters_cell_index(_read_notebook(notebook))
    index: int | None = exc.cell_index
    if params_at is not None:
        if exc.cell_index == params_at + 1:
            index = None
        elif exc.cell_index > params_at + 1:
            index = exc.cell_index - 1
    return NotebookFailed(
        notebook=notebook.name,
        cell_index=index,
        exec_count=exc.exec_count,
        source=exc.source,
        error=f"{exc.ename}: {exc.evalue}",
        executed_copy=executed_copy,
    )


def report_folder(dataset: str, root: Path | None = None) -> Path:
    """Where a dataset's report goes: the root (``$DAPPER_REPORTS``, else ``<repo>/reports``) for the
    embedded world, ``<root>/<dataset>`` for any other, so a real-mode report never shows the
    embedded world's figures and tables, nor theirs it."""
    root = Path(root or reports_root())
    return root if dataset == "toycars" else root / dataset


def prepare_reports_dir(reports_dir: Path) -> Path:
    reports_dir = Path(reports_dir).resolve()
    for sub in ("notebooks", "figures", "results"):
        (reports_dir / sub).mkdir(parents=True, exist_ok=True)
    return reports_dir


def run_report(
    profile: str,
    dataset: str,
    extras: dict[str, object] | None = None,
    only: str | None = None,
    notebooks_dir: Path | None = None,
    reports_dir: Path | None = None,
    kernel: str | None = None,
    progress: bool = True,
) -> list[tuple[str, float]]:
    """Run the notebooks in order; return ``[(notebook name, seconds)]``; rebuild the index.

    Raises :class:`ParameterError` before running anything, or :class:`NotebookFailed` at the
    first notebook that raises: later notebooks are not run, and the index records the notebooks
    that finished and marks the failed one (its outputs and those after it are stale). An interrupt
    (Ctrl-C, ``timeout --signal=INT``) is recorded the same way before it goes on up.
    """
    notebooks_dir = Path(notebooks_dir or repo_root() / "notebooks")
    reports_dir = prepare_reports_dir(Path(reports_dir or report_folder(dataset)))
    notebooks = find_notebooks(notebooks_dir, only)
    plan = plan_parameters(notebooks, {"profile": profile, "dataset": dataset}, extras or {},
                           known=find_notebooks(notebooks_dir))
    check_models(plan, profile, dataset)
    kernel = kernel or choose_kernel()
    # Kernels inherit the environment: notebooks find the output folders through it.
    os.environ["DAPPER_REPORTS"] = str(reports_dir)

    timings: list[tuple[str, float]] = []
    for nb in notebooks:
        shown = ", ".join(f"{k}={v!r}" for k, v in plan[nb].items())
        print(f"==> {nb.name} ({shown}) on kernel {kernel}", flush=True)
        start = time.perf_counter()
        try:
            run_notebook(nb, reports_dir / "notebooks" / nb.name, plan[nb], kernel, progress)
        except (NotebookFailed, KeyboardInterrupt) as exc:
            # The notebooks that finished wrote new outputs: say so, and mark the failed (or interrupted)
            # one, so the index never describes the previous run beside this run's figures.
            run_info = {"profile": profile, "dataset": dataset, **(extras or {})}
            record_runs(reports_dir, run_info, timings, {n.name: plan[n] for n in notebooks})
            if isinstance(exc, KeyboardInterrupt):
                error = "interrupted: its outputs may be partly this run's"
            else:
                exc.timings = [*timings, (nb.name, time.perf_counter() - start)]
                error = str(exc).splitlines()[0] if str(exc) else "failed"
            mark_failed(reports_dir, nb.name, run_info, error, seconds=time.perf_counter() - start)
            write_index(reports_dir, run_info, timings)
            raise
        timings.append((nb.name, time.perf_counter() - start))
        print(f"    {nb.name} done in {_fmt_seconds(timings[-1][1])}", flush=True)
    run_info = {"profile": profile, "dataset": dataset, **(extras or {})}
    if only is not None:
        run_info["only"] = only
    record_runs(reports_dir, run_info, timings, {nb.name: plan[nb] for nb in notebooks})
    write_index(reports_dir, run_info, timings)
    return timings


def read_runs(reports_dir: Path) -> dict:
    """``reports/notebook_runs.json`` as a dict; empty when missing or unreadable (a damaged record
    is rebuilt by the next run rather than stopping the report)."""
    path = Path(reports_dir) / RUNS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def mark_failed(reports_dir: Path, name: str, run_info: dict[str, object], error: str,
                seconds: float = 0.0) -> None:
    """Record in ``notebook_runs.json`` that notebook ``name`` failed in this run after ``seconds``
    (wall): its outputs (and those of the notebooks after it) are from earlier runs, or missing."""
    runs = read_runs(reports_dir)
    runs[name] = {**{k: v for k, v in run_info.items() if k != "only"}, "status": "FAILED", "error": error[:200],
                  "finished": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "seconds": round(seconds, 1)}
    atomic_write_bytes(Path(reports_dir) / RUNS_FILE, (json.dumps(runs, indent=1, sort_keys=True) + "\n").encode())


def record_runs(reports_dir: Path, run_info: dict[str, object], timings: list[tuple[str, float]],
                per_notebook: dict[str, dict] | None = None) -> dict:
    """Merge this run's notebooks into ``reports/notebook_runs.json`` (name -> profile, dataset,
    other parameters, finish time, wall seconds); entries of notebooks not rerun are kept.
    ``per_notebook``: the parameters each notebook was given (an extra parameter goes only to the
    notebooks that declare it), recorded instead of the run's when present."""
    runs = read_runs(reports_dir)
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    params = {k: v for k, v in run_info.items() if k != "only"}
    for name, seconds in timings:
        given = (per_notebook or {}).get(name, params)
        runs[name] = {**given, "finished": stamp, "seconds": round(seconds, 1)}
    text = json.dumps(runs, indent=1, sort_keys=True) + "\n"
    atomic_write_bytes(Path(reports_dir) / RUNS_FILE, text.encode("utf-8"))
    return runs


def _fmt_seconds(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)} min {secs:04.1f} s" if minutes else f"{secs:.1f} s"


def print_timings(timings: list[tuple[str, float]], file=sys.stdout) -> None:
    if not timings:
        return
    width = max(len(name) for name, _ in timings)
    print("\nwall time per notebook:", file=file)
    for name, seconds in timings:
        print(f"  {name:<{width}}  {_fmt_seconds(seconds)}", file=file)
    print(f"  {'total':<{width}}  {_fmt_seconds(sum(s for _, s in timings))}", file=file)


# ---------------------------------------------------------------------------------------------
# reports/index.md


def _fmt_cell(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return text.replace("|", "\\|")
    if value.is_integer() and "." not in text and "e" not in text.lower():
        return text
    return f"{value:.4g}"


def csv_to_markdown(path: Path, max_rows: int = TABLE_MAX_ROWS) -> str:
    """A CSV file as a markdown table; long tables are cut with a note naming the file."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return f"*(`results/{path.name}` is empty)*"
    header, body = rows[0], rows[1:]
    lines = [
        "| " + " | ".join(_fmt_cell(h) for h in header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(_fmt_cell(c) for c in row) + " |" for row in body[:max_rows]]
    if len(body) > max_rows:
        lines.append(f"\n*First {max_rows} of {len(body)} rows; all in `results/{path.name}`.*")
    return "\n".join(lines)


def results_for_figure(figure_stem: str, results_dir: Path) -> list[Path]:
    """Tables backing a figure: those listed in FIGURE_RESULTS, then ``<figure stem>*.csv``."""
    listed = [results_dir / name for name in FIGURE_RESULTS.get(figure_stem, [])]
    named = sorted(results_dir.glob(f"{figure_stem}*.csv"))
    found: list[Path] = []
    for path in listed + named:
        if path.is_file() and path not in found:
            found.append(path)
    return found


def render_index(
    reports_dir: Path,
    run_info: dict[str, object] | None = None,
    timings: list[tuple[str, float]] | None = None,
) -> str:
    reports_dir = Path(reports_dir)
    figures_dir, results_dir = reports_dir / "figures", reports_dir / "results"
    figures = sorted(figures_dir.glob("*.png")) if figures_dir.is_dir() else []
    lines = [
        "# DAPPER report",
        "",
        "Regenerated by `make report` (`python -m dapper report`); do not edit by hand.",
    ]
    if run_info:
        shown = ", ".join(f"{k}={v}" for k, v in run_info.items())
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
        lines.append(f"Last run: {shown}, finished {stamp}.")
    if timings:
        total = _fmt_seconds(sum(s for _, s in timings))
        per = ", ".join(f"{name} {_fmt_seconds(s)}" for name, s in timings)
        lines.append(f"Wall time: {total} ({per}).")
    lines.append("")
    lines += _runs_table(reports_dir)

    used: set[Path] = set()
    if not figures:
        lines += ["No figures yet: the notebooks have not produced any.", ""]
    for fig in figures:
        lines += [f"## {fig.stem}", "", f"![{fig.stem}](figures/{fig.name})", ""]
        caption = results_dir / f"{fig.stem}.md"
        if caption.is_file():
            lines += [caption.read_text(encoding="utf-8").strip(), ""]
            used.add(caption)
        for table in results_for_figure(fig.stem, results_dir):
            lines += [f"Numbers behind it: `results/{table.name}`", "", csv_to_markdown(table), ""]
            used.add(table)

    tables = sorted(results_dir.glob("*.csv")) if results_dir.is_dir() else []
    others = [p for p in tables if p not in used]
    if others:
        lines += ["## Other results", ""]
        for table in others:
            lines += [f"### {table.name}", "", csv_to_markdown(table), ""]
    return "\n".join(lines).rstrip() + "\n"


def _runs_table(reports_dir: Path) -> list[str]:
    """Markdown lines: which run made each notebook's current outputs (empty if none recorded)."""
    runs = read_runs(reports_dir)
    if not runs:
        return []
    keys = sorted({k for r in runs.values() for k in r} - {"finished", "seconds", "status", "error"})
    failed = sorted(n for n, r in runs.items() if r.get("status") == "FAILED")
    warn = [f"**The last run of {n} failed** ({runs[n].get('error', '')}): its outputs below, and those of the "
            "notebooks after it, are from earlier runs or missing." for n in failed]
    lines = [*warn, *([""] if warn else []), "Outputs on this page, by the notebook run that wrote them:", "",
             "| notebook | " + " | ".join(keys) + " | finished | wall |", "|---" * (len(keys) + 3) + "|"]
    for name in sorted(runs):
        r = runs[name]
        cells = [str(r.get(k, "")) for k in keys]
        if r.get("status") == "FAILED":
            name = f"{name} (FAILED)"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r.get('finished', '')} | "
                     f"{_fmt_seconds(float(r.get('seconds', 0)))} |")
    mixed = {r.get("profile") for r in runs.values()}
    if len(mixed) > 1:
        lines += ["", "*The notebooks above ran under different profiles: compare numbers only within one.*"]
    return lines + [""]


def write_index(
    reports_dir: Path,
    run_info: dict[str, object] | None = None,
    timings: list[tuple[str, float]] | None = None,
) -> Path:
    """Rewrite ``<reports_dir>/index.md`` from the figures and results present now."""
    text = render_index(reports_dir, run_info, timings)
    return atomic_write_bytes(Path(reports_dir) / "index.md", text.encode("utf-8"))


if __name__ == "__main__":  # the old way in: say where the command is now instead of doing nothing
    raise SystemExit("`python -m dapper.report` is now `python -m dapper report`, with the same options")
