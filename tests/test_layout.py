"""The package layout's rules, read from the source: which part may import which.

engine (stylegan2) <- worlds (data) and method (inversion, directions, augment, classify and the
method's judges, the annotators) <- study <- face (plots, widgets, report, and the command line:
``dapper.cli``, the only place that parses arguments). Nothing below the face imports it. Every
import counts, also those inside functions.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "dapper"

ENGINE = ("dapper.stylegan2",)
DATA = ("dapper.data",)
METHOD = ("dapper.inversion", "dapper.directions", "dapper.augment", "dapper.classify", "dapper.instruments",
          "dapper.synthetic_filter",
          "dapper.judges.annotators")
ORACLES = ("dapper.judges.oracles",)
STUDY = ("dapper.study",)
FACE = ("dapper.plots", "dapper.widgets", "dapper.report", "dapper.cli", "dapper.__main__")
PLOTTING = ("dapper.plots", "dapper.widgets")
COMMAND_LINE = ("dapper.cli",)
# Modules that import argparse without being a command line: the rosinality checkpoint reader reads
# the argparse.Namespace its checkpoints were saved with. The list only shrinks.
ARGPARSE_READERS = {"dapper.stylegan2.checkpoints.rosinality"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), filename=str(path)) for name, path in MODULES.items()}


def in_part(name: str, part: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in part)


class Imports(ast.NodeVisitor):
    """Every dapper module a file imports, with the function it is imported in (None: top level)."""

    def __init__(self, module: str, is_package: bool):
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, str | None, int]] = []
        self.function: list[str] = []

    def visit_FunctionDef(self, node):
        self.function.append(node.name)
        self.generic_visit(node)
        self.function.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def add(self, name: str, node) -> None:
        if name == "dapper" or name.startswith("dapper."):
            self.found.append((name, self.function[0] if self.function else None, node.lineno))

    def visit_Import(self, node):
        for alias in node.names:
            self.add(alias.name, node)

    def visit_ImportFrom(self, node):
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            self.add(sub if sub in MODULES else target, node)


def imports_of(name: str) -> list[tuple[str, str | None, int]]:
    visitor = Imports(name, MODULES[name].name == "__init__.py")
    visitor.visit(TREES[name])
    return visitor.found


GRAPH = {name: imports_of(name) for name in MODULES}


def offences(importers, forbidden, graph=None) -> list[str]:
    """``path:line imports target`` for each import of a ``forbidden(target)`` module by a module of
    ``importers`` (parts, or a test of the module's name); ``graph``: :data:`GRAPH` or a made-up one."""
    inside = importers if callable(importers) else (lambda name: in_part(name, importers))
    out = []
    for name, found in (GRAPH if graph is None else graph).items():
        if not inside(name):
            continue
        for target, _function, line in found:
            if forbidden(target):
                out.append(f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}")
    return out


def plotting_offences(graph=None) -> list[str]:
    return offences(METHOD + STUDY + DATA + ENGINE, lambda t: in_part(t, PLOTTING + ("dapper.report",)), graph)


def face_offences(graph=None) -> list[str]:
    return offences(lambda name: not in_part(name, FACE), lambda t: in_part(t, FACE), graph)


def argparse_importers(trees) -> set[str]:
    """The modules among ``trees`` (name -> parsed source) that import argparse, anywhere in the file."""
    def imports_argparse(node) -> bool:
        if isinstance(node, ast.Import):
            return any(a.name.partition(".")[0] == "argparse" for a in node.names)
        return isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("argparse")

    return {name for name, tree in trees.items() if any(imports_argparse(n) for n in ast.walk(tree))}


def argparse_offences(trees=None) -> list[str]:
    users = argparse_importers(TREES if trees is None else trees)
    return sorted(n for n in users if not in_part(n, COMMAND_LINE) and n not in ARGPARSE_READERS)


def test_the_rules_see_the_modules():
    # guards against a rule that passes because it looks at nothing
    assert {"dapper.stylegan2.train", "dapper.data.toycars", "dapper.inversion.projection",
            "dapper.directions.methods", "dapper.study.experiments", "dapper.judges.oracles"} <= set(MODULES)
    assert ("dapper.stylegan2.networks", None) in {(t, f) for t, f, _ in GRAPH["dapper.stylegan2.train"]}
    # every part of the face names modules that exist, so no rule about the face looks at nothing
    assert all(any(in_part(m, (part,)) for m in MODULES) for part in FACE)
    assert {"dapper.cli", "dapper.cli.options", "dapper.cli.experiments", "dapper.__main__"} <= set(MODULES)


# what every part may use: paths, caches and atomic writes; where independent tasks run
SHARED_BELOW = ("dapper.utils", "dapper.executor")


def test_the_engine_imports_no_dataset_and_no_method():
    assert offences(ENGINE, lambda t: not (in_part(t, ENGINE) or t in SHARED_BELOW)) == []


def test_data_knows_no_method():
    assert offences(DATA, lambda t: not (in_part(t, DATA) or t in SHARED_BELOW)) == []


def test_the_method_knows_no_study_and_never_the_oracles():
    assert offences(METHOD, lambda t: in_part(t, STUDY + ORACLES + FACE)) == []


def test_the_judges_know_only_the_world():
    judges = ("dapper.judges",)
    shared = ("dapper.utils", "dapper.fitting", "dapper.modelfile")
    assert offences(judges, lambda t: not (in_part(t, DATA + judges + shared))) == []


def test_results_never_depend_on_plotting_or_widgets():
    # computing never draws, not even at the end of a command: the command line (dapper.cli) draws
    assert plotting_offences() == []


def test_nothing_below_the_face_imports_it():
    # the face (figures, widgets, the report, the command line) calls the library, never the reverse
    assert face_offences() == []


def test_only_the_command_line_parses_arguments():
    users = argparse_importers(TREES)
    assert "dapper.cli.options" in users  # the rule sees the command line's own argparse
    assert argparse_offences() == []
    assert ARGPARSE_READERS <= users, "a module no longer imports argparse: take it off ARGPARSE_READERS"


def test_the_face_rules_can_fail():
    made_up = {"dapper.study.experiments": [("dapper.plots", "main", 7)],
               "dapper.utils": [("dapper.cli.options", None, 3)],
               "dapper.cli.experiments": [("dapper.plots", None, 2), ("dapper.study.experiments", None, 5)],
               "dapper.report": [("dapper.cli", None, 4)]}
    # drawing inside a command's main counts too
    assert plotting_offences(made_up) == ["dapper/study/experiments.py:7 imports dapper.plots"]
    assert face_offences(made_up) == ["dapper/study/experiments.py:7 imports dapper.plots",
                                      "dapper/utils.py:3 imports dapper.cli.options"]
    parser_inside = ast.parse("def main(argv):\n    from argparse import ArgumentParser\n")
    parser_on_top = ast.parse("import argparse\n")
    trees = {"dapper.study.status": parser_inside, "dapper.judges": parser_on_top, "dapper.cli.status": parser_on_top,
             "dapper.stylegan2.checkpoints.rosinality": parser_on_top}
    assert argparse_offences(trees) == ["dapper.judges", "dapper.study.status"]


def test_no_import_cycles():
    edges = {name: {t for t, _, _ in found if t in MODULES and t != name} for name, found in GRAPH.items()}
    # a package's __init__ re-exporting its own modules is not a cycle of the layout
    for name in edges:
        edges[name] = {t for t in edges[name] if not (MODULES[name].name == "__init__.py" and t.startswith(name + "."))}
        edges[name] -= {"dapper"}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def private_uses(tree: ast.AST, own: str | None = None) -> list[str]:
    """``from dapper.x import _name`` and ``alias._name`` where alias is a dapper module."""
    aliases, out = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dapper") and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in MODULES:
                    aliases[a.asname or a.name] = full
                elif a.name.startswith("_") and node.module != own:
                    out.append(f"{node.module}.{a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("dapper"):
                    aliases[a.asname or a.name] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in aliases
                and aliases[node.value.id] != own):
            out.append(f"{aliases[node.value.id]}.{node.attr}")
    return out


def test_no_private_name_is_used_outside_its_module():
    found = {}
    for name, path in MODULES.items():
        uses = private_uses(ast.parse(path.read_text()), own=name)
        if uses:
            found[name] = uses
    assert found == {}


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebooks_call_public_names_only(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    tree = ast.parse(code)
    assert private_uses(tree) == []
    # and they import only modules that exist
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dapper"):
            assert node.module in MODULES, f"{notebook.name} imports {node.module}"


def test_the_private_name_check_can_fail():
    tree = ast.parse("from dapper.inversion import projection as P\nfrom dapper.utils import _temp_path_beside\n"
                     "P._RowAdam\n")
    assert private_uses(tree) == ["dapper.utils._temp_path_beside", "dapper.inversion.projection._RowAdam"]


# Modules still over the size limit, each waiting for its split; the set only shrinks (empty now: keep it so).
OVERSIZE: set[str] = set()


def test_no_module_is_over_800_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in MODULES.values()}
    assert "dapper/data/toycars.py" in sizes and max(sizes.values()) > 400  # the check sees the real package
    assert {f: n for f, n in sizes.items() if n > 800 and f not in OVERSIZE} == {}
    assert all(sizes.get(f, 0) > 800 for f in OVERSIZE), "a module left the size limit: take it off OVERSIZE"


def test_arguments_are_checked_with_errors_not_asserts():
    # assert vanishes under python -O: a bad argument must raise a ValueError (or TypeError) that says why
    found = [f"{p.relative_to(ROOT)}:{n.lineno}" for p in MODULES.values()
             for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Assert)]
    assert found == []


def raw_pools(tree: ast.AST) -> list[int]:
    """Lines that import multiprocessing or concurrent.futures (process pools)."""
    def pooled(name: str) -> bool:
        return name.split(".")[0] in ("multiprocessing", "concurrent")

    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Import) and any(pooled(a.name) for a in node.names)
            or isinstance(node, ast.ImportFrom) and node.level == 0 and pooled(node.module or "")]


def test_local_processes_run_through_the_executor():
    # one place starts worker processes (dapper.executor.ProcessExecutor): its start method, torch
    # threads and shared state are decided once
    found = {name: lines for name, path in MODULES.items() if name != "dapper.executor"
             for lines in [raw_pools(ast.parse(path.read_text()))] if lines}
    assert found == {}
    assert raw_pools(ast.parse(MODULES["dapper.executor"].read_text()))  # the rule sees its one user


# Imports inside functions. Everything a module needs is imported at its top, except:
# optional dependencies that may be missing (a module that uses them imports without them),
OPTIONAL_DEPENDENCIES = ("ray", "papermill", "jupyter_client", "ipywidgets", "pytorch_grad_cam", "triton")
# what the light modules defer, so that the report runner, the ``python -m dapper`` dispatcher and
# the notebooks' parameter check start fast and without torch (test_light_modules_import_without_torch),
LIGHT_MODULES = {
    "dapper.utils": ("torch", "numpy", "hashlib", "logging"),
    "dapper.report": ("dapper.study.params",),
    "dapper.study.params": ("timm", "dapper.classify", "dapper.instruments", "dapper.stylegan2",
                            "dapper.data.stanford_cars"),
    "dapper.executor": ("torch",),
    "dapper.modelfile": ("safetensors.torch",),
    "dapper.data.images": ("torch",),
    "dapper.plots": ("torch",),
}
# and the loaders of dapper.stylegan2, imported on first use so that its networks import alone.
DEFERRED = {"dapper.stylegan2": ("dapper.stylegan2.checkpoints",)}


def inner_imports(name: str, tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, imported module)`` for each import inside a function of module ``name``."""
    package = name if MODULES.get(name, Path()).name == "__init__.py" else name.rpartition(".")[0]
    out = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import):
                out.extend((child.lineno, a.name) for a in child.names)
            elif in_function and isinstance(child, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - (child.level - 1)] if child.level else []
                target = ".".join(base + ([child.module] if child.module else []))
                subs = [f"{target}.{a.name}" for a in child.names]
                out.extend((child.lineno, s if s in MODULES else target) for s in subs)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return sorted(set(out))


def inner_import_offences(trees=None) -> list[str]:
    allowed = {**LIGHT_MODULES, **DEFERRED}
    out = []
    for name, tree in (TREES if trees is None else trees).items():
        for line, target in inner_imports(name, tree):
            reasons = OPTIONAL_DEPENDENCIES + allowed.get(name, ())
            if not any(target == r or target.startswith(r + ".") for r in reasons):
                out.append(f"{name}:{line} imports {target}")
    return out


def test_imports_sit_at_the_top_unless_they_have_a_reason():
    assert inner_import_offences() == []
    # every exception is still taken, so the lists only shrink
    for name, targets in {**LIGHT_MODULES, **DEFERRED}.items():
        inside = {t for _, t in inner_imports(name, TREES[name])}
        unused = [r for r in targets if not any(t == r or t.startswith(r + ".") for t in inside)]
        assert unused == [], f"{name} no longer imports {unused} inside a function: take it off the list"


def test_the_inner_import_rule_can_fail():
    made_up = {"dapper.study.stats": ast.parse("def f():\n    import pandas as pd\n    import ray\n"),
               "dapper.utils": ast.parse("import os\ndef g():\n    import torch\n    from dapper import executor\n"),
               "dapper.stylegan2": ast.parse("def __getattr__(n):\n    from . import checkpoints, networks\n")}
    assert inner_import_offences(made_up) == ["dapper.study.stats:2 imports pandas",
                                              "dapper.utils:4 imports dapper.executor",
                                              "dapper.stylegan2:2 imports dapper.stylegan2.networks"]


def test_light_modules_import_without_torch():
    # what LIGHT_MODULES defers is what keeps these modules light: a fresh process imports them all
    code = f"import sys\nimport {', '.join(LIGHT_MODULES)}, dapper.cli\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
