"""Layers that point one way (issue 13, DESIGN.md "Layout"), checked statically.

Every import of a project module is read from the source with :mod:`ast`: at module level,
inside functions and under ``if TYPE_CHECKING:`` alike (a type-only import is still a
dependency a reader must follow), plus string constants that name a project module (an import
by name, e.g. ``importlib.import_module("driftrec.experiments.train")``). ``from X import name``
is an edge to ``X.name`` when that is a project module, else to ``X``; relative imports are
resolved; the implicit import of a module's parent packages is not an edge. Then:

- the import graph has no cycle;
- ``driftrec.envs`` imports nothing above it, ``driftrec.ingest`` only ``envs`` (and itself),
  ``driftrec.agents`` neither ``experiments`` nor ``ingest``;
- no code module is longer than :data:`MAX_LINES` lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 800  # a module longer than this holds more than one concern: split it by concern

ALLOWED: dict[str, set[str]] = {
    # layer -> the layers its modules may import (experiments, the top, may import every layer)
    "envs": {"envs"},
    "ingest": {"envs", "ingest"},
    "agents": {"envs", "agents"},
}


# ------------------------------------------------------------------------------------- the graph
def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """``driftrec.x.y`` -> source file, for every .py of the packages listed in pyproject.toml."""
    with open(root / "pyproject.toml", "rb") as f:
        setup = tomllib.load(f)["tool"]["setuptools"]
    modules: dict[str, Path] = {}
    for package in setup["packages"]:
        top = ".".join(package.split(".")[:2])
        folder = root / setup["package-dir"][top] / Path(*package.split(".")[2:])
        for path in sorted(folder.glob("*.py")):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return modules


def imported_modules(source: str, module: str, is_package: bool, known: Iterable[str]) -> set[str]:
    """The project modules (among ``known``) that the code ``source`` of ``module`` imports, anywhere in it."""
    known = set(known)
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:  # `import a.b.c` binds the deepest project module of the path
                parts = alias.name.split(".")
                found.add(next((".".join(parts[:i]) for i in range(len(parts), 0, -1)
                                if ".".join(parts[:i]) in known), ""))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
            found.add(node.value)  # an import by name
    return (found & known) - {module}


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports."""
    return {name: imported_modules(path.read_text(), name, path.name == "__init__.py", modules)
            for name, path in modules.items()}


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` as its modules in import order, the first repeated at the end; None if acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def layer(module: str) -> str:
    """``driftrec.agents.rl`` -> ``agents``."""
    return module.split(".")[1]


def layering_violations(graph: Mapping[str, Iterable[str]], low: str) -> list[str]:
    """The imports of layer ``low``'s modules that point to a layer it may not import."""
    return sorted(f"{m} imports {d}" for m, deps in graph.items() if layer(m) == low
                  for d in deps if layer(d) not in ALLOWED[low])


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    return project_modules()


@pytest.fixture(scope="module")
def graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return import_graph(modules)


# ------------------------------------------------------------------------------------- the checks
def test_the_scan_sees_the_whole_code(modules: dict[str, Path], graph: dict[str, set[str]]) -> None:
    """Every code file is a module of the graph, and the graph has the edges a real project has:
    otherwise the checks below would pass vacuously."""
    files = {p.resolve() for top in ("envs", "agents", "experiments", "ingest") if (ROOT / top).is_dir()
             for p in (ROOT / top).rglob("*.py") if "__pycache__" not in p.parts}
    assert files == {p.resolve() for p in modules.values()}, "a code file is outside the listed packages"
    assert {"driftrec.envs", "driftrec.envs.rollout", "driftrec.agents.policies",
            "driftrec.agents.supervised.base", "driftrec.experiments.cli"} <= set(modules)
    assert len(modules) >= 50
    edges = sum(map(len, graph.values()))
    assert edges >= 3 * len(modules), f"only {edges} import edges among {len(modules)} modules"
    assert "driftrec.envs.state" in graph["driftrec.envs.rollout"]
    assert "driftrec.envs.rollout" in graph["driftrec.agents.policies"]


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("low", sorted(ALLOWED))
def test_layers_point_one_way(graph: dict[str, set[str]], low: str) -> None:
    wrong = layering_violations(graph, low)
    assert not wrong, f"driftrec.{low} may import only {sorted(ALLOWED[low])}:\n" + "\n".join(wrong)


def test_no_module_is_too_long(modules: dict[str, Path]) -> None:
    lengths = {name: len(path.read_text().splitlines()) for name, path in modules.items()}
    long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
    assert max(lengths.values()) > MAX_LINES // 2  # the lengths are real (not empty reads)


# ------------------------------------------------------------------------------------- the tools
def test_find_cycle_on_planted_graphs() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) is None  # a diamond is no cycle
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"a"}, "a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"a": {"z"}, "z": {"q"}, "q": {"z"}}) == ["z", "q", "z"]  # found from any start


def test_every_kind_of_import_is_an_edge() -> None:
    known = {"p", "p.a", "p.b", "p.c", "p.d", "p.e", "p.sub", "p.sub.f", "p.sub.g", "p.h"}
    source = """
import os
import p.a
from p import b
from p.sub import f, NAME
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from p.c import Thing
def later():
    import p.d as dee
    class Inner:
        def method(self):
            from . import e
            from .sub.g import X
x = "p.h"
"""
    assert imported_modules(source, "p.me", False, known) == {"p.a", "p.b", "p.sub.f", "p.sub", "p.c", "p.d",
                                                                "p.e", "p.sub.g", "p.h"}
    # a package's own `from . import x` is relative to itself
    assert imported_modules("from . import f\nfrom .g import Y\n", "p.sub", True, known) == {"p.sub.f", "p.sub.g"}
    # `from p.sub import NAME` (not a module) is an edge to the package p.sub; its parents are not edges
    assert imported_modules("from p.sub import NAME\n", "p.me", False, known) == {"p.sub"}


def test_the_layering_check_catches_a_back_pointing_import() -> None:
    graph = {"driftrec.envs.rollout": {"driftrec.agents.policies", "driftrec.envs.state"},
             "driftrec.agents.policies": {"driftrec.envs.rollout"},
             "driftrec.agents.rl": {"driftrec.experiments.train"}, "driftrec.ingest.csv": {"driftrec.agents.rl"}}
    assert layering_violations(graph, "envs") == ["driftrec.envs.rollout imports driftrec.agents.policies"]
    assert layering_violations(graph, "agents") == ["driftrec.agents.rl imports driftrec.experiments.train"]
    assert layering_violations(graph, "ingest") == ["driftrec.ingest.csv imports driftrec.agents.rl"]
