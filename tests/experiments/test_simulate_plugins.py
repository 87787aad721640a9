"""``driftrec simulate --policy module.path:factory``: a user's own policy writes the log, called as compare does."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from driftrec.envs.events import load_events
from driftrec.experiments.cli import main

SMALL = ["simulate", "--preset", "default", "--users", "12", "--days", "3", "--seed", "5"]

PLUG = '''
from pathlib import Path

import pandas as pd

from driftrec.agents.policies import PopularityPolicy, RandomPolicy
from driftrec.envs.events import load_events


def same_as_random(user_model, n_users, seed):
    return RandomPolicy(user_model.action_space, n_users, seed)


def from_logs(user_model, n_users, seed, logs, logs_path):
    """popularity ranked by the log it is given, after checking both inputs name that log."""
    assert isinstance(logs, pd.DataFrame) and load_events(logs_path).equals(logs)
    return PopularityPolicy(user_model, logs)


def raises(user_model, n_users, seed):
    raise KeyError("segment")


class Stumbles(RandomPolicy):
    def act(self, obs, mask=None, *, state=None):
        raise ValueError("no item for this user")


def stumbles(user_model, n_users, seed):
    return Stumbles(user_model.action_space, n_users, seed)
'''


@pytest.fixture
def plug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The module ``plug_sim`` (:data:`PLUG`) in ``tmp_path/mods``, the current folder; forgotten after the test."""
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "plug_sim.py").write_text(textwrap.dedent(PLUG))
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(folder))])  # only simulate adds it
    yield tmp_path
    sys.modules.pop("plug_sim", None)


def simulate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*SMALL, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_factory_from_the_current_folder_writes_the_same_log_as_the_builtin(
        capsys: pytest.CaptureFixture[str], plug: Path) -> None:
    code, out, err = simulate(capsys, "--policy", "plug_sim:same_as_random", "--out", str(plug / "mine.parquet"))
    assert code == 0, err
    assert "policy plug_sim:same_as_random" in out
    code, _, err = simulate(capsys, "--policy", "random", "--out", str(plug / "builtin.parquet"))
    assert code == 0, err
    mine, builtin = load_events(plug / "mine.parquet"), load_events(plug / "builtin.parquet")
    assert len(mine) > 0
    pd.testing.assert_frame_equal(mine, builtin)


def test_a_factory_that_takes_logs_gets_the_policy_logs(capsys: pytest.CaptureFixture[str], plug: Path) -> None:
    assert simulate(capsys, "--out", str(plug / "logs.parquet"))[0] == 0
    code, _, err = simulate(capsys, "--policy", "plug_sim:from_logs", "--policy-logs", str(plug / "logs.parquet"),
                            "--out", str(plug / "mine.parquet"))
    assert code == 0, err
    code, _, err = simulate(capsys, "--policy", "popularity", "--policy-logs", str(plug / "logs.parquet"),
                            "--out", str(plug / "builtin.parquet"))
    assert code == 0, err
    pd.testing.assert_frame_equal(load_events(plug / "mine.parquet"), load_events(plug / "builtin.parquet"))


@pytest.mark.parametrize(("args", "needles"), [
    (["--policy", "plug_sim:nope"], ["policy 'plug_sim:nope'", "has no attribute 'nope'"]),
    (["--policy", "no_such_mod:f"], ["No module named 'no_such_mod'"]),
    (["--policy", "plug_sim:from_logs"], ["takes logs and logs_path", "--policy-logs FILE"]),
    (["--policy", "plug_sim:same_as_random", "--policy-logs", "x.parquet"], ["--policy-logs", "takes no logs"]),
    (["--policy", "plug_sim:same_as_random", "--epsilon", "0.1"], ["--epsilon is for the logging policy"]),
    (["--policy", "plug_sim:raises"], ["policy 'plug_sim:raises': the factory raised KeyError"]),
    (["--policy", "plug_sim:stumbles"], ["policy 'plug_sim:stumbles': its policy raised ValueError",
                                         "no item for this user"]),
])
def test_a_bad_entry_is_one_line_and_leaves_no_file(capsys: pytest.CaptureFixture[str], plug: Path,
                                                    args: list[str], needles: list[str]) -> None:
    out_dir = plug / "out"
    out_dir.mkdir()
    code, out, err = simulate(capsys, *args, "--out", str(out_dir / "log.parquet"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err
    assert list(out_dir.iterdir()) == []
