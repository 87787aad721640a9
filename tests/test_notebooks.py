"""The notebooks in ``notebooks/`` are stored clean: no outputs, no execution counts, a parameters cell.

CI executes them (``--nbmake`` in pytest's addopts, ``notebooks`` in its testpaths); these checks
keep what git holds small and diffable, and keep papermill-style parameter injection possible.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ("01_simulator_tour.ipynb", "02_train_agents.ipynb", "03_compare_results.ipynb", "04_tuning.ipynb")


def _load(path: Path) -> dict[str, Any]:
    # plain JSON: the checks need no nbformat, and a malformed file fails here with its name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise AssertionError(f"{path.name} is not valid notebook JSON: {err}") from None


def _all_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_expected_notebooks_exist() -> None:
    names = {p.name for p in _all_notebooks()}
    missing = [name for name in EXPECTED if name not in names]
    assert not missing, f"missing notebooks: {missing}"


@pytest.mark.parametrize("path", _all_notebooks(), ids=lambda p: p.name)
def test_notebook_is_stripped(path: Path) -> None:
    book = _load(path)
    for i, cell in enumerate(book["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs: strip them before committing"
        assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", _all_notebooks(), ids=lambda p: p.name)
def test_notebook_layout(path: Path) -> None:
    cells = _load(path)["cells"]
    assert cells and cells[0]["cell_type"] == "markdown", f"{path.name} must start with a markdown title cell"
    assert "".join(cells[0]["source"]).lstrip().startswith("# "), f"{path.name}: the first cell has no title"
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters', has {len(tagged)}"
    first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    assert tagged[0] == first_code, f"{path.name}: the parameters cell must be the first code cell"
    assert "torch.set_num_threads(1)" in "".join(cells[first_code + 1]["source"]), \
        f"{path.name}: the cell after the parameters must pin torch to one thread"
