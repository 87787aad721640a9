"""The README documents what the code does: presets, set-up commands, layout, the plugin example."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from driftrec.envs import PRESETS
from driftrec.envs.events import load_events
from driftrec.envs.user_model import user_model_for
from driftrec.experiments.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_lists_every_preset_with_its_version_and_summary() -> None:
    rows = {m.group(1): (int(m.group(2)), m.group(3).strip())
            for m in re.finditer(r"^\| `([\w-]+)` \| (\d+) \| (.+) \|$", README, re.M)}
    assert rows == {p.name: (p.version, p.summary) for p in PRESETS.values()}


def test_readme_layout_table_matches_default_layout() -> None:
    documented = {m.group(1): m.group(2) for m in re.finditer(r"^\s*\| (\w+) \| (\d+:\d+) \|", README, re.M)}
    layout = user_model_for("default").layout.slices()
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


def test_readme_plugin_example_runs_in_compare_from_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The worked example of "Your own policy in compare", saved as my_agents.py where compare runs."""
    section = README[README.index("### Your own policy in `compare`"):]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    command = re.search(r"```bash\n(driftrec compare .*?)\n```", section, re.S).group(1)
    assert "my_agents:make" in command
    (tmp_path / "my_agents.py").write_text(example)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    torch.set_num_threads(1)
    try:
        code = main(["compare", "--profile", "smoke", "--out", "run", "--quiet", "--set", "log_users=200",
                     "--set", "eval_users=100", "--set", "trace_users=0", "--set", "sim.horizon_days=4",
                     "--set", "policies=[random, popularity, my_agents:make]"])
    finally:
        sys.modules.pop("my_agents", None)
    capsys.readouterr()
    results = pd.read_csv(tmp_path / "run" / "results.csv").set_index("policy")
    assert code == 0 and results.loc["my_agents:make", "family"] == "custom"
    assert results.loc["my_agents:make", "env_steps"] == results.loc["popularity", "env_steps"] > 0  # it took the logs
    train = json.loads((tmp_path / "run/cells/default/seed0/my_agents.make/result.json").read_text())["train"]
    assert train["logged_clicks"] > 0
    assert "| my_agents:make | custom |" in (tmp_path / "run" / "summary.md").read_text()


def test_readme_plugin_example_simulates_a_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The same example through the section's `driftrec simulate --policy my_agents:make ...` line."""
    section = README[README.index("### Your own policy in `compare`"):README.index("## Tuning")]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    command = re.search(r"`(driftrec simulate --policy my_agents:make [^`]*)`", section).group(1).split()
    (tmp_path / "my_agents.py").write_text(example)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    small = ["--users", "30", "--days", "4"]
    try:
        assert main(["simulate", *small, "--policy", "logging", "--out", "logs.parquet"]) == 0
        assert main([*command[1:], *small]) == 0
    finally:
        sys.modules.pop("my_agents", None)
    assert "policy my_agents:make" in capsys.readouterr().out
    mine = load_events(tmp_path / "mine.parquet")
    assert mine["user_id"].nunique() > 0 and (mine["behaviour"] == "click").any()
