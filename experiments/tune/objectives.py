"""The objectives of ``driftrec tune`` trials (what each kind of trial trains and judges: the
package doc, :mod:`driftrec.experiments.tune`): train once through
:func:`driftrec.experiments.train.train_policy` with the trial's hyperparameters and return a
validation value, never a test one; the held-out test metrics of a supervised trial are kept as
its ``test_metrics`` for the chosen trial's report only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from driftrec.experiments.tune.settings import StudySetup

if TYPE_CHECKING:  # optuna takes a second to import: `driftrec presets` should not wait
    from optuna.trial import Trial


def make_objective(setup: StudySetup) -> Callable[[Trial], float]:
    """The objective of ``setup``'s trials: train once, return the validation value."""
    return _rl_objective(setup) if setup.rl else _supervised_objective(setup)


def trial_dir(setup: StudySetup, trial: Trial) -> Path:
    """The run folder of ``trial``, ``trials/NNNN`` in the study folder."""
    return setup.config.study_dir / "trials" / f"{trial.number:04d}"


def _rl_objective(setup: StudySetup) -> Callable[[Trial], float]:
    """Train with the trial's hyperparameters; report each validation; the last one is the value."""
    import optuna

    from driftrec.experiments.train import train_policy

    config = setup.config
    timesteps = int(setup.base_hp["n_timesteps"])

    def objective(trial: Trial) -> float:
        hp = setup.trial_settings(setup.space.sample(trial))
        reporter = _validation_reporter(trial)
        trained = train_policy(config.algo, setup.sim, trial_dir(setup, trial), preset=config.preset, seed=config.seed,
                               settings=dict(hyperparams=hp, timesteps=timesteps, users=int(setup.base_hp["n_envs"]),
                                             eval_freq=max(timesteps // setup.space.evaluations, 1),
                                             eval_users=config.eval_users, checkpoint_freq=0, overwrite=True),
                               callbacks=[reporter])
        trial.set_user_attr("timesteps", trained.timesteps)
        if reporter.pruned:  # type: ignore[attr-defined]
            raise optuna.TrialPruned()
        evaluations = trained.evaluations
        if not evaluations:
            raise RuntimeError("the trial made no validation")
        return float(np.mean(evaluations["results"][-1]))

    return objective


def _validation_reporter(trial: Trial) -> Any:
    """An SB3 callback that reports each new validation (SB3's EvalCallback, which ``run_train``
    adds) to ``trial`` and stops training when the pruner says so."""
    from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

    class ValidationReporter(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.eval: EvalCallback | None = None
            self.seen = 0
            self.pruned = False

        def _on_training_start(self) -> None:
            # run_train's callbacks are siblings in one CallbackList: find the EvalCallback in it
            stack = [self.locals.get("callback")]
            while stack:
                cb = stack.pop()
                if isinstance(cb, EvalCallback):
                    self.eval = cb
                stack.extend(getattr(cb, "callbacks", []))
            if self.eval is None:
                raise RuntimeError("run_train validates nothing: no EvalCallback to report from")

        def _on_step(self) -> bool:
            assert self.eval is not None
            results = self.eval.evaluations_results
            while self.seen < len(results):
                self.seen += 1
                trial.report(float(np.mean(results[self.seen - 1])), self.seen)
                if trial.should_prune():
                    self.pruned = True
                    return False  # SB3 stops; run_train ends normally
            return True

    return ValidationReporter()


def _supervised_objective(setup: StudySetup) -> Callable[[Trial], float]:
    """Train on the study's log; the metric on the validation examples (the latest of the training
    data, which early stopping watches) is the value. The held-out test metrics are kept as the
    trial's ``test_metrics`` for the report of the chosen trial, never selected on."""
    from driftrec.agents.supervised import SupervisedConfig
    from driftrec.agents.supervised.train import headline
    from driftrec.experiments.train import train_policy

    config = setup.config
    logs = config.study_dir / "logs.parquet"
    metric = setup.space.metric

    def objective(trial: Trial) -> float:
        params = setup.trial_settings(setup.space.sample(trial))
        metrics = train_policy(config.algo, setup.sim, trial_dir(setup, trial), preset=config.preset,
                               seed=config.seed, logs=logs, settings=params).record
        trial.set_user_attr("test_metrics", _numbers(metrics["summary"]))
        if "validation" not in metrics:
            raise ValueError("no validation examples: too few clicks in the training data to hold out its latest "
                             "val_frac")
        validation = _numbers(headline(metrics["validation"], SupervisedConfig.from_dict(params).top_k))
        trial.set_user_attr("metrics", validation)
        if validation.get(metric) is None:
            raise ValueError(f"the validation {metric} is undefined (too few clicks or purchases in the "
                             "validation examples)")
        return float(validation[metric])

    return objective


def _numbers(summary: Mapping[str, Any]) -> dict[str, float | int | None]:
    """The numbers of a metrics summary (a trial's user attributes hold JSON)."""
    return {k: v for k, v in summary.items() if isinstance(v, (int, float)) or v is None}


def simulate_log(setup: StudySetup, path: Path) -> int:
    """The logging policy's events of the study's log users (seeds ``seed + i``), written atomically
    to ``path`` (as compare's logs); returns the number of events."""
    from driftrec.agents.registry import make_policy
    from driftrec.envs import rollout
    from driftrec.envs.events import EventWriter
    from driftrec.envs.user_model import build_user_model

    users = int(setup.settings["log_users"])
    user_model = build_user_model(setup.sim)
    policy = make_policy("logging", user_model, users, setup.config.seed)
    with EventWriter(path) as writer:
        rollout.simulate_log(user_model, policy, rollout.train_seeds(setup.config.seed, users), writer=writer)
    return int(writer.n_events)
