"""``driftrec compare`` with policies from user modules (``module.path:factory`` in ``policies``)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from driftrec.envs.config import ConfigError
from driftrec.experiments.cli import main
from driftrec.experiments.compare import load_config

FAST = ["--set", "sim={horizon_days: 3.0, n_items: 30, n_categories: 3}", "--set", "log_users=60",
        "--set", "eval_users=40", "--set", "trace_users=0", "--quiet"]

PLUG = '''
from pathlib import Path

import pandas as pd

from driftrec.agents.policies import OracleGreedyPolicy, RandomPolicy
from driftrec.envs.events import load_events


def same_as_random(user_model, n_users, seed):
    """The built-in random policy, built from what compare hands a factory."""
    return RandomPolicy(user_model.action_space, n_users, seed)


def from_logs(user_model, n_users, seed, logs, logs_path):
    """Checks it got the world's logs, and reports a training cost of its own."""
    assert isinstance(logs, pd.DataFrame) and len(logs) > 0
    assert load_events(logs_path).equals(logs) and Path(logs_path).with_suffix(".users.parquet").is_file()
    policy = RandomPolicy(user_model.action_space, n_users, seed + 1)
    policy.family = "reference"
    policy.train_info = {"env_steps": 7, "logged_rows": len(logs)}
    return policy


class Oracle(OracleGreedyPolicy):
    """oracle-greedy again: it reads the hidden state, so it is family oracle."""

    def __init__(self, user_model, n_users, seed):
        super().__init__(user_model)


CALLS = Path(__file__).with_name("calls.txt")


def counted(user_model, n_users, seed):
    """same_as_random, leaving a mark each time it is built."""
    with open(CALLS, "a") as f:
        f.write(f"{seed}\\n")
    return same_as_random(user_model, n_users, seed)


NOT_A_FUNCTION = 3


def two_args(user_model, n_users):
    return same_as_random(user_model, n_users, 0)


def returns_dict(user_model, n_users, seed):
    return {"not": "a policy"}


def raises(user_model, n_users, seed):
    raise KeyError("segment")


class Stumbles(RandomPolicy):
    """Built fine; fails when it acts."""

    def act(self, obs, mask=None, *, state=None):
        raise ValueError("no item for this user\\nsecond line")


def stumbles(user_model, n_users, seed):
    return Stumbles(user_model.action_space, n_users, seed)
'''


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def plug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The module ``plug_cmp`` (:data:`PLUG`), importable from ``tmp_path/mods``, forgotten after the test."""
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "plug_cmp.py").write_text(textwrap.dedent(PLUG))
    monkeypatch.syspath_prepend(str(folder))
    yield "plug_cmp"
    sys.modules.pop("plug_cmp", None)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2 and err.startswith("driftrec: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


def test_plugins_appear_like_built_in_policies(plug: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    policies = ["random", "oracle-greedy", "popularity", f"{plug}:same_as_random", f"{plug}:from_logs",
                f"{plug}:Oracle"]
    code, stdout, _ = run(capsys, "compare", "--profile", "smoke", "--out", str(out), *FAST,
                          "--set", f"policies=[{', '.join(policies)}]")
    assert code == 0
    results = pd.read_csv(out / "results.csv")
    assert list(results["policy"]) == policies  # as written
    by = results.set_index("policy")
    assert list(by["family"]) == ["reference", "reference", "reference", "custom", "reference", "oracle"]
    # the factory got the world's user model, the evaluation batch and the world's seed: the same numbers
    assert by.loc[f"{plug}:same_as_random", "reward"] == by.loc["random", "reward"]
    assert by.loc[f"{plug}:Oracle", "reward"] == by.loc["oracle-greedy", "reward"]
    # a log-fed factory pays the logs' requests, as popularity does, plus its own steps
    assert by.loc[f"{plug}:from_logs", "env_steps"] == by.loc["popularity", "env_steps"] + 7 > 7
    assert by.loc[f"{plug}:same_as_random", "env_steps"] == 0
    cells = out / "cells" / "default" / "seed0"
    train = json.loads((cells / f"{plug}.from_logs" / "result.json").read_text())["train"]
    assert train["logged_rows"] == len(pd.read_parquet(cells / "logs.parquet")) and train["env_steps"] > 7
    assert not list(cells.glob("*:*"))  # no colon in a path
    daily = pd.read_parquet(out / "daily.parquet")
    assert set(zip(daily["policy"], daily["family"], strict=True)) == set(by["family"].items())

    summary = (out / "summary.md").read_text()
    assert summary in stdout
    assert f"| {plug}:same_as_random | custom |" in summary and f"| {plug}:Oracle | oracle |" in summary
    assert f"From user modules (module:factory): {plug}:same_as_random (custom), {plug}:from_logs (reference), " \
           f"{plug}:Oracle (oracle);" in summary
    assert "Family custom: in no built-in family" in summary and "Family oracle: it reads the hidden" in summary
    rows = summary.splitlines()
    table = rows.index("| policy | family | default |")
    assert rows[table + 2].startswith("| oracle-greedy |") and rows[table + 3].startswith(f"| {plug}:Oracle |")
    best = [r for r in rows if r.startswith("| default | best vs runner-up |")]
    assert len(best) == 1 and "oracle" not in best[0].lower()  # an oracle is never the best deployable policy
    assert (out / "figures" / "reward_bars.png").stat().st_size > 0


def test_resume_keeps_a_finished_plugin_cell(plug: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, calls = tmp_path / "run", tmp_path / "mods" / "calls.txt"
    args = ["compare", "--profile", "smoke", "--out", str(out), *FAST]
    code, _, _ = run(capsys, *args, "--set", f"policies=[random, {plug}:counted]")
    first = pd.read_csv(out / "results.csv")
    assert code == 0 and calls.read_text() == "0\n"
    code, _, _ = run(capsys, *args, "--set", f"policies=[random, {plug}:counted, {plug}:same_as_random]")
    assert code == 0 and calls.read_text() == "0\n"  # the finished cell was not rebuilt
    again = pd.read_csv(out / "results.csv").set_index("policy")
    assert list(again.index) == ["random", f"{plug}:counted", f"{plug}:same_as_random"]
    assert again.loc[f"{plug}:counted", "reward"] == first.set_index("policy").loc[f"{plug}:counted", "reward"]


@pytest.mark.parametrize(("entry", "needle"), [
    ("plug_nowhere:make", "policy 'plug_nowhere:make': No module named 'plug_nowhere'"),
    ("plug_cmp:nothing", "policy 'plug_cmp:nothing': module 'plug_cmp' ("),
    ("plug_cmp:NOT_A_FUNCTION", "policy 'plug_cmp:NOT_A_FUNCTION': plug_cmp.NOT_A_FUNCTION is a int, not a "
                                "callable"),
    ("plug_cmp:two_args", "policy 'plug_cmp:two_args': plug_cmp.two_args(user_model, n_users) cannot be called as "
                          "factory(user_model, n_users, seed"),
    ("plug_cmp.same_as_random", "unknown policy 'plug_cmp.same_as_random'"),
])
def test_a_bad_entry_fails_before_anything_is_written(plug: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      entry: str, needle: str) -> None:
    out = tmp_path / "run"
    code, _, err = run(capsys, "compare", "--profile", "smoke", "--out", str(out), *FAST,
                       "--set", f"policies=[random, {entry}]")
    assert_one_line_error(code, err, needle)
    assert not out.exists()


@pytest.mark.parametrize(("entry", "needle"), [
    ("plug_cmp:returns_dict", "policy 'plug_cmp:returns_dict': the factory returned a builtins.dict, not a "
                              "driftrec.envs.policy.Policy"),
    ("plug_cmp:raises", "policy 'plug_cmp:raises': the factory raised KeyError: 'segment'"),
    ("plug_cmp:stumbles", "policy 'plug_cmp:stumbles': its policy raised ValueError: no item for this user"),
])
def test_a_bad_factory_fails_its_cell_in_one_line(plug: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  entry: str, needle: str) -> None:
    out = tmp_path / "run"
    args = ["compare", "--profile", "smoke", "--out", str(out), *FAST, "--set", f"policies=[{entry}]"]
    code, _, err = run(capsys, *args)
    assert_one_line_error(code, err, needle)
    assert not list(out.glob("cells/*/*/plug_cmp.*/result.json"))
    with pytest.raises(ConfigError) as info:  # --traceback: raised, with the user's error as its cause
        main(["--traceback", *args])
    assert needle in str(info.value)
    assert entry.endswith("returns_dict") or isinstance(info.value.__cause__, (KeyError, ValueError))


def test_the_cli_imports_modules_from_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A console script's sys.path lacks the folder it runs in; compare adds it (at the end)."""
    (tmp_path / "plug_here.py").write_text(PLUG)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    try:
        with pytest.raises(ConfigError, match="No module named 'plug_here'"):  # the library does not touch sys.path
            load_config(profile="smoke", overrides={"policies": ["random", "plug_here:same_as_random"]})
        code, out, _ = run(capsys, "compare", "--profile", "smoke", "--show-config",
                           "--set", "policies=[random, plug_here:same_as_random]")
        assert code == 0 and "plug_here:same_as_random" in out and sys.path[-1] == str(tmp_path)
    finally:
        sys.modules.pop("plug_here", None)
