"""``driftrec tune``: search spaces, studies end to end through the CLI, resuming, the exported
``best.yml``, user mistakes, dead workers' trials, and workers sharing a study in PostgreSQL.

Studies are tiny: a 20-item stationary shop with quarter-day lives, search spaces of three
parameters over cheap networks, a few trials. Workers in other processes are real
``driftrec tune`` processes; the PostgreSQL server is a real one on loopback (tests/experiments/postgres.py).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from driftrec.agents.rl import build_agent, check_hyperparams, load_hyperparams
from driftrec.agents.supervised import SupervisedConfig, train_supervised
from driftrec.envs.config import ConfigError
from driftrec.envs.vector import ShopSimVecEnv
from driftrec.experiments.cli import main
from driftrec.experiments.tune.settings import TuneConfig, study_setup
from driftrec.experiments.tune.space import RL, TUNABLE, Param, lay_over, load_search_space, search_space_file
from driftrec.experiments.tune.storage import (
    MAX_RETRY,
    STALE_BEATS,
    PostgresStore,
    counted_trials,
    label_retry,
    open_store,
    retry_callback,
    retry_history,
    storage_trial_id,
)
from driftrec.experiments.tune.worker import WAIT, open_study, optuna_quiet, run_trial, take_trial, trial_sampler

TINY = ["--preset", "stationary", "--set", "n_items=20", "--set", "n_categories=4", "--set", "horizon_days=0.25"]
RL_BUDGET = ["--timesteps", "512", "--users", "16", "--eval-users", "8"]
# Three cheap PPO parameters; the pruner may act from the second trial on (two validations per trial).
PPO_SPACE = {
    "evaluations": 2, "sampler": {"n_startup_trials": 2}, "pruner": {"n_startup_trials": 1, "n_warmup_steps": 0},
    "fixed": {"n_steps": 16, "batch_size": 64, "n_epochs": 2, "policy_kwargs": {"net_arch": [32]}},
    "params": {"learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True}, "gamma": {"choices": [0.5, 0.9]},
               "policy_kwargs.activation_fn": {"choices": ["tanh", "relu"]}},
}
MLP_SPACE = {
    "objective": {"metric": "click_auc", "direction": "maximize"}, "sampler": {"n_startup_trials": 2},
    "fixed": {"epochs": 2, "patience": 1},
    "params": {"lr": {"low": 1.0e-3, "high": 3.0e-2, "log": True}, "hidden": {"choices": [16, 32]},
               "layers": {"low": 0, "high": 2}},
}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def write_space(path: Path, space: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("driftrec: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def load_journal_study(study_dir: Path) -> optuna.Study:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(study_dir / "journal.log")))
    return optuna.load_study(study_name=study_dir.name, storage=storage)


def cli_process(*argv: str) -> subprocess.Popen[str]:
    """``driftrec ARGV`` in another process (a worker as another machine would start it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "driftrec.experiments.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


# ------------------------------------------------------------------------------------- search spaces
@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size", "ignore:The number of environments")
@pytest.mark.parametrize("algo", TUNABLE)
def test_packaged_spaces_load_and_sample_valid_settings(algo: str) -> None:
    """Every packaged space is valid, and what it samples is accepted by the trainer (RL: builds an agent)."""
    space = load_search_space(algo)
    assert space.path == search_space_file(algo) and space.path.is_file()
    assert space.direction == ("maximize" if algo in RL else "minimize")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    env = ShopSimVecEnv(4, preset="stationary", n_items=20, n_categories=4, horizon_days=0.25)
    for _ in range(3):
        trial = study.ask()
        values = space.sample(trial)
        assert set(values) == {p.name for p in space.params}
        if algo in RL:
            hp = lay_over(lay_over(load_hyperparams(algo, "stationary"), space.fixed), values)
            check_hyperparams(algo, hp)
            build_agent(algo, env, {**hp, "buffer_size": 1000} if algo == "dqn" else hp, seed=0)
        else:
            cfg = SupervisedConfig.from_dict({**space.fixed, **values})
            assert all(getattr(cfg, k) == v for k, v in values.items())
        study.tell(trial, 0.0)


def test_labelled_choices_stand_for_their_values(tmp_path: Path) -> None:
    space = load_search_space("ppo")
    net_arch = next(p for p in space.params if p.name == "policy_kwargs.net_arch")
    assert net_arch.choices == ("tiny", "small", "medium")
    assert space.values({"policy_kwargs.net_arch": "small", "gamma": 0.99}) == \
        {"policy_kwargs.net_arch": [64, 64], "gamma": 0.99}
    first = net_arch.value("tiny")
    first.append(1)  # a copy: trials never share a list
    assert net_arch.value("tiny") == [64]
    flags = Param("x", choices=(1, True), values=(1, True))  # 1 == True, but they are two choices
    assert flags.value(True) is True and flags.value(1) == 1 and not isinstance(flags.value(1), bool)
    base = {"policy_kwargs": "dict(net_arch=[128, 128], activation_fn=nn.ReLU)", "gamma": 0.9}
    assert lay_over(base, {"policy_kwargs.activation_fn": "tanh", "gamma": 0.5}) == \
        {"policy_kwargs": {"net_arch": [128, 128], "activation_fn": "tanh"}, "gamma": 0.5}


@pytest.mark.parametrize("algo, space, needles", [
    ("ppo", {"params": {"learning_rte": {"low": 1e-4, "high": 1e-2}}},
     ["'learning_rte'", "did you mean 'learning_rate'"]),
    ("ppo", {"params": {"policy_kwargs.net_arc": {"choices": [1]}}}, ["'policy_kwargs.net_arc'", "policy_kwargs key"]),
    ("ppo", {"params": {"n_timesteps": {"low": 1, "high": 9}}}, ["'n_timesteps'", "--timesteps"]),
    ("ppo", {"params": {"gamma": {"low": 0.9, "high": 0.9}}}, ["'gamma'", "below high"]),
    ("ppo", {"params": {"gamma": {"low": 0.0, "high": 0.9, "log": True}}}, ["'gamma'", "low > 0"]),
    ("ppo", {"params": {"gamma": {"choices": []}}}, ["'gamma'", "choices is empty"]),
    ("ppo", {"params": {"gamma": {"low": 0.9, "hi": 0.99}}}, ["unknown key 'hi'", "'gamma'"]),
    ("ppo", {"params": {"policy_kwargs.net_arch": {"choices": [[64]]}}}, ["mapping of label -> value"]),
    ("ppo", {"params": {"gamma": {"choices": [0.9]}}, "budget": 3}, ["unknown key 'budget'"]),
    ("ppo", {"params": {"gamma": {"choices": [0.9]}}, "fixed": {"gamma": 0.9}}, ["both fixed and searched"]),
    ("ppo", {"params": {"gamma": {"choices": [0.9]}}, "objective": {"metric": "auc"}}, ["metric 'auc'"]),
    ("ppo", {"params": {"n_steps": {"choices": ["many"]}}}, ["'n_steps'", "must be a number"]),
    ("mlp", {"params": {"preset": {"choices": ["default"]}}}, ["'preset'", "--preset"]),
    ("mlp", {"params": {"dropout": {"low": 0.0, "high": 2.0}}}, ["'dropout'", "[0, 0.9]"]),
    ("mlp", {"params": {"lr": {"choices": [0.1]}}, "pruner": {"n_warmup_steps": 1}}, ["not pruned"]),
    ("transformer", {"params": {"heads": {"choices": [1, 3]}, "embedding_dim": {"choices": [16]}}},
     ["heads 3 does not divide embedding_dim 16"]),
])
def test_space_mistakes_are_one_line_naming_the_file(tmp_path: Path, algo: str, space: dict[str, Any],
                                                     needles: list[str]) -> None:
    path = write_space(tmp_path / "space.yml", space)
    with pytest.raises(ConfigError) as err:
        load_search_space(algo, path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def test_counted_trials_let_a_requeued_trial_replace_the_failed_one() -> None:
    retry_trial = retry_callback()  # Optuna's RetryHeartbeatStaleTrialCallback, as the stores call it
    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(trial, 0.5)
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(dead, state=TrialState.FAIL)
    retry_trial(study, study.trials[dead.number])
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].params == trials[1].params and retry_history(trials[2]) == [1]
    assert [t.number for t in counted_trials(trials)] == [0, 2]
    for _ in range(MAX_RETRY):  # the copies die too: after MAX_RETRY re-queues the failure stands
        last = study.ask()
        label_retry(last)  # as the worker that takes the copy does
        study.tell(last, state=TrialState.FAIL)
        retry_trial(study, study.trials[last.number])
    counted = counted_trials(study.get_trials(deepcopy=False))
    assert [t.state for t in counted] == [TrialState.COMPLETE, TrialState.FAIL]
    assert counted[1].user_attrs["retries"] == MAX_RETRY and len(study.trials) == 2 + MAX_RETRY
    assert study.trials[2].user_attrs == {"retry_of": 1, "retries": 1}


def test_trial_samplers_are_seeded_by_trial_number() -> None:
    """Trial k's proposal depends on (--seed, k) only: reproducible, and never the same on two workers."""
    setup = study_setup(TuneConfig("mlp", "s", 3, preset="stationary", seed=5))

    def first_proposal(number: int, seed: int = 5) -> dict[str, Any]:
        study = optuna.create_study(sampler=trial_sampler(dataclasses.replace(
            setup, config=dataclasses.replace(setup.config, seed=seed)), number))
        return setup.space.sample(study.ask())

    assert first_proposal(0) == first_proposal(0)
    assert first_proposal(0) != first_proposal(1) and first_proposal(0) != first_proposal(0, seed=6)


# ------------------------------------------------------------------------------------- user mistakes
@pytest.mark.parametrize("url, needles", [
    ("not a url", ["--storage 'not a url' is not a database URL", "postgresql://USER"]),
    ("postgresql://me:secret@db:notaport/optuna", ["not a database URL", "me:***@db"]),
    ("sqlite:///study.db", ["only PostgreSQL is supported", "SQLite is not safe"]),
    ("postgres://me@db/optuna", ["write postgresql://, not postgres://"]),
    ("postgresql://me@db", ["names no database"]),
    ("postgresql:///optuna", ["names no host"]),
])
def test_malformed_storage_url_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str,
                                           needles: list[str]) -> None:
    code, _, err = run_cli(capsys, "tune", "ppo", *TINY, "--trials", "1", "--study", "s", "--out", str(tmp_path),
                           "--storage", url)
    assert_one_line_error(code, err, *needles)
    assert "secret" not in err
    assert not (tmp_path / "s").exists()


def test_unreachable_database_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "tune", "ppo", *TINY, *RL_BUDGET, "--trials", "1", "--study", "s", "--out",
                           str(tmp_path), "--storage", "postgresql://me:secret@127.0.0.1:1/optuna")
    assert_one_line_error(code, err, "cannot use --storage postgresql+psycopg://me:***@127.0.0.1:1/optuna")
    assert "secret" not in err


@pytest.mark.parametrize("argv, needles", [
    (["ppo", "--study", "../up"], ["study name '../up'"]),
    (["ppo", "--study", "s", "--set", "n_itemz=3"], ["n_itemz"]),
    (["mlp", "--study", "s", "--timesteps", "100"], ["--timesteps is for RL agents"]),
    (["mlp", "--study", "s", "--eval-users", "8"], ["--eval-users is for RL agents"]),
    (["dqn", "--study", "s", "--set", "slate_size=2"], ["dqn needs a single-item action"]),
])
def test_bad_arguments_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                    needles: list[str]) -> None:
    code, _, err = run_cli(capsys, "tune", *argv, *TINY, "--trials", "1", "--out", str(tmp_path))
    assert_one_line_error(code, err, *needles)


@pytest.mark.parametrize("values, message", [
    ({"trails": 3}, "unknown tune key 'trails'; did you mean 'trials'?"),
    ({"workers": 0}, "config key 'workers' must be >= 1, got 0"),
    ({"seed": -1}, "config key 'seed' must be >= 0, got -1"),
    ({"algo": "a2c"}, "config key 'algo' must be one of ppo, dqn, mlp, gru, transformer; got 'a2c'"),
    ({"study": "a b"}, "study name 'a b' must be letters, digits, '.', '_' or '-' (it names a folder)"),
    ({"preset": "shop.yaml"}, "tune takes a built-in preset, not 'shop.yaml'"),
    ({"algo": "gru", "timesteps": 100}, "--timesteps is for RL agents (ppo, dqn), not the supervised model gru"),
])
def test_tune_config_mistakes_are_one_line_naming_the_key(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        TuneConfig.from_dict({"algo": "ppo", "study": "s", "trials": 1, **values})
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_study_setup_holds_the_config_validated(tmp_path: Path) -> None:
    config = TuneConfig("mlp", "s", "3", preset="stationary", out=str(tmp_path))  # type: ignore[arg-type]
    setup = study_setup(config)
    assert setup.config.trials == 3 and setup.config.study_dir == tmp_path / "s"
    assert setup.config == TuneConfig.from_dict(config.to_dict())


def test_unknown_search_space_parameter_names_it_and_the_file(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    space = write_space(tmp_path / "bad.yml", {**PPO_SPACE, "params": {**PPO_SPACE["params"],
                                                                        "entropy": {"low": 0.0, "high": 0.1}}})
    code, _, err = run_cli(capsys, "tune", "ppo", *TINY, *RL_BUDGET, "--trials", "1", "--study", "s", "--out",
                           str(tmp_path), "--space", str(space))
    assert_one_line_error(code, err, "unknown parameter 'entropy'", str(space))
    assert not (tmp_path / "s").exists()


def test_failing_trials_are_recorded_and_the_study_goes_on(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A combination the trainer rejects fails its trial (error kept); when every trial fails the exit is 1."""
    space = write_space(tmp_path / "bad.yml", {**PPO_SPACE, "fixed": {**PPO_SPACE["fixed"], "batch_size": 1}})
    code, out, err = run_cli(capsys, "tune", "ppo", *TINY, *RL_BUDGET, "--trials", "2", "--study", "bad", "--out",
                             str(tmp_path), "--space", str(space))
    assert code == 1 and "every trial failed" in err, (out, err)
    trials = load_journal_study(tmp_path / "bad").trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert all("rejected its hyperparameters" in t.user_attrs["error"] for t in trials)
    assert out.count("failed: ConfigError") == 2 and not (tmp_path / "bad" / "best.yml").exists()


# ------------------------------------------------------------------------------------- studies end to end
@pytest.fixture(scope="module")
def ppo_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Three PPO trials on the tiny shop through the CLI (journal storage); returns (folder, argv)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tune")
    space = write_space(root / "ppo.yml", PPO_SPACE)
    argv = ["tune", "ppo", *TINY, *RL_BUDGET, "--study", "ppo-tiny", "--out", str(root), "--space", str(space),
            "--seed", "3"]
    assert main([*argv, "--trials", "3"]) == 0
    return root / "ppo-tiny", argv


@pytest.mark.slow
def test_ppo_study_writes_its_folder(ppo_study: tuple[Path, list[str]]) -> None:
    folder, _ = ppo_study
    for name in ("journal.log", "study.yaml", "best.yml", "trials.csv", "history.png", "importances.png"):
        assert (folder / name).is_file() and (folder / name).stat().st_size > 0, name
    assert not list(folder.glob(".*partial*")), "a temporary file was left behind"
    study = load_journal_study(folder)
    assert len(study.trials) == 3 and all(t.state in FINISHED for t in study.trials)
    assert study.trials[0].state == TrialState.COMPLETE  # the pruner waits for one finished trial
    settings = study.user_attrs["driftrec"]
    assert settings["algo"] == "ppo" and settings["preset"] == "stationary" and settings["timesteps"] == 512
    assert settings["overrides"] == {"horizon_days": 0.25, "n_categories": 4, "n_items": 20}
    for trial in study.trials:
        # the validations were the intermediate values; the value is the last validation of the run
        assert trial.intermediate_values and max(trial.intermediate_values) <= 2
        evaluations = np.load(folder / "trials" / f"{trial.number:04d}" / "evaluations.npz")
        if trial.state == TrialState.COMPLETE:
            assert trial.value == pytest.approx(float(evaluations["results"][-1].mean()), abs=1e-9)
            assert len(evaluations["timesteps"]) == 2 and evaluations["timesteps"][-1] >= 512
    assert set(study.trials[0].params) == {"learning_rate", "gamma", "policy_kwargs.activation_fn"}
    study_yaml = yaml.safe_load((folder / "study.yaml").read_text())
    assert study_yaml["storage"].endswith("journal.log") and study_yaml["objective"] == "reward (maximize)"


@pytest.mark.slow
def test_best_yml_trains_with_driftrec_train(ppo_study: tuple[Path, list[str]], tmp_path: Path) -> None:
    folder, _ = ppo_study
    study = load_journal_study(folder)
    best = study.best_trial
    hp = load_hyperparams("ppo", "stationary", folder / "best.yml")
    assert hp["learning_rate"] == pytest.approx(best.params["learning_rate"], rel=1e-12)
    assert hp["gamma"] == best.params["gamma"] and hp["n_steps"] == 16 and hp["n_envs"] == 16
    assert hp["policy_kwargs"] == {"net_arch": [32], "activation_fn": best.params["policy_kwargs.activation_fn"]}
    assert hp["n_timesteps"] == 512
    with pytest.raises(ConfigError, match="no entry for preset 'default'"):  # tuned for stationary only
        load_hyperparams("ppo", "default", folder / "best.yml")
    out = tmp_path / "run"
    assert main(["train", "ppo", *TINY, "--hyperparams", str(folder / "best.yml"), "--timesteps", "256",
                 "--eval-freq", "0", "--out", str(out)]) == 0
    spec = yaml.safe_load((out / "spec.yaml").read_text())
    assert spec["hyperparams"]["learning_rate"] == pytest.approx(best.params["learning_rate"], rel=1e-12)
    assert spec["hyperparams"]["policy_kwargs"]["activation_fn"] == best.params["policy_kwargs.activation_fn"]


@pytest.mark.slow
def test_resume_adds_trials_and_refuses_other_settings(ppo_study: tuple[Path, list[str]],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    folder, argv = ppo_study
    before = [(t.params, t.value, t.state) for t in load_journal_study(folder).trials]
    code, out, _ = run_cli(capsys, *argv, "--trials", "5")
    assert code == 0, out
    assert "3 of 5 trials" in out and "running 2 more with 1 worker" in out
    study = load_journal_study(folder)
    trials = study.trials
    assert len(trials) == 5 and all(t.state in FINISHED for t in trials)
    assert [(t.params, t.value, t.state) for t in trials[:3]] == before  # resumed, not restarted
    assert trials[3].params != trials[0].params  # a resumed sampler proposes new points
    assert not list((folder / "workers").iterdir()), "a worker left its liveness lock behind"
    # the same command again: the study is finished, nothing runs
    code, out, _ = run_cli(capsys, *argv, "--trials", "5")
    assert code == 0 and "5 of 5 trials" in out and "nothing to run" in out
    assert len(load_journal_study(folder).trials) == 5
    for change, needles in ((["--preset", "default"], ["preset 'stationary', not 'default'"]),
                            (["--timesteps", "1024"], ["--timesteps 512, not 1024"]),
                            (["--set", "n_items=30"], ["simulator keys (--set)", "n_items=20"])):
        code, _, err = run_cli(capsys, *argv, *change, "--trials", "6")
        assert_one_line_error(code, err, "study 'ppo-tiny'", *needles)
    code, _, err = run_cli(capsys, "tune", "dqn", *TINY, *RL_BUDGET, "--study", "ppo-tiny", "--out",
                           str(folder.parent), "--seed", "3", "--trials", "6")
    assert_one_line_error(code, err, "algorithm 'ppo', not 'dqn'")
    assert len(load_journal_study(folder).trials) == 5


@pytest.mark.slow
def test_supervised_study_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = write_space(tmp_path / "mlp.yml", MLP_SPACE)
    argv = ["tune", "mlp", "--preset", "stationary", "--set", "n_items=20", "--set", "n_categories=4", "--set",
            "horizon_days=2", "--users", "120", "--study", "mlp-tiny", "--out", str(tmp_path), "--space", str(space)]
    code, out, _ = run_cli(capsys, *argv, "--trials", "2")
    assert code == 0, out
    assert "simulated the log of 120 users" in out
    folder = tmp_path / "mlp-tiny"
    study = load_journal_study(folder)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    for trial in study.trials:  # the value is the validation metric train_supervised wrote, never the test one
        metrics = yaml.safe_load((folder / "trials" / f"{trial.number:04d}" / "metrics.json").read_text())
        assert trial.value == pytest.approx(metrics["validation"]["click"]["auc"], abs=1e-12)
        assert 0.0 < trial.value < 1.0 and trial.user_attrs["metrics"]["click_auc"] == trial.value
        test_auc = metrics["summary"]["click_auc"]  # the held-out test examples (later than the validation ones)
        assert trial.user_attrs["test_metrics"]["click_auc"] == pytest.approx(test_auc, abs=1e-12)
        assert trial.value != pytest.approx(test_auc, abs=1e-9), "the trial was selected on the test metric"
    best_trial = study.best_trial
    header = (folder / "best.yml").read_text().splitlines()[:2]
    assert f"validation click_auc {best_trial.value:.6g} (maximize)" in header[0], header
    assert header[1] == (f"# held-out test click_auc of trial {best_trial.number}: "
                         f"{best_trial.user_attrs['test_metrics']['click_auc']:.6g} (reported, never selected on)")
    assert "test_metrics" not in (folder / "trials.csv").read_text()  # the test numbers of the other trials
    best = yaml.safe_load((folder / "best.yml").read_text())
    assert set(best) == {"epochs", "patience", "lr", "hidden", "layers"}
    assert best["lr"] == pytest.approx(study.best_trial.params["lr"], rel=1e-12)
    assert max(t.value for t in study.trials) == study.best_value  # maximize: the best is the highest
    SupervisedConfig.from_dict(best)  # valid SupervisedConfig keys
    again = train_supervised("mlp", folder / "logs.parquet", tmp_path / "again", seed=0, preset="stationary",
                             n_items=20, n_categories=4, horizon_days=2.0, **best)
    assert again["validation"]["click"]["auc"] == pytest.approx(study.best_value, abs=1e-9)  # reproducible
    assert again["summary"]["click_auc"] == pytest.approx(best_trial.user_attrs["test_metrics"]["click_auc"],
                                                          abs=1e-9)
    code, out, _ = run_cli(capsys, *argv, "--trials", "3")  # resume: the log is reused, one more trial
    assert code == 0 and "simulated the log" not in out and len(load_journal_study(folder).trials) == 3


# ------------------------------------------------------------------------------------- dead workers
@pytest.mark.slow
def test_killed_worker_trial_fails_and_reruns_with_its_parameters(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    space = write_space(tmp_path / "ppo.yml", PPO_SPACE)
    argv = ["tune", "ppo", *TINY, "--timesteps", "4096", "--users", "16", "--eval-users", "8", "--study", "killed",
            "--out", str(tmp_path), "--space", str(space), "--trials", "2"]
    folder = tmp_path / "killed"
    worker = cli_process(*argv)
    try:
        deadline = time.monotonic() + 120
        running: list[optuna.trial.FrozenTrial] = []
        while not running and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
            if (folder / "journal.log").is_file() and (folder / "trials" / "0000").is_dir():
                running = load_journal_study(folder).get_trials(states=(TrialState.RUNNING,))
        assert running, f"the worker never ran a trial: {worker.poll()}"
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.kill()
        worker.communicate()
    killed = load_journal_study(folder).trials[0]
    assert killed.state == TrialState.RUNNING  # killed mid-trial: nothing told the study

    code, out, _ = run_cli(capsys, *argv)  # the same command finishes the study
    assert code == 0, out
    trials = load_journal_study(folder).trials
    assert len(trials) == 3 and trials[0].state == TrialState.FAIL
    assert all(t.state in FINISHED for t in trials[1:])
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 0)
    assert retry.params == killed.params and retry.user_attrs["retries"] == 1
    counted = counted_trials(trials)
    assert len(counted) == 2 and all(t.state in FINISHED for t in counted)


# ------------------------------------------------------------------------------------- PostgreSQL
def _postgres_module() -> ModuleType:
    """tests/experiments/postgres.py (pytest's importlib mode puts no test folder on sys.path)."""
    spec = importlib.util.spec_from_file_location("driftrec_test_postgres", Path(__file__).with_name("postgres.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def postgres_url() -> Any:
    with _postgres_module().postgres_server() as url:
        yield url


@pytest.mark.slow
def test_three_workers_share_one_postgres_study(postgres_url: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Two `driftrec tune` commands on one fresh database, started together as on two machines: one
    in another process, one here with --workers 2 (three worker processes). Exactly N trials run."""
    space = write_space(tmp_path / "ppo.yml", PPO_SPACE)
    n = 7
    argv = ["tune", "ppo", *TINY, *RL_BUDGET, "--study", "shared", "--space", str(space), "--trials", str(n),
            "--storage", postgres_url, "--heartbeat", "2"]
    other = cli_process(*argv, "--out", str(tmp_path / "machine1"))
    try:
        code, out, err = run_cli(capsys, *argv, "--out", str(tmp_path / "machine0"), "--workers", "2")
    finally:
        other_out = other.communicate(timeout=300)[0]
    assert code == 0 and other.returncode == 0, (out, err, other_out)
    assert "with 2 workers" in out, out
    study = optuna.load_study(study_name="shared", storage=postgres_url.replace("postgresql://",
                                                                                 "postgresql+psycopg://"))
    trials = study.trials
    assert len(trials) == n and sorted(t.number for t in trials) == list(range(n))
    assert Counter(t.state for t in trials).keys() <= set(FINISHED), Counter(t.state for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) >= 2, "the trials were not shared between workers"
    # each machine exported the finished study: its own best.yml holds the best value (ties may name either trial)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    for i in range(2):
        best = (tmp_path / f"machine{i}" / "shared" / "best.yml").read_text()
        assert f"best of {len(complete)} complete trials" in best and f"reward {study.best_value:.6g} " in best


@pytest.mark.slow
def test_stale_postgres_trial_is_failed_and_requeued(postgres_url: str, tmp_path: Path) -> None:
    """A trial whose heartbeat stopped (its worker died) is failed and re-queued by the next worker."""
    config = TuneConfig("ppo", "stale", 2, preset="stationary",
                             overrides={"n_items": 20, "n_categories": 4, "horizon_days": 0.25}, storage=postgres_url,
                             timesteps=512, users=16, eval_users=8, out=tmp_path,
                             space=write_space(tmp_path / "ppo.yml", PPO_SPACE), heartbeat=1, quiet=True)
    with optuna_quiet():
        _stale_trial_is_requeued(config)


def _stale_trial_is_requeued(config: TuneConfig) -> None:
    setup = study_setup(config)
    store = open_store(config)
    assert isinstance(store, PostgresStore)
    study = open_study(setup, store)
    first = take_trial(study, store, setup, "gone-worker")
    assert first is not None and first is not WAIT
    first.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    store.storage.record_heartbeat(storage_trial_id(store.storage, study, first.number))
    second = take_trial(study, store, setup, "live-worker")
    assert second is not None and second is not WAIT and second.number == 1
    study.tell(second, 1.0)
    # both trials are taken: while the first one runs, a worker waits ...
    assert take_trial(study, store, setup, "live-worker") is WAIT
    time.sleep(STALE_BEATS * config.heartbeat + 1.5)  # ... until its heartbeat is stale
    retry = take_trial(study, store, setup, "live-worker")
    assert retry is not None and retry is not WAIT
    trials = study.get_trials(deepcopy=False)
    assert trials[0].state == TrialState.FAIL and retry.number == 2
    assert trials[2].user_attrs["retry_of"] == 0 and trials[2].params == trials[0].params
    # the first worker was only slow: its late result is dropped, the re-queued copy stands
    run_trial(study, store, first, lambda trial: 3.0, config, 0)
    assert study.get_trials(deepcopy=False)[0].state == TrialState.FAIL
    study.tell(retry, 2.0)
    assert take_trial(study, store, setup, "live-worker") is None  # two counted trials: done
    assert [t.value for t in counted_trials(study.get_trials(deepcopy=False))] == [1.0, 2.0]
