"""The README documents what the code does: presets, set-up commands, layout."""

from __future__ import annotations

import re
from pathlib import Path

from driftrec.envs import PRESETS
from driftrec.envs.model import model_for

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_lists_every_preset_with_its_version_and_summary() -> None:
    rows = {m.group(1): (int(m.group(2)), m.group(3).strip())
            for m in re.finditer(r"^\| `([\w-]+)` \| (\d+) \| (.+) \|$", README, re.M)}
    assert rows == {p.name: (p.version, p.summary) for p in PRESETS.values()}


def test_readme_layout_table_matches_default_layout() -> None:
    documented = {m.group(1): m.group(2) for m in re.finditer(r"^\s*\| (\w+) \| (\d+:\d+) \|", README, re.M)}
    layout = model_for("default").layout.slices()
    assert documented == {name: f"{s.start}:{s.stop}" for name, s in layout.items()}


def test_readme_set_up_commands_install_with_cpu_constraints_and_run_pytest() -> None:
    commands = [line for line in README.splitlines() if line.startswith("pip install")]
    assert len(commands) == 2
    assert all("-c constraints-cpu.txt" in c for c in commands)
    assert commands[0].split("&&")[1].strip().startswith("driftrec ")
    assert commands[1].rstrip().endswith("&& pytest")
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert commands[1].startswith('pip install -c constraints-cpu.txt -e ".[test,ray]"')  # the Ray backend's tests
    assert 'pip install -c constraints-cpu.txt -e ".[test,ray]"' in ci and "pytest" in ci
