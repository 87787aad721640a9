"""driftrec compare: config resolution and its errors, the smoke profile end to end, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from driftrec.agents.registry import make_policy
from driftrec.envs.config import ConfigError
from driftrec.envs.rollout import eval_seeds, rollout
from driftrec.envs.user_model import user_model_for
from driftrec.experiments import compare
from driftrec.experiments.cli import main
from driftrec.experiments.compare import CompareConfig, load_config
from driftrec.experiments.compare_config import PROFILES

# A few cheap policies on a small, short world: enough for the resume and error paths.
FAST = ["--set", "sim={horizon_days: 3.0, n_items: 30, n_categories: 3}", "--set", "log_users=60",
        "--set", "eval_users=40", "--set", "trace_users=0", "--quiet"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("profile", PROFILES)
def test_every_packaged_profile_resolves(profile: str) -> None:
    cfg = load_config(profile=profile)
    assert cfg.presets and cfg.policies and cfg.eval_users >= 2
    if profile == "full":
        assert cfg.seeds >= 5 and len(cfg.presets) > 1
    if profile == "quick":
        assert cfg.presets == ("default",)


def test_overrides_reach_nested_fields_and_merge() -> None:
    cfg = load_config(profile="smoke", overrides={"sim.horizon_days": 2.5, "supervised.lr": 0.01, "seeds": 2,
                                                  "presets": "stationary,default"})
    assert cfg.sim["horizon_days"] == 2.5 and cfg.sim["n_items"] == 50  # the profile's other sim keys stay
    assert cfg.supervised["lr"] == 0.01 and cfg.supervised["epochs"] == 2
    assert cfg.seed_list == [0, 1] and cfg.presets == ("stationary", "default")


@pytest.mark.parametrize(("overrides", "needle"), [
    ({"eval_user": 3}, "unknown compare config key 'eval_user'; did you mean 'eval_users'?"),
    ({"eval_users": "many"}, "config key 'eval_users' must be an integer"),
    ({"presets": "default,nope"}, "unknown preset 'nope'"),
    ({"policies": "ppo,bandit"}, "unknown policy 'bandit'"),
    ({"policies": "ppo,ppo"}, "each once"),
    ({"sim.drift_gradul": 0.1}, "sim: unknown config key 'drift_gradul'"),
    ({"supervised.epochs": 0}, "supervised: config key 'epochs' must be in"),
    ({"hyperparams.sac.learning_rate": 0.1}, "hyperparams: unknown algorithm 'sac'"),
    ({"hyperparams.ppo": "/no/such.yml"}, "file '/no/such.yml' does not exist"),
    ({"eval_users.x": 1}, "only sim, supervised, hyperparams take dotted keys"),
    ({"presets": "recsim-ie"}, "the supervised models need ShopSim"),
])
def test_config_mistakes_are_one_line_errors(overrides: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_config(profile="smoke", overrides=overrides)
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_config_file_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults:\n  seeds: 1\n profiles: [\n")
    code, _, err = run(capsys, "--config", str(bad))
    assert code == 2 and "not valid YAML (line" in err and err.count("\n") == 1
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"defaults": {"seeds": 1}, "profiles": {"mine": {}}}))
    code, _, err = run(capsys, "--config", str(other))
    assert code == 2 and "has no profile 'quick'; it has: mine" in err
    code, _, err = run(capsys, "--config", str(tmp_path / "missing.yaml"))
    assert code == 2 and "does not exist" in err
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump({"defaults": {}, "profiles": {"quick": {}}, "profile": {}}))
    code, _, err = run(capsys, "--config", str(extra))
    assert code == 2 and "unknown top-level key 'profile'" in err


def test_show_config_prints_the_resolved_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--profile", "smoke", "--seeds", "3", "--show-config")
    shown = yaml.safe_load(out)
    assert code == 0 and shown["profile"] == "smoke" and shown["config"]["seeds"] == 3
    assert CompareConfig.from_dict(shown["config"]) == load_config(profile="smoke", overrides={"seeds": 3})


def test_the_observation_mode_does_not_change_the_users() -> None:
    """Sequence models act on the history observation, the others on features: the pairing of
    per-user differences needs the same users with the same luck in both modes."""
    rewards = []
    for mode in ("features", "history"):
        user_model = user_model_for("default", {"horizon_days": 4.0, "obs_mode": mode})
        policy = make_policy("random", user_model, 50, 7)
        rewards.append(rollout(user_model, policy, eval_seeds(0, 50)).reward)
    np.testing.assert_array_equal(rewards[0], rewards[1])


# ------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_smoke_profile_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CI run of the harness: every artifact, every policy, consistent numbers."""
    out = tmp_path / "smoke"
    code, stdout, _ = run(capsys, "--profile", "smoke", "--out", str(out), "--quiet")
    assert code == 0
    cfg = load_config(profile="smoke")
    for name in ("config.yaml", "results.csv", "users.parquet", "daily.parquet", "curves.csv", "summary.md",
                 "figures/reward_bars.png", "figures/reward_by_day.png", "figures/learning_curves.png",
                 "figures/interest_trajectories.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["policy"]) == sorted(cfg.policies)
    by = results.set_index("policy")
    assert by.loc["oracle-greedy", "reward"] > by.loc["random", "reward"]
    assert (results["reward_ci_low"] <= results["reward"]).all()
    assert (results["reward"] <= results["reward_ci_high"]).all()
    best = by.loc[["oracle-greedy", "oracle-planner"], "reward"].max()  # regret against the best reference
    assert by.loc[["oracle-greedy", "oracle-planner"], "regret"].min() == 0
    np.testing.assert_allclose(by["regret"], best - by["reward"])
    np.testing.assert_allclose(by["share"], by["reward"] / best)
    for algo in ("ppo", "dqn", "ppo-warm", "dqn-warm"):  # the deployed agent is the best validation's
        train = json.loads((out / "cells" / "default" / "seed0" / algo / "result.json").read_text())["train"]
        curve = np.load(out / "cells" / "default" / "seed0" / algo / "model" / "evaluations.npz")
        assert train["deployed_steps"] == curve["timesteps"][np.argmax(curve["results"].mean(axis=1))]
        warm = algo.endswith("-warm")  # distilled from the world's mlp, validated before RL, the logs counted
        assert ("warm_start" in train) == warm and (curve["timesteps"][0] == 0) == warm
        if warm:
            assert train["warm_start"]["teacher"] == "mlp" and train["warm_start"]["source"] == "logs"
            assert by.loc[algo, "env_steps"] == by.loc[algo.removesuffix("-warm"), "env_steps"] \
                + by.loc["mlp", "env_steps"]
    summary = (out / "summary.md").read_text()
    assert "## Where the gap comes from" in summary and "rest on 1 seed" in summary
    assert (by.loc[["ppo", "dqn"], "env_steps"] >= cfg.rl_timesteps).all()
    assert (by.loc[["mlp", "gru", "popularity"], "env_steps"] > 0).all()
    assert by.loc["random", "env_steps"] == 0
    users = pd.read_parquet(out / "users.parquet")
    ids = users.groupby("policy")["user_id"].apply(lambda s: tuple(sorted(s)))
    assert ids.nunique() == 1 and len(ids.iloc[0]) == cfg.eval_users  # every policy met the same users
    np.testing.assert_allclose(users.groupby("policy")["reward"].mean().sort_index(),
                               by["reward"].sort_index(), rtol=1e-12)
    daily = pd.read_parquet(out / "daily.parquet")
    days = int(np.ceil(cfg.sim["horizon_days"]))
    assert set(daily["day"]) == set(range(days))
    np.testing.assert_allclose(daily.groupby("policy")["reward"].sum().sort_index(), by["reward"].sort_index(),
                               rtol=1e-9)  # the days add up to the life
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["policy"]) == {"ppo", "dqn", "ppo-warm", "dqn-warm"}
    assert curves["timesteps"].max() >= cfg.rl_timesteps
    assert "start from random weights (cold)" in (out / "summary.md").read_text()
    summary = (out / "summary.md").read_text()
    assert all(policy in summary for policy in cfg.policies) and summary in stdout
    assert (out / "cells/default/seed0/ppo/model/tb").is_dir()
    retrain = json.loads((out / "cells/default/seed0/mlp-retrain/result.json").read_text())
    assert retrain["train"]["wall_s"] > 0  # deployed from the trained mlp


def test_resume_skips_finished_cells_and_recovers_from_an_interruption(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    args = ["--out", str(out), "--set", "policies=random,oracle-greedy,popularity,mlp", *FAST]
    real_fit = compare.WorldRun._fit

    def crash(self: compare.WorldRun, kind: str, folder: Path, finetune: bool) -> dict:
        folder.mkdir(parents=True)
        (folder / "half-written").write_text("x")  # training dies mid-way
        raise KeyboardInterrupt

    monkeypatch.setattr(compare.WorldRun, "_fit", crash)
    code, _, err = run(capsys, *args)
    assert code == 130 and "interrupted" in err
    cell = out / "cells/default/seed0"
    assert (cell / "random/result.json").is_file() and (cell / "popularity/result.json").is_file()
    assert not (cell / "mlp/result.json").exists()
    assert not list(out.rglob("*.partial")) and not list(out.rglob("*.tmp"))  # nothing half-written left
    assert not (out / "results.csv").exists()

    monkeypatch.setattr(compare.WorldRun, "_fit", real_fit)
    before = (cell / "random/result.json").stat().st_mtime_ns
    code, _, _ = run(capsys, *args)
    assert code == 0 and (cell / "mlp/result.json").is_file()
    assert (cell / "random/result.json").stat().st_mtime_ns == before  # not redone
    first = pd.read_csv(out / "results.csv")

    # adding a policy runs only that cell; the others' numbers stay
    code, _, _ = run(capsys, *args[:2], "--set", "policies=random,oracle-greedy,popularity,mlp,logging", *FAST)
    again = pd.read_csv(out / "results.csv")
    assert code == 0 and len(again) == 5
    pd.testing.assert_frame_equal(again[again["policy"] != "logging"].reset_index(drop=True), first)


def test_a_folder_with_other_settings_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    code, _, _ = run(capsys, "--out", str(out), "--set", "policies=random", *FAST)
    assert code == 0
    code, _, err = run(capsys, "--out", str(out), "--set", "policies=random", *FAST, "--set", "eval_users=41")
    assert code == 2 and "other settings (eval_users: 40, now 41)" in err
    code, _, _ = run(capsys, "--out", str(out), "--set", "policies=random", *FAST, "--set", "eval_users=41",
                     "--overwrite")
    assert code == 0 and len(pd.read_csv(out / "results.csv")) == 1
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "--out", str(stray), "--set", "policies=random", *FAST)
    assert code == 2 and "holds no compare run" in err


def test_equal_requests_logs_as_many_requests_as_a_cold_rl_agent_trains_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The log's first log_users users are those of equal_requests=false; more follow until the log
    holds rl_timesteps requests, and the supervised side's env_steps say so."""
    logs = {}
    for equal in (True, False):
        out = tmp_path / str(equal)
        code, _, err = run(capsys, "--out", str(out), "--set", "policies=random,popularity",
                           "--set", "rl_timesteps=3000", "--set", f"equal_requests={str(equal).lower()}", *FAST)
        assert code == 0, err
        info = json.loads((out / "cells/default/seed0/logs.json").read_text())
        logs[equal] = pd.read_parquet(out / "cells/default/seed0/logs.parquet")
        steps = pd.read_csv(out / "results.csv").set_index("policy").loc["popularity", "env_steps"]
        assert steps == info["requests"] and logs[equal]["user_id"].nunique() <= info["users"]
        if equal:
            assert info["requests"] >= 3000 and info["users"] > 60
        else:
            assert info["requests"] < 3000 and info["users"] == 60
    first = logs[True][logs[True]["user_id"].isin(logs[False]["user_id"].unique())].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, logs[False])


def test_same_seed_same_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = []
    for name in ("a", "b"):
        code, _, _ = run(capsys, "--out", str(tmp_path / name), "--set", "policies=random,popularity,logging", *FAST)
        assert code == 0
        tables.append(pd.read_csv(tmp_path / name / "results.csv").drop(columns=["eval_wall_s", "train_wall_s"]))
    pd.testing.assert_frame_equal(tables[0], tables[1])


@pytest.mark.slow
def test_worlds_in_parallel_processes_give_the_serial_numbers(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``--jobs 2`` runs the worlds in two worker processes: every number but the wall times is the
    serial run's (torch-trained cells included); the folder resumes with another ``jobs``, and
    from before a config field existed (the field then reads as its default)."""
    grid = ["--seeds", "2", "--presets", "stationary,default", "--set", "policies=random,popularity,mlp,ppo",
            "--set", "rl_timesteps=512", "--set", "rl_users=16", "--set", "rl_eval_users=8", *FAST]
    tables = []
    for name, jobs in (("serial", "1"), ("parallel", "2")):
        code, _, err = run(capsys, "--out", str(tmp_path / name), "--jobs", jobs, *grid)
        assert code == 0, err
        tables.append(pd.read_csv(tmp_path / name / "results.csv").drop(columns=["eval_wall_s", "train_wall_s"]))
    assert len(tables[0]) == 16
    pd.testing.assert_frame_equal(tables[0], tables[1])
    config = yaml.safe_load((tmp_path / "parallel" / "config.yaml").read_text())["config"]
    assert config["jobs"] == 2
    code, _, err = run(capsys, "--out", str(tmp_path / "parallel"), "--jobs", "1", *grid)  # jobs may change on resume
    assert code == 0, err
    path = tmp_path / "serial" / "config.yaml"
    old = yaml.safe_load(path.read_text())
    del old["config"]["warm_start_steps"]  # a folder written before the field existed
    path.write_text(yaml.safe_dump(old))
    code, _, err = run(capsys, "--out", str(tmp_path / "serial"), *grid)
    assert code == 0, err
    code, _, err = run(capsys, "--out", str(tmp_path / "serial"), "--set", "warm_start_steps=7", *grid)
    assert code == 2 and "warm_start_steps: 500, now 7" in err
