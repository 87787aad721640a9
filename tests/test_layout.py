"""Guard rails of the package layout (DESIGN.md, Layout): the code folders are installed as
``driftrec.<folder>`` through an explicit setuptools ``packages`` list, so a new folder or
sub-folder missing from that list would silently not ship; bare ``import envs`` is banned.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
NOT_CODE = {"tests", "notebooks"}
CODE_FOLDERS = ("envs", "agents", "experiments", "ingest")


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _is_source_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith((".", "_")) and not path.name.endswith(".egg-info")


def _code_packages() -> dict[str, str]:
    """``driftrec.<dotted path>`` -> folder, for every folder under the root that holds .py files."""
    found: dict[str, str] = {}
    for top in sorted(p for p in ROOT.iterdir() if _is_source_dir(p) and p.name not in NOT_CODE):
        for folder in [top, *sorted(p for p in top.rglob("*") if _is_source_dir(p))]:
            rel = folder.relative_to(ROOT)
            if any(part.startswith((".", "_")) for part in rel.parts):
                continue  # __pycache__, hidden folders
            if any(folder.glob("*.py")):
                found["driftrec." + ".".join(rel.parts)] = rel.as_posix()
    return found


def test_the_code_folders_are_found() -> None:
    """The scan below must see the real layout, or the next test would pass vacuously."""
    assert set(CODE_FOLDERS) <= set(_code_packages().values())


def test_every_code_folder_is_a_listed_and_mapped_package(pyproject: dict[str, Any]) -> None:
    setup = pyproject["tool"]["setuptools"]
    listed, mapping = set(setup["packages"]), setup["package-dir"]
    for package, folder in _code_packages().items():
        assert package in listed, f"folder {folder}/ holds code but '{package}' is not in [tool.setuptools] packages"
        top = package.split(".")[1]
        assert mapping.get(f"driftrec.{top}") == top, f"package-dir does not map 'driftrec.{top}' to '{top}'"
    for package in listed:  # and nothing listed is stale
        assert (ROOT / Path(*package.split(".")[1:])).is_dir(), f"'{package}' is listed but its folder is gone"


def test_pytest_imports_in_importlib_mode(pyproject: dict[str, Any], pytestconfig: pytest.Config) -> None:
    assert "--import-mode=importlib" in pyproject["tool"]["pytest"]["ini_options"]["addopts"].split()
    assert pytestconfig.getoption("importmode") == "importlib"


def test_ruff_bans_the_bare_folder_imports(pyproject: dict[str, Any]) -> None:
    lint = pyproject["tool"]["ruff"]["lint"]
    assert "TID" in lint["select"] or "TID251" in lint["select"]
    banned = lint["flake8-tidy-imports"]["banned-api"]
    for name in CODE_FOLDERS:
        assert name in banned and banned[name].get("msg"), f"ruff TID251 does not ban bare '{name}'"


def _ruff(source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "snippet.py"
    path.write_text(source)
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                           str(ROOT / "pyproject.toml"), str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("source", ["import envs\n", "from agents import policy\n", "import experiments.cli\n"])
def test_ruff_rejects_a_bare_import(source: str, tmp_path: Path) -> None:
    probe = _ruff("print(1)\n", tmp_path)
    if probe.returncode != 0 and "No module named ruff" in probe.stderr:
        pytest.skip("ruff is not installed in this environment")
    assert probe.returncode == 0, probe.stdout + probe.stderr  # a clean file passes, so the config loads
    result = _ruff(source + "\nprint(1)\n", tmp_path)
    assert result.returncode == 1 and "TID251" in result.stdout, result.stdout + result.stderr
