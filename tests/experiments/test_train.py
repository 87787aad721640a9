"""``driftrec train`` and ``driftrec evaluate``: the round trip, the run folder, user mistakes."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from driftrec.agents.rl import ALGORITHMS, load_agent
from driftrec.envs.config import ConfigError
from driftrec.envs.presets import preset_config
from driftrec.experiments.cli import main
from driftrec.experiments.train import RL_ALGOS, RLTrainConfig, run_train, train_policy

TINY = ["--preset", "stationary", "--set", "n_items=20", "--set", "n_categories=4", "--set", "horizon_days=0.25"]
FAST = ["--set", "n_steps=32", "--set", "batch_size=128", "--users", "16", "--eval-users", "8"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("driftrec: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PPO run on a tiny catalog: 2048 timesteps, validated at 1024 and at the end."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("runs") / "ppo-tiny"
    assert main(["train", "ppo", *TINY, *FAST, "--timesteps", "2048", "--eval-freq", "1024", "--seed", "1",
                 "--out", str(out)]) == 0
    return out


def test_rl_algorithm_names_match_the_builder() -> None:
    assert RL_ALGOS == tuple(ALGORITHMS)


def test_train_writes_the_run_folder(trained_run: Path) -> None:
    for name in ("model.zip", "spec.yaml", "evaluations.npz", "best_model.zip"):
        assert (trained_run / name).is_file(), name
    assert list((trained_run / "tb").rglob("events.out.tfevents.*")), "no TensorBoard events"
    assert list((trained_run / "checkpoints").glob("model_*_steps.zip"))
    spec = yaml.safe_load((trained_run / "spec.yaml").read_text())
    assert spec["algo"] == "ppo" and spec["preset"] == "stationary" and spec["seed"] == 1
    assert spec["overrides"] == {"n_items": 20, "n_categories": 4, "horizon_days": 0.25}
    assert spec["config"]["n_items"] == 20 and spec["config"]["drift_gradual"] == 0.0
    assert spec["env"]["action_space"] == "Discrete(20)" and spec["env"]["observation_space"].startswith("Box(64,)")
    assert spec["hyperparams"]["n_steps"] == 32 and spec["hyperparams"]["n_envs"] == 16
    assert spec["hyperparams"]["n_timesteps"] == 2048 and spec["timesteps"] >= 2048
    assert spec["wall_time_s"] > 0 and spec["versions"]["stable_baselines3"]
    assert spec["torch_threads"] == 1  # the CLI's default
    with np.load(trained_run / "evaluations.npz") as data:
        # every 1024 timesteps and once more at the end: the last validation is the saved model
        assert data["timesteps"].tolist() == [1024, 2048]
        assert data["results"].shape == (2, 8)
    assert spec["last_validation"]["timesteps"] == 2048
    agent, _ = load_agent(trained_run)
    assert agent.num_timesteps == spec["timesteps"]


def test_evaluate_prints_reward_with_ci_and_writes_json(trained_run: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out_json = tmp_path / "eval.json"
    code, out, err = run_cli(capsys, "evaluate", str(trained_run), "--users", "40", "--json", str(out_json))
    assert code == 0, err
    assert "reward per user" in out and "95% CI" in out and "ctr" in out
    payload = json.loads(out_json.read_text())
    s = payload["summary"]
    assert payload["algo"] == "ppo" and s["users"] == 40
    assert s["reward_ci_low"] <= s["reward"] <= s["reward_ci_high"]
    # another drift preset with the same spaces is fine: the training run's overrides carry over
    code, out, err = run_cli(capsys, "evaluate", str(trained_run), "--preset", "gradual", "--users", "10")
    assert code == 0, err


def test_evaluate_refuses_a_different_environment(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "evaluate", str(trained_run), "--set", "n_items=30", "--users", "5")
    assert_one_line_error(code, err, "trained on a different environment", "Discrete(20) vs Discrete(30)",
                          "n_items 20 vs 30")


def test_maskable_ppo_trains_and_validates_with_masks(tmp_path: Path) -> None:
    result = run_train(RLTrainConfig("maskable-ppo", str(tmp_path / "mppo"), preset="stationary",
                                   overrides={"n_items": 20, "n_categories": 4, "horizon_days": 0.25},
                                   hyperparams={"n_steps": 16, "batch_size": 64}, timesteps=256, users=8, eval_users=4,
                                   eval_freq=256))
    assert result.evaluations["timesteps"].tolist() == [256]
    assert type(load_agent(result.out)[0]).__name__ == "MaskablePPO"


def test_torch_threads_flag_sets_and_records_the_thread_count(tmp_path: Path) -> None:
    try:
        assert main(["train", "a2c", *TINY, "--set", "n_steps=4", "--users", "8", "--timesteps", "64",
                     "--eval-freq", "0", "--torch-threads", "2", "--out", str(tmp_path / "a2c")]) == 0
        assert torch.get_num_threads() == 2
        assert yaml.safe_load((tmp_path / "a2c" / "spec.yaml").read_text())["torch_threads"] == 2
    finally:
        torch.set_num_threads(1)


def test_train_without_evaluation_writes_no_evaluations(tmp_path: Path) -> None:
    result = run_train(RLTrainConfig("a2c", tmp_path / "a2c", preset="stationary",
                                   overrides={"n_items": 20, "n_categories": 4, "horizon_days": 0.25},
                                   hyperparams={"n_steps": 4}, timesteps=256, users=8, eval_freq=0, checkpoint_freq=0))
    assert result.evaluations == {} and not (result.out / "evaluations.npz").exists()
    assert (result.out / "model.zip").is_file() and result.spec["users"]["validation"] == 0
    assert not (result.out / "checkpoints").exists()


def test_train_policy_trains_an_agent_in_the_given_config(tmp_path: Path) -> None:
    """The resolved config is the simulator; spec.yaml records the keys where it differs from the preset
    (world_seed 0 is the preset's), and the deployed file is the best validation's."""
    sim = preset_config("stationary", {"n_items": 20, "n_categories": 4, "horizon_days": 0.25, "world_seed": 0})
    trained = train_policy("a2c", sim, tmp_path / "a2c", preset="stationary", seed=1, settings=dict(
        hyperparams={"n_steps": 4}, timesteps=256, users=8, eval_freq=128, eval_users=4, checkpoint_freq=0))
    assert trained.record["overrides"] == {"n_items": 20, "n_categories": 4, "horizon_days": 0.25}
    assert trained.record["config"] == yaml.safe_load(yaml.safe_dump(sim.to_dict()))
    assert trained.timesteps == trained.record["timesteps"] >= 256 and trained.wall_s > 0
    assert trained.model_path == trained.out / "best_model.zip" and trained.model_path.is_file()
    steps, reward = trained.best_validation
    curve = trained.evaluations
    assert reward == pytest.approx(curve["results"].mean(axis=1).max()) and steps in curve["timesteps"].tolist()


@pytest.mark.parametrize("kind, kwargs, needle", [
    ("svm", {}, "unknown policy to train 'svm'"),
    ("ppo", {"sim": None}, "ppo trains in a simulator"),
    ("ppo", {"finetune_days": 3.0}, "finetune_days is for supervised models"),
    ("mlp", {}, "mlp trains on an event log"),
    ("mlp", {"logs": "x.parquet", "settings": {"n_items": 20}}, r"simulator keys \(n_items\) are set in the given"),
])
def test_train_policy_mistakes_are_config_errors(kind: str, kwargs: dict, needle: str, tmp_path: Path) -> None:
    sim = kwargs.pop("sim", preset_config("stationary"))
    with pytest.raises(ConfigError, match=needle):
        train_policy(kind, sim, tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()


def test_train_on_a_preset_file_uses_its_knobs_and_its_base_presets_hyperparameters(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preset = tmp_path / "shop.yaml"
    preset.write_text(yaml.safe_dump({"name": "shop", "version": 3, "base": "stationary",
                                      "overrides": {"n_items": 20, "n_categories": 4, "horizon_days": 0.25}}))
    hyperparams = tmp_path / "a2c.yml"  # per preset: the file preset must get its base's entry
    hyperparams.write_text(yaml.safe_dump({"defaults": {"n_steps": 8, "n_envs": 8},
                                           "stationary": {"n_steps": 4}}))
    result = run_train(RLTrainConfig("a2c", tmp_path / "a2c", preset=str(preset), timesteps=256,
                                   hyperparams_file=str(hyperparams), eval_freq=0, checkpoint_freq=0))
    assert result.spec["preset"] == str(preset) and result.spec["preset_version"] == 3
    assert result.spec["hyperparams"]["n_steps"] == 4
    assert result.spec["config"]["n_items"] == 20
    assert load_agent(result.out)[0].action_space.n == 20
    code, _, err = run_cli(capsys, "tune", "ppo", "--preset", str(preset), "--study", "s", "--trials", "1",
                           "--out", str(tmp_path / "tune"))
    assert_one_line_error(code, err, "tune takes a built-in preset")
    assert not (tmp_path / "tune" / "s").exists()


@pytest.mark.parametrize("argv, needles", [
    (["train", "ppo", "--preset", "nope"], ["unknown preset 'nope'"]),
    (["train", "ppo", "--set", "n_item=3"], ["--set n_item", "did you mean 'n_items'"]),
    (["train", "ppo", "--set", "gama=0.9"], ["--set gama", "did you mean 'gamma'"]),
    (["train", "ppo", "--set", "gamma=high"], ["'gamma'", "must be a number"]),
    (["train", "dqn", "--preset", "recsim-ie"], ["dqn needs a single-item action", "use ppo"]),
    (["train", "ppo", "--logs", "x.parquet"], ["--logs is the training data of supervised models",
                                                "give --warm-start MODEL"]),
    (["train", "ppo", "--finetune-days", "3"], ["--finetune-days is for supervised models"]),
    (["train", "ppo", "--warm-start", "no/such/mlp"], ["warm start: no supervised model at 'no/such/mlp"]),
    (["train", "mlp", "--logs", "x.parquet", "--warm-start", "m"], ["--warm-start are for RL agents"]),
    (["train", "mlp"], ["train mlp needs --logs FILE"]),
    (["train", "gru", "--logs", "x.parquet", "--timesteps", "5"], ["--timesteps are for RL agents"]),
    (["evaluate", "no/such/run"], ["run folder 'no/such/run' does not exist"]),
])
def test_user_mistakes_exit_2_with_one_line(argv: list[str], needles: list[str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "run"), "--timesteps", "64"] if "--timesteps" not in argv else \
            [*argv, "--out", str(tmp_path / "run")]
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "run" / "model.zip").exists()


def test_train_refuses_to_overwrite_a_finished_run(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", "ppo", *TINY, "--timesteps", "64", "--out", str(trained_run))
    assert_one_line_error(code, err, "already holds a trained model", "--overwrite")


def test_evaluate_a_folder_without_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path))
    assert_one_line_error(code, err, "holds no trained model: spec.yaml is missing")


def test_bad_numbers_are_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "ppo", "--timesteps", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


def test_supervised_kinds_dispatch_to_train_supervised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    calls = []

    def fake(kind: str, logs: Path, out: Path, *, finetune_days: float | None, seed: int, **overrides: object) -> dict:
        calls.append((kind, logs, out, finetune_days, seed, overrides))
        return {"auc": 0.75, "log_loss": 0.5}

    monkeypatch.setitem(sys.modules, "driftrec.agents.supervised", types.SimpleNamespace(train_supervised=fake))
    logs = tmp_path / "logs.parquet"
    code, out, err = run_cli(capsys, "train", "gru", "--logs", str(logs), "--out", str(tmp_path / "gru"),
                             "--finetune-days", "3", "--seed", "4", "--set", "epochs=2")
    assert code == 0, err
    assert calls == [("gru", logs, tmp_path / "gru", 3.0, 4, {"epochs": 2})]
    assert "auc" in out and "0.75" in out


def test_missing_supervised_module_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "driftrec.agents.supervised", None)  # import raises ImportError
    code, _, err = run_cli(capsys, "train", "transformer", "--logs", str(tmp_path / "l.parquet"),
                           "--out", str(tmp_path / "t"))
    assert_one_line_error(code, err, "supervised models are not available")


# ------------------------------------------------------------------------------------- warm start
def test_train_warm_starts_from_a_supervised_model(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   logged_mlp: Callable[..., Path]) -> None:
    """``--warm-start MLP --logs LOG``: the distillation runs before RL, is recorded in spec.yaml,
    and the distilled agent is validated at step 0 (a candidate for the best checkpoint)."""
    log = logged_mlp(tmp_path, "stationary", {"n_items": 20, "n_categories": 4, "horizon_days": 0.25}, 200, 1)
    out = tmp_path / "warm"
    code, stdout, err = run_cli(capsys, "train", "ppo", *TINY, *FAST, "--timesteps", "1024", "--eval-freq", "512",
                                "--warm-start", str(tmp_path / "mlp"), "--logs", str(log), "--warm-start-steps", "30",
                                "--out", str(out))
    assert code == 0, err
    assert "warm-started from the mlp" in stdout
    spec = yaml.safe_load((out / "spec.yaml").read_text())
    warm = spec["warm_start"]
    assert warm["source"] == "logs" and warm["steps"] == 30 and warm["observations"] > 0 and warm["env_steps"] == 0
    assert 0.0 <= warm["agreement"] <= 1.0
    with np.load(out / "evaluations.npz") as data:
        assert data["timesteps"][0] == 0 and data["timesteps"][-1] >= 1024
    cold = tmp_path / "cold"
    assert main(["train", "ppo", *TINY, *FAST, "--timesteps", "1024", "--eval-freq", "512", "--out", str(cold)]) == 0
    assert "warm_start" not in yaml.safe_load((cold / "spec.yaml").read_text())
    with np.load(cold / "evaluations.npz") as data:
        assert data["timesteps"][0] > 0  # a cold agent is not validated before it has learned anything
