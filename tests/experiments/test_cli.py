"""The ``driftrec`` CLI: presets, simulate, one-line errors with exit status 2, and the policy it uses."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

from driftrec.agents.policies import RandomPolicy
from driftrec.agents.registry import make_policy
from driftrec.agents.supervised.data import log_sim_config
from driftrec.envs.config import ConfigError, SimConfig, parse_sets
from driftrec.envs.events import load_events, load_users
from driftrec.envs.presets import PRESETS, preset_config
from driftrec.envs.shopsim import ShopSimEnv
from driftrec.envs.user_model import user_model_for
from driftrec.experiments.cli import COMMANDS, build_parser, main

SMALL = ["simulate", "--preset", "default", "--users", "20", "--days", "3", "--seed", "5"]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert err.startswith("driftrec: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


# ------------------------------------------------------------------------------------- presets
def test_presets_lists_all_nine(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "presets")
    assert code == 0
    assert list(PRESETS) == ["bandit", "stationary", "gradual", "migration", "seasonal", "bubble", "clickbait",
                             "default", "recsim-ie"]  # the ladder's order: control, no drift, each drift, the mix
    for name, preset in PRESETS.items():
        assert name in out
        assert preset.summary.split()[0] in out
    assert "realistic mix" in out and "Every drift process is off" not in out


def test_presets_long_and_keys(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run_cli(capsys, "presets", "--long")
    assert "Every drift process is off" in out  # the stationary paragraph
    code, out, _ = run_cli(capsys, "presets", "--keys")
    assert code == 0
    for field in dataclasses.fields(SimConfig):
        assert field.name in out, field.name


# ------------------------------------------------------------------------------------- simulate
def test_simulate_writes_a_valid_log_and_a_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    code, out, err = run_cli(capsys, *SMALL, "--batch", "7", "--out", str(path))  # 3 batches
    assert code == 0, err
    frame = load_events(path)
    assert sorted(frame.user_id.unique()) == list(range(5, 25))  # user_id is the user's seed
    assert frame.user_id.is_monotonic_increasing  # sorted across batches too
    assert (frame.timestamp < np.datetime64("2026-01-04")).all()  # 3 days from the epoch
    assert set(frame.behaviour) >= {"impression", "click", "search"}
    lines = out.strip().splitlines()
    assert len(lines) == 1
    summary = lines[0]
    assert "20 users" in summary and f"{len(frame)} events" in summary and str(path) in summary
    reward = float(summary.split("reward per user ")[1].split(",")[0])
    assert reward == pytest.approx(frame.reward.sum() / 20, abs=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.parquet", "events.users.parquet"]
    users = load_users(path)  # the shop's records of the users: one row each, their demographics
    assert sorted(users.user_id) == list(range(5, 25)) and (users[["age", "gender", "income"]] >= 0).all().all()
    # the log tells what simulated it (supervised training then needs no --set keys)
    assert log_sim_config(path) == preset_config("default", {"horizon_days": 3}).to_dict()


def test_simulate_user_id_is_the_seed_that_replays_the_user(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    assert run_cli(capsys, *SMALL, "--users", "3", "--out", str(path))[0] == 0
    frame = load_events(path)
    for user_id, user in frame.groupby("user_id"):
        env = ShopSimEnv(preset="default", horizon_days=3.0)
        env.reset(seed=int(user_id))
        rewards, ends = [], []
        for item in user.item_id[user.behaviour == "impression"]:  # slate of one: one impression per step
            _, reward, terminated, truncated, _ = env.step(int(item))
            rewards.append(reward)
            ends.append(terminated or truncated)
        assert ends.index(True) == len(ends) - 1  # the log ends exactly when the user's life does
        assert sum(rewards) == pytest.approx(user.reward.sum(), abs=1e-9), user_id


def test_simulate_set_overrides_reach_the_simulator(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "slates.parquet"
    code, _, err = run_cli(capsys, *SMALL, "--set", "slate_size=3", "--set", "search_prob=0.5",
                           "--set", "search_prob=0", "--out", str(path))  # the last --set of a key wins
    assert code == 0, err
    frame = load_events(path)
    assert set(frame.position[frame.behaviour == "impression"]) == {0, 1, 2}
    assert not (frame.behaviour == "search").any()


def test_parse_overrides_uses_yaml_values() -> None:
    assert parse_sets(["a=1", "b=0.5", "c=true", "d=shop", "e=1.0e-3", "f = 2"]) == {
        "a": 1, "b": 0.5, "c": True, "d": "shop", "e": 0.001, "f": 2}
    # YAML 1.1 reads 1e-3 as a string; SimConfig coerces numeric strings, so it still works
    assert SimConfig.from_dict(parse_sets(["drift_gradual=1e-3"])).drift_gradual == 0.001


@pytest.mark.parametrize(("args", "needles"), [
    (["--set", "drift_gradul=0.2"], ["'drift_gradul'", "did you mean 'drift_gradual'"]),
    (["--set", "slate_size=0"], ["'slate_size'", "[1, 20]"]),
    (["--set", "drift_gradual"], ["bad --set 'drift_gradual'", "KEY=VALUE"]),
    (["--set", "model=[unclosed"], ["bad --set 'model=[unclosed'", "YAML"]),
    (["--preset", "nope"], ["unknown preset 'nope'", "stationary"]),
    (["--policy", "oracle-magic"], ["unknown policy 'oracle-magic'", "random"]),
    (["--days", "0"], ["'horizon_days'"]),
])
def test_simulate_user_mistakes_exit_2_with_one_line_and_no_file(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], needles: list[str]) -> None:
    path = tmp_path / "out.parquet"
    code, out, err = run_cli(capsys, *SMALL, *args, "--out", str(path))
    assert_one_line_error(code, err, *needles)
    assert out == ""
    assert list(tmp_path.iterdir()) == []


def test_simulate_unwritable_output_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, *SMALL, "--out", str(tmp_path / "missing" / "x.parquet"))
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run_cli(capsys, *SMALL, "--out", str(tmp_path))
    assert_one_line_error(code, err, "is a folder")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, _, err = run_cli(capsys, *SMALL, "--out", str(locked / "x.parquet"))
        assert_one_line_error(code, err, "not writable")
        assert list(locked.iterdir()) == []


@pytest.mark.parametrize("command", [[], ["presets"], ["simulate"]])
def test_help_works_for_every_subcommand(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: driftrec" in capsys.readouterr().out


def test_missing_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "usage: driftrec" in capsys.readouterr().err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_command_table_says_what_each_command_registers(command: str) -> None:
    """The stub of a command (name, place and one-line help in `driftrec --help`) is what its module registers."""
    assert build_parser(command).format_help() == build_parser().format_help()


HEAVY = ("numba", "torch", "stable_baselines3", "optuna")


@pytest.mark.parametrize(("argv", "commands"), [(["--help"], set()), (["presets", "--help"], {"presets"}),
                                                (["bench", "--help"], {"bench", "bench_core", "bench_learners"})])
def test_help_imports_only_the_chosen_command(argv: list[str], commands: set[str]) -> None:
    """`driftrec --help` loads no command module and none of the heavy libraries; `driftrec CMD --help`
    loads CMD's module (and what it imports) only."""
    code = ("import sys\nfrom driftrec.experiments.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
            "    pass\nprint(*sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True).stderr
    loaded = set(out.split())
    experiments = {m.split(".")[2] for m in loaded if m.startswith("driftrec.experiments.")}
    assert experiments == {"cli", "cliutil"} | commands
    assert not loaded & set(HEAVY)  # the presets and configs load without the simulator's numba kernels
    assert not any(m.startswith("driftrec.agents") for m in loaded)
    if "presets" not in commands:  # bench imports the simulator only in its measuring children
        light = {"driftrec.envs.config", "driftrec.envs.presets"}
        assert {m for m in loaded if m.startswith("driftrec.envs.")} <= light


def _console_script() -> str:
    script = shutil.which("driftrec") or str(Path(sys.executable).with_name("driftrec"))
    if not Path(script).exists():
        pytest.skip("the driftrec console script is not installed")
    return script


@pytest.mark.slow
def test_console_script_simulates_and_fails_cleanly(tmp_path: Path) -> None:
    script = _console_script()
    path = tmp_path / "events.parquet"
    done = subprocess.run([script, *SMALL, "--out", str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("simulated 20 users") and len(load_events(path)) > 0
    bad = tmp_path / "bad.parquet"
    done = subprocess.run([script, *SMALL, "--set", "no_such_key=1", "--out", str(bad)],
                          capture_output=True, text=True, timeout=300)
    assert_one_line_error(done.returncode, done.stderr, "'no_such_key'")
    assert not bad.exists()


# ------------------------------------------------------------------------------------- the policy
def test_random_policy_is_uniform_with_matching_propensities() -> None:
    policy = RandomPolicy(spaces.MultiDiscrete([5, 5, 5]), n_users=4000, seed=0)
    actions, prop = policy.act(np.zeros((4000, 2), dtype=np.float32))
    assert actions.shape == prop.shape == (4000, 3)
    np.testing.assert_array_equal(prop, 0.2)
    freq = np.bincount(actions.ravel(), minlength=5) / actions.size
    np.testing.assert_allclose(freq, 0.2, atol=0.015)  # 12000 draws: sd of a frequency is 0.0037
    again, _ = RandomPolicy(spaces.MultiDiscrete([5, 5, 5]), 4000, seed=0).act(np.zeros((4000, 2)))
    np.testing.assert_array_equal(actions, again)
    single, p1 = RandomPolicy(spaces.Discrete(7), 3, seed=1).act({"features": np.zeros((3, 2))})
    assert single.shape == p1.shape == (3,) and single.max() < 7
    np.testing.assert_allclose(p1, 1 / 7)


def test_random_policy_respects_a_mask() -> None:
    policy = RandomPolicy(spaces.MultiDiscrete([4, 4]), n_users=2000, seed=2)
    mask = np.zeros((2000, 8), dtype=bool)
    mask[:, [1, 3]] = True  # position 0: items 1 or 3
    mask[:, 4:] = True  # position 1: anything
    actions, prop = policy.act(np.zeros((2000, 1)), mask)
    assert set(actions[:, 0]) == {1, 3}
    assert set(actions[:, 1]) == {0, 1, 2, 3}
    np.testing.assert_allclose(prop[:, 0], 0.5)
    np.testing.assert_allclose(prop[:, 1], 0.25)
    assert abs((actions[:, 0] == 1).mean() - 0.5) < 0.05


def test_make_policy_names_unknown_policies() -> None:
    user_model = user_model_for("stationary")
    assert isinstance(make_policy("random", user_model, 3, seed=0), RandomPolicy)
    with pytest.raises(ConfigError, match=r"unknown policy 'nope'; choose one of: random"):
        make_policy("nope", user_model, 3, seed=0)


def test_simulate_refuses_a_key_the_model_ignores(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    code, out, err = run_cli(capsys, "simulate", "--preset", "recsim-ie", "--users", "3", "--set", "drift_bubble=0.5",
                             "--out", str(path))
    assert_one_line_error(code, err, "'drift_bubble'", "not read by model 'recsim-ie'")
    assert out == "" and not path.exists()
