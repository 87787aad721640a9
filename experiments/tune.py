"""``driftrec tune``: hyperparameter search with Optuna, by one process or many sharing a study.

``driftrec tune ppo|dqn|mlp|gru|transformer --preset P --trials N --study NAME`` runs an Optuna
study (:func:`run_tune`): the TPE sampler (seeded by ``--seed`` and the trial number, so a study
run by one worker is reproducible) proposes hyperparameters from a YAML search space
(``experiments/search_spaces/<algo>.yml``, or ``--space FILE``), every trial trains once, and
the median pruner stops RL trials whose validations trail the other trials' at the same point.

- RL (ppo, dqn): a trial is a ``driftrec train`` run (:func:`driftrec.experiments.train.run_train`)
  of ``--timesteps`` user-steps; its objective is the reward per user of the validation users
  after the whole budget, and the validations along the way are the pruner's intermediate values.
  Every trial meets the same training and validation users (``--seed``), so trials differ only in
  their hyperparameters.
- Supervised (mlp, gru, transformer): the logging policy's event log of ``--users`` users is
  simulated once into the study folder; a trial is a :func:`driftrec.agents.supervised.train_supervised`
  run on it, judged on the log's held-out latest examples (the space's ``objective``, by default
  the click log-loss). Not pruned: ``train_supervised`` reports held-out metrics once, at the end.

The study folder ``--out/NAME`` (default ``runs/tune/NAME``):

| path | what |
|---|---|
| ``journal.log`` | the study itself (Optuna's journal file storage) unless ``--storage`` names a database |
| ``study.yaml`` | what the study tunes: algorithm, preset, simulator keys, budget, objective, storage |
| ``best.yml`` | the best trial's hyperparameters, for ``driftrec train --hyperparams`` and ``compare`` |
| ``trials.csv`` | one row per trial: number, state, value, parameters, worker, seconds |
| ``history.png``, ``importances.png`` | optimisation history; parameter importances (PED-ANOVA) |
| ``logs.parquet`` | supervised studies: the event log every trial trains on |
| ``trials/NNNN/`` | each trial's run folder (model, spec, validations; metrics.json for supervised) |

``best.yml`` of an RL study is per preset (``{PRESET: {hyperparameters}}``, every rl-zoo3 key the
trial trained with, as :func:`driftrec.agents.rl.load_hyperparams` reads it); of a supervised study
a flat mapping of :class:`~driftrec.agents.supervised.SupervisedConfig` keys (compare's ``supervised:``).

Storage and workers. The default storage is a journal file in the study folder, which several
processes on one machine share safely (Optuna's JournalFileBackend takes its own lock for every
write; SQLite is not safe for concurrent writers). ``--storage postgresql://USER@HOST:PORT/DB``
puts the study in PostgreSQL so that workers on many machines share it (each runs the same
command); ``--workers K`` starts K worker processes here. The study's settings are stored with
it: resuming with another algorithm, preset, budget or objective is refused. ``--trials N`` is the
study's total, across all workers and runs: re-running the same command finishes an interrupted
study, and a larger N adds trials. Exactly N trials end COMPLETE, PRUNED or FAIL:

- a worker takes a trial while holding the study's reservation lock (an ``flock`` beside the
  journal; a PostgreSQL advisory lock keyed by the study name), counting the trials that are
  running, waiting or finished first, so no two workers start the N+1st trial (Optuna's
  MaxTrialsCallback checks after a trial ends, so racing workers can overshoot);
- a worker that dies (killed, out of memory, its machine lost) leaves its trial RUNNING until
  another worker notices: through the database heartbeat (``--heartbeat`` seconds; stale after
  three missed beats) or, for the journal, because the dead worker's ``flock`` on
  ``workers/ID.lock`` was released by the kernel. That trial is set FAIL and re-queued with the
  same parameters (WAITING; at most :data:`MAX_RETRY` times); the retry replaces it in the count,
  so no trial is lost and none counts twice (a worker that was only stalled past the grace period
  finds its trial failed and drops its late result). A Ctrl-C re-queues the interrupted trial
  the same way. Workers wait for the running trials of others before they exit, so a run
  that ends normally leaves the study finished.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime
import hashlib
import json
import math
import os
import re
import socket
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from driftrec.envs.config import ConfigError, SimConfig, read_yaml_mapping
from driftrec.envs.presets import PRESETS, preset_config
from driftrec.experiments.artifacts import atomic_path, plain, write_text
from driftrec.experiments.cliutil import CLIError, int_arg, parse_overrides, positive_int

if TYPE_CHECKING:  # optuna, SB3 and torch take seconds to import: `driftrec presets` should not wait
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, Trial

RL = ("ppo", "dqn")
SUPERVISED = ("mlp", "gru", "transformer")
TUNABLE = (*RL, *SUPERVISED)
DEFAULT_OUT = Path("runs/tune")
DEFAULT_LOG_USERS = 1000  # supervised: users of the logging policy's event log (as compare's log_users)
DEFAULT_EVAL_USERS = 128  # RL: validation users of every trial (as compare's rl_eval_users)
DEFAULT_HEARTBEAT = 30  # seconds between a PostgreSQL worker's heartbeats
STALE_BEATS = 3  # a trial whose worker missed this many heartbeats is failed and re-queued
MAX_RETRY = 2  # re-queues of a trial whose worker died, before it counts as failed
POLL = 1.0  # seconds between looks at the running trials of other workers, while waiting for them
SEED = int_arg(0, 2**31, "an integer seed")
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SUPERVISED_METRICS = ("click_auc", "click_logloss", "click_f1", "purchase_auc", "purchase_logloss")
TRIAL_ERRORS = (ConfigError, ValueError, RuntimeError, ArithmeticError, AssertionError)
"""A trial raising one of these (bad hyperparameter combination, NaN loss) fails; the study goes on."""


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """One tuning job: the CLI's ``driftrec tune`` flags, for tests and notebooks."""

    algo: str  # ppo | dqn | mlp | gru | transformer
    study: str  # study name: the folder under out and the name in the storage
    trials: int  # the study's total trials (all workers, all runs)
    preset: str = "default"  # simulator preset
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # SimConfig keys over the preset
    storage: str | None = None  # postgresql://...; None: the journal file in the study folder
    workers: int = 1  # worker processes started here
    seed: int = 0  # seeds the sampler, the agents and the users (training, validation, log)
    timesteps: int | None = None  # RL: user-steps per trial; None: the preset's n_timesteps
    users: int | None = None  # RL: users stepped together (n_envs; None: the hyperparameters'); supervised: log users
    eval_users: int = DEFAULT_EVAL_USERS  # RL: validation users of every trial
    out: Path | str = DEFAULT_OUT  # parent of the study folder
    space: Path | str | None = None  # search space YAML; None: experiments/search_spaces/<algo>.yml
    heartbeat: int = DEFAULT_HEARTBEAT  # PostgreSQL: seconds between heartbeats of a running trial
    quiet: bool = False  # no line per trial on stdout

    @property
    def study_dir(self) -> Path:
        """The study folder, ``out/study``."""
        return Path(self.out) / self.study


@dataclasses.dataclass
class TuneResult:
    """What a :func:`run_tune` call left: the study's trials, its best, the files written."""

    study_dir: Path
    states: dict[str, int]  # trial state -> trials (a re-queued trial counts once)
    ran: int  # trials this call's workers finished
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    files: list[Path]
    notes: list[str]
    wall_s: float
    failed_workers: list[str]  # "worker K exited with status S"


# ------------------------------------------------------------------------------------- search spaces
SPACE_KEYS = ("objective", "evaluations", "sampler", "pruner", "fixed", "params")
PARAM_KEYS = ("low", "high", "log", "step", "choices", "type")
PARAM_TYPES = ("int", "float", "categorical")


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a numeric range or a list of choices.

    A choice that is not a plain number, string or boolean (a network shape) has a label: the
    study records the label, :meth:`value` gives what it stands for.
    """

    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    integer: bool = False
    choices: tuple[Any, ...] = ()  # what the study records
    values: tuple[Any, ...] = ()  # what each choice stands for

    def suggest(self, trial: Trial) -> Any:
        """Sample (or, for a re-queued trial, read back) this parameter's value in ``trial``."""
        if self.choices:
            return self.value(trial.suggest_categorical(self.name, list(self.choices)))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high),  # type: ignore[arg-type]
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high),  # type: ignore[arg-type]
                                   step=self.step, log=self.log)

    def value(self, recorded: Any) -> Any:
        """The value a recorded parameter stands for (a fresh copy: trials never share lists)."""
        if not self.choices:
            return recorded
        for choice, value in zip(self.choices, self.values, strict=True):
            if choice == recorded and type(choice) is type(recorded):  # True == 1, but they are other choices
                return copy.deepcopy(value)
        raise ConfigError(f"parameter '{self.name}': {recorded!r} is not one of its choices {list(self.choices)}")

    def extremes(self) -> list[Any]:
        """The values to validate: both bounds, or every choice."""
        return list(self.values) if self.choices else [self.low, self.high]


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A validated search space file (see ``experiments/search_spaces/ppo.yml`` for the format)."""

    algo: str
    path: Path
    params: tuple[Param, ...]
    fixed: Mapping[str, Any]  # hyperparameters every trial uses
    metric: str  # RL: 'reward' (validation reward per user); supervised: a train_supervised summary key
    direction: str  # maximize | minimize
    evaluations: int  # RL: validations per trial (intermediate values); supervised: 0
    startup_trials: int  # random trials before TPE
    pruner_startup_trials: int
    pruner_warmup_steps: int  # the first validations of a trial, which never prune it

    def sample(self, trial: Trial) -> dict[str, Any]:
        """Every parameter's value in ``trial`` (labels resolved)."""
        return {p.name: p.suggest(trial) for p in self.params}

    def values(self, recorded: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's recorded parameters -> the values they stand for (unknown names kept as they are)."""
        by_name = {p.name: p for p in self.params}
        return {k: by_name[k].value(v) if k in by_name else v for k, v in recorded.items()}

    @property
    def objective(self) -> str:
        """The objective as the study records it, e.g. ``reward (maximize)``."""
        return f"{self.metric} ({self.direction})"


def search_space_file(algo: str) -> Path:
    """The packaged search space of ``algo`` (``experiments/search_spaces/<algo>.yml``)."""
    _check_algo(algo)
    return Path(str(resources.files("driftrec.experiments") / "search_spaces" / f"{algo}.yml"))


def load_search_space(algo: str, path: str | Path | None = None) -> SearchSpace:
    """Read and validate a search space; every mistake is one ConfigError naming the key and the file."""
    _check_algo(algo)
    path = Path(path) if path is not None else search_space_file(algo)
    where = f"search space '{path}'"
    data = read_yaml_mapping(path, "search space")
    for key in data:
        if key not in SPACE_KEYS:
            raise ConfigError(f"unknown key '{key}' in {where}; expected: {', '.join(SPACE_KEYS)}")
    rl = algo in RL
    params_data = data.get("params")
    if not isinstance(params_data, dict) or not params_data:
        raise ConfigError(f"{where} needs 'params', a mapping of parameter name -> {{low, high}} or {{choices}}")
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"'fixed' in {where} must be a mapping of hyperparameters")
    for name in fixed:
        _check_name(algo, str(name), where)
        if name in params_data:
            raise ConfigError(f"parameter '{name}' is both fixed and searched in {where}")
    params = tuple(_param(algo, str(name), spec, where) for name, spec in params_data.items())
    _check_values(algo, params, dict(fixed), where)

    if not rl:
        for key in ("evaluations", "pruner"):
            if key in data:
                raise ConfigError(f"'{key}' in {where}: supervised trials are not pruned (train_supervised reports "
                                  "its held-out metrics once, at the end)")
    objective = data.get("objective") or ({"metric": "reward", "direction": "maximize"} if rl else
                                          {"metric": "click_logloss", "direction": "minimize"})
    if not isinstance(objective, dict) or set(objective) - {"metric", "direction"}:
        raise ConfigError(f"'objective' in {where} must be {{metric: NAME, direction: maximize|minimize}}")
    top_k = int(fixed.get("top_k", 10))
    metrics = ("reward",) if rl else (*SUPERVISED_METRICS, f"hr@{top_k}", f"ndcg@{top_k}")
    metric = objective.get("metric")
    if metric not in metrics:
        raise ConfigError(f"objective metric {metric!r} in {where} is not one of: {', '.join(metrics)}")
    direction = objective.get("direction", "maximize" if rl else None)
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"objective direction in {where} must be maximize or minimize, got {direction!r}")
    evaluations = _count(data, "evaluations", 5 if rl else 0, 1 if rl else 0, where)
    sampler = _section(data, "sampler", ("n_startup_trials",), where)
    pruner = _section(data, "pruner", ("n_startup_trials", "n_warmup_steps"), where)
    return SearchSpace(
        algo=algo, path=path, params=params, fixed=dict(fixed), metric=str(metric), direction=str(direction),
        evaluations=evaluations, startup_trials=_count(sampler, "n_startup_trials", 10, 0, f"'sampler' in {where}"),
        pruner_startup_trials=_count(pruner, "n_startup_trials", 5, 0, f"'pruner' in {where}"),
        pruner_warmup_steps=_count(pruner, "n_warmup_steps", 1, 0, f"'pruner' in {where}"))


def _check_algo(algo: str) -> None:
    if algo not in TUNABLE:
        raise ConfigError(f"cannot tune '{algo}'; choose one of: {', '.join(TUNABLE)}")


def _section(data: Mapping[str, Any], key: str, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"'{key}' in {where} must be a mapping with {', '.join(keys)}")
    for sub in value:
        if sub not in keys:
            raise ConfigError(f"unknown key '{key}.{sub}' in {where}; expected: {', '.join(keys)}")
    return value


def _count(data: Mapping[str, Any], key: str, default: int, lo: int, where: str) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"'{key}' in {where} must be an integer >= {lo}, got {value!r}")
    return value


def _check_name(algo: str, name: str, where: str) -> None:
    """A parameter name must be something the trainer takes: an rl-zoo3 key (or ``policy_kwargs.KEY``)
    for RL, a SupervisedConfig key for supervised models."""
    if algo in SUPERVISED:
        from driftrec.agents.supervised.config import SupervisedConfig

        keys = {f.name for f in dataclasses.fields(SupervisedConfig)} - {"preset"}
        if name == "preset":
            raise ConfigError(f"parameter 'preset' in {where}: the study's preset is --preset")
        if name not in keys:
            raise ConfigError(f"unknown parameter '{name}' in {where}: not a SupervisedConfig key{_close(name, keys)}")
        return
    from driftrec.agents.rl import algorithm, hyperparam_keys

    if name in ("n_timesteps", "n_envs", "policy"):
        flag = {"n_timesteps": "--timesteps", "n_envs": "--users", "policy": "the observation mode"}[name]
        raise ConfigError(f"parameter '{name}' in {where} is the study's, set by {flag}: "
                          "trials with different budgets do not compare")
    head, dot, sub = name.partition(".")
    if dot:
        if head != "policy_kwargs":
            raise ConfigError(f"unknown parameter '{name}' in {where}: only policy_kwargs.KEY may have a dot")
        import inspect

        policy = algorithm(algo).policy_aliases["MlpPolicy"]
        keys = set(inspect.signature(policy.__init__).parameters) - {"self", "observation_space", "action_space",
                                                                       "lr_schedule"}
        if sub not in keys:
            raise ConfigError(f"unknown parameter '{name}' in {where}: '{sub}' is not a policy_kwargs key of "
                              f"{algo}{_close(sub, keys)}")
        return
    keys = set(hyperparam_keys(algo))
    if name not in keys:
        raise ConfigError(f"unknown parameter '{name}' in {where}: not a {algo} hyperparameter{_close(name, keys)}")


def _close(name: str, keys: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(keys), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _param(algo: str, name: str, spec: Any, where: str) -> Param:
    """One ``params`` entry -> a Param, validated."""
    _check_name(algo, name, where)
    at = f"parameter '{name}' in {where}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{at} must be {{low: L, high: H}} or {{choices: [...]}}, got {spec!r}")
    for key in spec:
        if key not in PARAM_KEYS:
            raise ConfigError(f"unknown key '{key}' of {at}; expected: {', '.join(PARAM_KEYS)}")
    kind = spec.get("type")
    if kind is not None and kind not in PARAM_TYPES:
        raise ConfigError(f"{at}: type must be one of {', '.join(PARAM_TYPES)}, got {kind!r}")
    if "choices" in spec:
        if kind not in (None, "categorical") or set(spec) - {"choices", "type"}:
            raise ConfigError(f"{at}: choices take no low, high, log or step")
        choices = spec["choices"]
        if isinstance(choices, dict):
            labels, values = tuple(str(k) for k in choices), tuple(choices.values())
        elif isinstance(choices, list):
            for choice in choices:
                if choice is not None and not isinstance(choice, (bool, int, float, str)):
                    raise ConfigError(f"{at}: choice {choice!r} is not a number, string or boolean; "
                                      "give the choices as a mapping of label -> value")
            labels = values = tuple(choices)
        else:
            raise ConfigError(f"{at}: choices must be a list or a mapping of label -> value")
        if not labels:
            raise ConfigError(f"{at}: choices is empty")
        if len({(type(c), c) for c in labels}) < len(labels):
            raise ConfigError(f"{at}: choices repeat a value")
        return Param(name, choices=labels, values=values)
    if kind == "categorical":
        raise ConfigError(f"{at}: a categorical parameter needs choices")
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{at} needs low and high (or choices)")
    low, high = _number(spec["low"], f"{at}: low"), _number(spec["high"], f"{at}: high")
    step = _number(spec["step"], f"{at}: step") if spec.get("step") is not None else None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{at}: log must be true or false, got {log!r}")
    integer = kind == "int" or (kind is None and all(isinstance(v, int) for v in (low, high, step) if v is not None))
    if integer and not all(float(v).is_integer() for v in (low, high, step) if v is not None):
        raise ConfigError(f"{at}: an int parameter needs integer bounds and step")
    if not low < high:
        raise ConfigError(f"{at}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{at}: a log scale needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{at}: step must be > 0 and cannot go with log")
    if integer:
        return Param(name, int(low), int(high), log, int(step) if step else None, integer=True)
    return Param(name, float(low), float(high), log, float(step) if step else None)


def _number(value: Any, what: str) -> float | int:
    """YAML 1.1 reads ``1e-5`` as a string: accept numbers written that way."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ConfigError(f"{what} must be finite, got {value!r}")
        return value
    try:
        number = float(str(value))
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{what} must be finite, got {value!r}")
    return number


def _check_values(algo: str, params: tuple[Param, ...], fixed: dict[str, Any], where: str) -> None:
    """Every bound and choice must be a value the trainer accepts (checked one at a time)."""
    if algo in SUPERVISED:
        from driftrec.agents.supervised.config import SupervisedConfig

        def check(name: str, value: Any) -> None:
            # heads must divide embedding_dim: checked for every pair below, so one value at a time here
            pair = {"embedding_dim": 2 * value} if name == "heads" and isinstance(value, int) else {"heads": 1}
            SupervisedConfig.from_dict({**pair, name: value})
    else:
        from driftrec.agents.rl import resolved_hyperparams

        def check(name: str, value: Any) -> None:
            if "." not in name:
                resolved_hyperparams(algo, {name: value})
    for name, values in [*((p.name, p.extremes()) for p in params), *((k, [v]) for k, v in fixed.items())]:
        for value in values:
            try:
                check(name, value)
            except ConfigError as err:
                raise ConfigError(f"parameter '{name}' in {where}: {err}") from None
    if algo == "transformer":  # attention heads must divide the embedding width in every trial
        options = {p.name: p.extremes() if p.choices else list(range(int(p.low), int(p.high) + 1))
                   for p in params if p.name in ("heads", "embedding_dim")}
        from driftrec.agents.supervised.config import SupervisedConfig

        heads = options.get("heads", [fixed.get("heads", SupervisedConfig.heads)])
        dims = options.get("embedding_dim", [fixed.get("embedding_dim", SupervisedConfig.embedding_dim)])
        for h in heads:
            for d in dims:
                if int(d) % int(h):
                    raise ConfigError(f"heads {h} does not divide embedding_dim {d} in {where}: "
                                      "every heads value must divide every embedding_dim value")


def lay_over(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``values`` on top; ``policy_kwargs.KEY`` sets one key of ``policy_kwargs``
    (whose string form ``"dict(...)"`` is parsed first)."""
    out = dict(base)
    for key, value in values.items():
        head, dot, sub = key.partition(".")
        if not dot:
            out[key] = value
            continue
        from driftrec.agents.rl import parse_policy_kwargs

        inner = parse_policy_kwargs(out.get(head))
        inner[sub] = value
        out[head] = inner
    return out


# ------------------------------------------------------------------------------------- the study's settings
@dataclasses.dataclass(frozen=True)
class _Setup:
    """What every process of a study derives from its TuneConfig, validated."""

    config: TuneConfig
    space: SearchSpace
    sim: SimConfig
    settings: dict[str, Any]  # stored with the study; a resume must match them
    base_hp: dict[str, Any]  # RL: the packaged hyperparameters of the preset, with budget and users

    @property
    def rl(self) -> bool:
        return self.config.algo in RL

    def trial_settings(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The hyperparameters (RL) or training keys (supervised) of a trial with ``values``."""
        if self.rl:
            return lay_over(lay_over(self.base_hp, self.space.fixed), values)
        return {**self.space.fixed, **values}


def _setup(config: TuneConfig) -> _Setup:
    """Validate ``config`` (user mistakes raise one-line ConfigErrors) before anything is started."""
    _check_algo(config.algo)
    if not STUDY_NAME.fullmatch(config.study):
        raise ConfigError(f"study name {config.study!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    for name, value, lo in (("trials", config.trials, 1), ("workers", config.workers, 1),
                            ("eval_users", config.eval_users, 1), ("heartbeat", config.heartbeat, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ConfigError(f"{name} must be an integer >= {lo}, got {value!r}")
    for name, value in (("timesteps", config.timesteps), ("users", config.users)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    space = load_search_space(config.algo, config.space)
    if config.preset not in PRESETS:
        # best.yml is keyed by preset and compare looks a file preset's hyperparameters up under its base
        raise ConfigError(f"tune takes a built-in preset, not '{config.preset}'; to tune for a calibrated preset "
                          f"file, tune on its base preset with its overrides as --set keys")
    sim = preset_config(config.preset, config.overrides)
    overrides = {k: _plain(getattr(sim, k)) for k in sorted(config.overrides)}
    settings: dict[str, Any] = {"algo": config.algo, "preset": config.preset,
                                "preset_version": PRESETS[config.preset].version, "overrides": overrides,
                                "seed": config.seed, "objective": space.objective}
    base_hp: dict[str, Any] = {}
    if config.algo in RL:
        from driftrec.agents.rl import DISCRETE_ONLY, load_hyperparams, resolved_hyperparams
        from driftrec.envs.model import build_model

        base_hp = load_hyperparams(config.algo, config.preset)
        if config.timesteps is not None:
            base_hp["n_timesteps"] = config.timesteps
        if config.users is not None:
            base_hp["n_envs"] = config.users
        base_hp.setdefault("n_envs", 64)
        base_hp = resolved_hyperparams(config.algo, base_hp)
        if "n_timesteps" not in base_hp:
            raise ConfigError(f"no training budget: give --timesteps or n_timesteps in the {config.algo} "
                              "hyperparameters")
        from gymnasium import spaces

        if config.algo in DISCRETE_ONLY and not isinstance(build_model(sim).action_space, spaces.Discrete):
            raise ConfigError(f"{config.algo} needs a single-item action but preset '{config.preset}' recommends "
                              "slates: tune ppo, or set slate_size=1")
        settings.update(timesteps=int(base_hp["n_timesteps"]), users=int(base_hp["n_envs"]),
                        eval_users=config.eval_users, evaluations=space.evaluations)
    else:
        if config.timesteps is not None:
            raise ConfigError(f"--timesteps is for RL agents (ppo, dqn), not the supervised model {config.algo}")
        if sim.model != "shop":
            raise ConfigError(f"supervised models need the ShopSim user model; preset '{config.preset}' uses "
                              f"'{sim.model}'")
        settings["log_users"] = config.users or DEFAULT_LOG_USERS
    return _Setup(config, space, sim, _plain(settings), base_hp)


def _plain(value: Any) -> Any:
    """A JSON round trip: what the storage gives back, so stored and new settings compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


_SETTING_NAMES = {"algo": "algorithm", "preset": "preset", "preset_version": "preset version",
                  "overrides": "simulator keys (--set)", "seed": "--seed", "objective": "objective",
                  "timesteps": "--timesteps", "users": "--users", "eval_users": "--eval-users",
                  "evaluations": "validations per trial", "log_users": "--users (log users)"}


def _check_settings(study: optuna.Study, setup: _Setup, where: str) -> None:
    """Store the settings in a new study; refuse (one line) a study made with other settings."""
    stored = study.user_attrs.get("driftrec")
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise ConfigError(f"study '{study.study_name}' in {where} was not made by driftrec tune: "
                              "choose another --study")
        study.set_user_attr("driftrec", setup.settings)
        return
    for key, value in setup.settings.items():
        if stored.get(key) != value:
            raise ConfigError(f"study '{study.study_name}' in {where} was created with {_SETTING_NAMES.get(key, key)} "
                              f"{_text(stored.get(key))}, not {_text(value)}: resume it with its settings or "
                              "choose another --study")


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}" if value else "none"
    return repr(value)


# ------------------------------------------------------------------------------------- storage
def parse_storage_url(text: str) -> Any:
    """``--storage`` -> a SQLAlchemy URL of a PostgreSQL database; anything else is a one-line ConfigError."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = _hide_password(text)
    expected = "expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise ConfigError(f"--storage '{shown}' is not a database URL: {expected}") from None
    backend = url.get_backend_name()
    if backend == "postgres":
        raise ConfigError(f"--storage '{shown}': write postgresql://, not postgres://")
    if backend != "postgresql":
        raise ConfigError(f"--storage '{shown}': only PostgreSQL is supported ({expected}); leave --storage out for "
                          "the local journal file (SQLite is not safe for concurrent workers)")
    if not url.database:
        raise ConfigError(f"--storage '{shown}' names no database: {expected}")
    if not url.host and "host" not in url.query:
        raise ConfigError(f"--storage '{shown}' names no host: {expected}")
    if url.drivername == "postgresql":  # the driver driftrec installs (SQLAlchemy 2.0 would pick psycopg2)
        url = url.set(drivername="postgresql+psycopg")
    return url


def _hide_password(text: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)


class _Store:
    """Where a study lives and how its workers take turns (see the module doc)."""

    storage: BaseStorage
    where: str  # for messages and study.yaml
    poll: float  # seconds between looks at other workers' running trials

    def reserve(self) -> contextlib.AbstractContextManager[None]:
        """The study's reservation lock: held while counting trials and taking one."""
        raise NotImplementedError

    def alive(self, worker: str) -> contextlib.AbstractContextManager[None]:
        """Announce ``worker`` as alive while the context is open."""
        return contextlib.nullcontext()

    def heartbeat(self, study: optuna.Study, trial: Trial) -> contextlib.AbstractContextManager[None]:
        """Keep ``trial`` marked as alive while the context is open."""
        return contextlib.nullcontext()

    def fail_stale(self, study: optuna.Study) -> None:
        """Fail and re-queue the running trials of dead workers (call while holding :meth:`reserve`)."""
        raise NotImplementedError


class _JournalStore(_Store):
    """Optuna's journal file in the study folder; liveness by ``flock`` (released when a process dies)."""

    def __init__(self, study_dir: Path):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        self.study_dir = study_dir
        path = study_dir / "journal.log"
        self.storage = JournalStorage(JournalFileBackend(str(path)))
        self.where = str(path)
        self.poll = POLL

    @contextlib.contextmanager
    def reserve(self) -> Iterator[None]:
        import fcntl

        with open(self.study_dir / ".reserve.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _lock_path(self, worker: str) -> Path:
        return self.study_dir / "workers" / f"{worker}.lock"

    @contextlib.contextmanager
    def alive(self, worker: str) -> Iterator[None]:
        import fcntl

        path = self._lock_path(worker)
        path.parent.mkdir(exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # held until this process ends, however it ends
            try:
                yield
            finally:
                path.unlink(missing_ok=True)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _is_alive(self, worker: str) -> bool:
        import fcntl

        path = self._lock_path(worker)
        try:
            handle = open(path)  # noqa: SIM115 (closed below on every path)
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        path.unlink(missing_ok=True)
        return False

    def fail_stale(self, study: optuna.Study) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get("worker")
            if worker is None or self._is_alive(str(worker)):
                continue
            try:
                self.storage.set_trial_state_values(_trial_id(self.storage, study, trial.number), TrialState.FAIL)
            except UpdateFinishedTrialError:  # it ended after all
                continue
            retry_trial(study, self.storage.get_trial(_trial_id(self.storage, study, trial.number)))


class _PostgresStore(_Store):
    """Optuna's RDBStorage with a heartbeat; turns by a PostgreSQL advisory lock keyed by the study."""

    def __init__(self, url_text: str, study: str, heartbeat: int):
        import sqlalchemy
        from optuna.storages import RDBStorage
        from sqlalchemy.pool import NullPool

        url = parse_storage_url(url_text)
        self.where = url.render_as_string(hide_password=True)
        self.poll = min(float(heartbeat), POLL)
        self.heartbeat_interval = heartbeat
        self._key = _lock_key(f"driftrec-tune:{study}")
        try:
            self.engine = sqlalchemy.create_engine(url, poolclass=NullPool)
            # Optuna creates its tables on first use; workers starting together on a fresh
            # database would race to create them, so they take turns.
            with self._locked(_lock_key("driftrec-tune:create-tables")):
                self.storage = RDBStorage(
                    url.render_as_string(hide_password=False), engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=heartbeat, grace_period=STALE_BEATS * heartbeat,
                    heartbeat_stale_trial_callback=retry_trial)
        except (ImportError, sqlalchemy.exc.NoSuchModuleError) as err:
            raise ConfigError(f"--storage {self.where}: the PostgreSQL driver is missing ({err}); "
                              "pip install 'psycopg[binary]'") from None
        except sqlalchemy.exc.SQLAlchemyError as err:
            first = str(getattr(err, "orig", None) or err).strip().splitlines()
            raise ConfigError(f"cannot use --storage {self.where}: {first[0] if first else type(err).__name__}") \
                from None

    @contextlib.contextmanager
    def _locked(self, key: int) -> Iterator[None]:
        import sqlalchemy

        with self.engine.begin() as conn:  # the lock ends with the transaction, or with a dead worker's connection
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield

    def reserve(self) -> contextlib.AbstractContextManager[None]:
        return self._locked(self._key)

    @contextlib.contextmanager
    def heartbeat(self, study: optuna.Study, trial: Trial) -> Iterator[None]:
        trial_id = _trial_id(self.storage, study, trial.number)
        self.storage.record_heartbeat(trial_id)  # before the lock is released: a trial never runs unbeaten
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_interval):
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as err:  # noqa: BLE001 (a lost connection must not kill the trial)
                    print(f"driftrec: warning: heartbeat of trial {trial.number} failed: {err}", file=sys.stderr)

        thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def fail_stale(self, study: optuna.Study) -> None:
        from optuna.storages import fail_stale_trials

        fail_stale_trials(study)  # sets FAIL and calls retry_trial for each stale trial


def _lock_key(text: str) -> int:
    """A signed 64-bit advisory lock key from a name."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def _trial_id(storage: BaseStorage, study: optuna.Study, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


def open_store(config: TuneConfig) -> _Store:
    """The storage of ``config``'s study: the journal file in its folder, or its PostgreSQL URL."""
    if config.storage is None:
        config.study_dir.mkdir(parents=True, exist_ok=True)
        return _JournalStore(config.study_dir)
    return _PostgresStore(config.storage, config.study, config.heartbeat)


def retry_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Re-queue a trial whose worker died (a WAITING copy with the same parameters) unless it was
    re-queued :data:`MAX_RETRY` times already. The copy's ``retry_of`` names the trial it replaces."""
    from optuna.trial import TrialState, create_trial

    retries = int(trial.user_attrs.get("retries", 0))
    if retries >= MAX_RETRY:
        return
    attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("worker", "error", "seconds")}
    attrs.update(retry_of=trial.number, retries=retries + 1)
    study.add_trial(create_trial(state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
                                 user_attrs=attrs))


def counted_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count toward ``--trials``: a failed trial that was re-queued is replaced by its copy."""
    replaced = {t.user_attrs.get("retry_of") for t in trials}
    return [t for t in trials if t.number not in replaced]


# ------------------------------------------------------------------------------------- workers
@contextlib.contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Optuna's INFO lines and experimental-feature warnings off: driftrec prints one line per trial."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # SB3's advice on batch sizes and target updates that do not fit n_envs: sampled combinations often don't
        warnings.filterwarnings("ignore", message="You have specified a mini-batch size")
        warnings.filterwarnings("ignore", message="The number of environments used is greater than the target")
        # driftrec keeps the heartbeat itself (ask/tell under the reservation lock, see the module doc)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        try:
            yield
        finally:
            optuna.logging.set_verbosity(level)


def _open_study(setup: _Setup, store: _Store) -> optuna.Study:
    """Create or load the study (checking its settings) with the median pruner (RL)."""
    import optuna

    space = setup.space
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if setup.rl and space.evaluations > 1:
        # steps are validations counted from 1, and MedianPruner prunes from step n_warmup_steps on:
        # + 1 keeps the first n_warmup_steps validations of every trial safe
        pruner = optuna.pruners.MedianPruner(n_startup_trials=space.pruner_startup_trials,
                                             n_warmup_steps=space.pruner_warmup_steps + 1)
    with store.reserve():
        study = optuna.create_study(storage=store.storage, study_name=setup.config.study,
                                    sampler=_sampler(setup, 0), pruner=pruner, direction=space.direction,
                                    load_if_exists=True)
        _check_settings(study, setup, store.where)
    return study


def _sampler(setup: _Setup, number: int) -> optuna.samplers.BaseSampler:
    """The TPE sampler of trial ``number``, seeded by (``--seed``, ``number``).

    A sampler per trial rather than per worker: TPE keeps no state but its random generator (it
    reads the history from the storage), and seeding by the trial number gives every trial its own
    stream whichever worker or machine takes it, so two machines started together never propose
    the same startup trials, a resumed study never repeats its first ones, and one worker's study
    is reproducible. ``constant_liar`` counts the trials running elsewhere as bad, which spreads
    concurrent proposals.
    """
    import optuna

    seed = int(np.random.SeedSequence([setup.config.seed, number]).generate_state(1)[0])
    return optuna.samplers.TPESampler(n_startup_trials=setup.space.startup_trials, seed=seed, multivariate=True,
                                      constant_liar=True)


def run_worker(config: TuneConfig, index: int = 0) -> int:
    """Run trials of ``config``'s study until it has ``config.trials``; returns the trials this worker ran.

    Every worker process of a study (started by :func:`run_tune` or on another machine) runs this.
    """
    setup = _setup(config)
    with _optuna_quiet():
        store = open_store(config)
        study = _open_study(setup, store)
        objective = _objective(setup)
        ran = 0
        with store.alive(worker := worker_id()):
            while True:
                trial = _take_trial(study, store, setup, worker)
                if trial is None:
                    break
                if trial is _WAIT:
                    time.sleep(store.poll)
                    continue
                with store.heartbeat(study, trial):
                    _run_trial(study, store, trial, objective, config, index)
                ran += 1
    return ran


def worker_id(pid: int | None = None) -> str:
    """``HOST-PID-RANDOM``: names a worker process in its trials (user attribute ``worker``)."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())
    return f"{host}-{pid if pid is not None else os.getpid()}-{uuid.uuid4().hex[:6]}"


_WAIT: Any = object()  # _take_trial: others' trials are still running


def _take_trial(study: optuna.Study, store: _Store, setup: _Setup, worker: str) -> Trial | None:
    """The next trial of this worker (a re-queued one first), :data:`_WAIT` while the study is full
    but others still run trials, or None when the study is finished."""
    from optuna.trial import TrialState

    with store.reserve():
        store.fail_stale(study)
        every = study.get_trials(deepcopy=False)
        trials = counted_trials(every)
        states = Counter(t.state for t in trials)
        if states[TrialState.WAITING] or len(trials) < setup.config.trials:
            # under the lock no driftrec worker adds a trial, so the new one's number is len(every)
            study.sampler = _sampler(setup, len(every))
            trial = study.ask()  # pops a WAITING trial if there is one
            trial.set_user_attr("worker", worker)
            return trial
        return _WAIT if states[TrialState.RUNNING] else None


def _run_trial(study: optuna.Study, store: _Store, trial: Trial, objective: Callable[[Trial], float],
               config: TuneConfig, index: int) -> None:
    """Run one trial and record how it ended."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    start = time.perf_counter()
    trial_id = _trial_id(store.storage, study, trial.number)

    def finish(state: TrialState, value: float | None = None, error: str | None = None) -> bool:
        """Record the end; False when the trial had already ended (failed and re-queued by another
        worker that found this one's heartbeat stale)."""
        try:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
            if error is not None:
                trial.set_user_attr("error", error)
            study.tell(trial, value, state=state)
            told = True
        except (UpdateFinishedTrialError, ValueError):  # ValueError: optuna's "Cannot tell a FAIL trial"
            if not store.storage.get_trial(trial_id).state.is_finished():
                raise
            told = False
        if not config.quiet:
            frozen = store.storage.get_trial(trial_id)
            what = {TrialState.COMPLETE: f"value {frozen.value:.6g}" if frozen.value is not None else "complete",
                    TrialState.PRUNED: f"pruned at validation {frozen.last_step}",
                    TrialState.FAIL: f"failed: {error}"}.get(frozen.state, frozen.state.name.lower())
            if not told:
                what = "was failed and re-queued by another worker meanwhile (its heartbeat had stopped)"
            who = f", worker {index}" if config.workers > 1 else ""
            print(f"{config.study}: trial {trial.number} {what} ({time.perf_counter() - start:.1f} s{who})",
                  flush=True)
        return told

    try:
        value = objective(trial)
    except optuna.TrialPruned:
        finish(TrialState.PRUNED)
    except KeyboardInterrupt:
        with store.reserve():  # fail and re-queue in one turn: the count never drops below the study's
            if finish(TrialState.FAIL, error="interrupted"):
                retry_trial(study, store.storage.get_trial(trial_id))
        raise
    except TRIAL_ERRORS as err:
        finish(TrialState.FAIL, error=" ".join(f"{type(err).__name__}: {err}".split())[:500])
    except BaseException as err:
        finish(TrialState.FAIL, error=" ".join(f"{type(err).__name__}: {err}".split())[:500])
        raise
    else:
        if math.isfinite(value):
            finish(TrialState.COMPLETE, value)
        else:
            finish(TrialState.FAIL, error=f"the objective is {value}")


def _worker_main(config: TuneConfig, index: int, threads: int) -> None:
    """Entry point of a worker process started by :func:`run_tune` (spawned: a fresh interpreter)."""
    import torch

    torch.set_num_threads(threads)
    try:
        run_worker(config, index)
    except KeyboardInterrupt:
        sys.exit(130)
    except ConfigError as err:
        print(f"driftrec: error: worker {index}: {err}", file=sys.stderr)
        sys.exit(2)


# ------------------------------------------------------------------------------------- objectives
def _objective(setup: _Setup) -> Callable[[Trial], float]:
    return _rl_objective(setup) if setup.rl else _supervised_objective(setup)


def _trial_dir(setup: _Setup, trial: Trial) -> Path:
    return setup.config.study_dir / "trials" / f"{trial.number:04d}"


def _rl_objective(setup: _Setup) -> Callable[[Trial], float]:
    """Train with the trial's hyperparameters; report each validation; the last one is the value."""
    import optuna

    from driftrec.experiments.train import RLTrainConfig, run_train

    config = setup.config
    timesteps = int(setup.base_hp["n_timesteps"])

    def objective(trial: Trial) -> float:
        hp = setup.trial_settings(setup.space.sample(trial))
        reporter = _validation_reporter(trial)
        result = run_train(RLTrainConfig(
            config.algo, _trial_dir(setup, trial), preset=config.preset, overrides=dict(config.overrides),
            hyperparams=hp, timesteps=timesteps, users=int(setup.base_hp["n_envs"]), seed=config.seed,
            eval_freq=max(timesteps // setup.space.evaluations, 1), eval_users=config.eval_users, checkpoint_freq=0,
            overwrite=True), callbacks=[reporter])
        trial.set_user_attr("timesteps", int(result.spec["timesteps"]))
        if reporter.pruned:  # type: ignore[attr-defined]
            raise optuna.TrialPruned()
        evaluations = result.evaluations
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


def _supervised_objective(setup: _Setup) -> Callable[[Trial], float]:
    """Train on the study's log; the held-out metric is the value."""
    from driftrec.agents.supervised import train_supervised

    config = setup.config
    logs = config.study_dir / "logs.parquet"

    def objective(trial: Trial) -> float:
        params = setup.trial_settings(setup.space.sample(trial))
        metrics = train_supervised(config.algo, logs, _trial_dir(setup, trial), seed=config.seed,
                                   preset=config.preset, **dict(config.overrides), **params)
        summary = metrics["summary"]
        trial.set_user_attr("metrics", {k: v for k, v in summary.items() if isinstance(v, (int, float)) or v is None})
        value = summary.get(setup.space.metric)
        if value is None:
            raise ValueError(f"the held-out {setup.space.metric} is undefined (too few clicks or purchases in the "
                             "held-out examples)")
        return float(value)

    return objective


def simulate_log(setup: _Setup, path: Path) -> int:
    """The logging policy's events of the study's log users (seeds ``seed + i``), written atomically
    to ``path`` (as compare's logs); returns the number of events."""
    from driftrec.agents.registry import make_policy
    from driftrec.envs.events import EventRecorder, EventWriter
    from driftrec.envs.model import build_model
    from driftrec.envs.rollout import rollout, train_seeds

    users = int(setup.settings["log_users"])
    model = build_model(setup.sim)
    policy = make_policy("logging", model, users, setup.config.seed)
    recorder = EventRecorder(model)
    with EventWriter(path) as writer:
        rollout(model, policy, train_seeds(setup.config.seed, users), recorder=recorder)
        writer.write(recorder.to_table())
        writer.write_users(recorder.users_table())
    return int(writer.n_events)


# ------------------------------------------------------------------------------------- the job
def run_tune(config: TuneConfig) -> TuneResult:
    """Run (or resume) ``config``'s study to ``config.trials`` trials and export its best and figures.

    User mistakes (unknown algorithm, preset, key or search-space parameter, a malformed or
    unreachable storage URL, a study made with other settings) raise one-line ConfigErrors before
    any trial starts. With ``workers > 1`` the workers are spawned interpreters: a script calling
    this must guard its entry point with ``if __name__ == "__main__":`` (multiprocessing's rule).
    """
    import multiprocessing

    start = time.perf_counter()
    setup = _setup(config)
    study_dir = config.study_dir
    if study_dir.exists() and not study_dir.is_dir():
        raise ConfigError(f"cannot use study folder '{study_dir}': it is a file")
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create study folder '{study_dir}': {err.strerror or err}") from None
    with _optuna_quiet():
        store = open_store(config)
        study = _open_study(setup, store)
        if not setup.rl:
            logs = study_dir / "logs.parquet"
            with store.reserve():  # one worker simulates; the others find the file
                if not logs.is_file():
                    began = time.perf_counter()
                    events = simulate_log(setup, logs)
                    if not config.quiet:
                        print(f"{config.study}: simulated the log of {setup.settings['log_users']} users under the "
                              f"logging policy ({events} events, {time.perf_counter() - began:.1f} s)", flush=True)
        _write_yaml(study_dir / "study.yaml", {"study": config.study, "storage": store.where,
                                               "space": str(setup.space.path), **setup.settings})
        done = counted_trials(study.get_trials(deepcopy=False))
        if not config.quiet:
            todo = max(config.trials - len(done), 0)
            print(f"{config.study}: {len(done)} of {config.trials} trials in {store.where}; "
                  + (f"running {todo} more with {config.workers} worker{'s' * (config.workers > 1)}" if todo
                     else "nothing to run"), flush=True)

    failed: list[str] = []
    if config.workers == 1:
        ran = run_worker(config, 0)
    else:
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch or database state
        threads = max(1, (os.cpu_count() or 1) // config.workers)
        procs = [ctx.Process(target=_worker_main, args=(config, i, threads), name=f"driftrec-tune-{i}")
                 for i in range(config.workers)]
        for proc in procs:
            proc.start()
        try:
            for proc in procs:
                proc.join()
        except KeyboardInterrupt:  # the workers got the same SIGINT: let them re-queue their trials
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.terminate()
            raise
        failed = [f"worker {i} exited with status {p.exitcode}" for i, p in enumerate(procs) if p.exitcode]
        ours = tuple(worker_id(p.pid).rsplit("-", 1)[0] + "-" for p in procs)  # HOST-PID- of each child
        ran = sum(1 for t in study.get_trials(deepcopy=False)
                  if t.state.is_finished() and str(t.user_attrs.get("worker", "")).startswith(ours))

    with _optuna_quiet():
        with store.reserve():
            store.fail_stale(study)  # a worker that died here leaves no RUNNING trial behind
        result = export_study(study, setup, time.perf_counter() - start)
    result.ran, result.failed_workers = ran, failed
    return result


def export_study(study: optuna.Study, setup: _Setup, wall_s: float = 0.0) -> TuneResult:
    """Write ``trials.csv``, ``best.yml`` and the figures into the study folder (each atomically)."""
    from optuna.trial import TrialState

    study_dir = setup.config.study_dir
    trials = counted_trials(study.get_trials(deepcopy=False))
    states = Counter(t.state.name for t in trials)
    files: list[Path] = []
    notes: list[str] = []
    if trials:
        frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "datetime_start",
                                              "duration"))
        files.append(write_text(study_dir / "trials.csv", frame.to_csv(index=False)))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = {}
    if complete:
        best = study.best_trial
        best_trial, best_value, best_params = best.number, float(best.value), setup.space.values(best.params)
        files.append(_write_best(study_dir / "best.yml", setup, best, best_params, len(complete)))
    else:
        notes.append("no trial completed: no best.yml")
    files.extend(_figures(study, study_dir, len(complete), notes))
    return TuneResult(study_dir=study_dir, states=dict(states), ran=0, best_trial=best_trial, best_value=best_value,
                      best_params=best_params, files=files, notes=notes, wall_s=wall_s, failed_workers=[])


def _write_best(path: Path, setup: _Setup, best: FrozenTrial, values: dict[str, Any], complete: int) -> Path:
    """``best.yml``: per preset rl-zoo3 keys (RL) or SupervisedConfig keys (supervised)."""
    config, space = setup.config, setup.space
    header = [f"# driftrec tune {config.algo}: study '{config.study}', best of {complete} complete trials "
              f"(trial {best.number}), {space.metric} {best.value:.6g} ({space.direction})",
              f"# preset {config.preset}" + (f", simulator keys {_text(setup.settings['overrides'])}"
                                             if setup.settings["overrides"] else "") + f", seed {config.seed}; "
              f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}"]
    settings = setup.trial_settings(values)
    if setup.rl:
        header.append(f"# driftrec train {config.algo} --preset {config.preset} --hyperparams {path.name} ...; "
                      f"compare: hyperparams: {{{config.algo}: {path}}}")
        from driftrec.agents.rl import parse_policy_kwargs

        if "policy_kwargs" in settings:
            settings["policy_kwargs"] = parse_policy_kwargs(settings["policy_kwargs"])
        data: dict[str, Any] = {config.preset: plain(settings)}
    else:
        header.append(f"# SupervisedConfig keys: compare's `supervised:` mapping, or driftrec train {config.algo} "
                      "--set KEY=VALUE ...")
        data = plain(settings)
    return write_text(path, "\n".join(header) + "\n" + _dump_yaml(data))


def _figures(study: optuna.Study, study_dir: Path, complete: int, notes: list[str]) -> list[Path]:
    """Optimisation history (>= 1 complete trial) and parameter importances (>= 2)."""
    if complete < 1:
        return []
    import matplotlib.pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as vis

    files = []
    ax = vis.plot_optimization_history(study)
    files.append(_save_figure(ax.figure, study_dir / "history.png"))
    plt.close(ax.figure)
    if complete < 2:
        notes.append("parameter importances need at least 2 complete trials: no importances.png")
        return files
    try:
        # PED-ANOVA: no scikit-learn needed (Optuna's default fANOVA needs it)
        ax = vis.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError, ZeroDivisionError) as err:
        notes.append(f"parameter importances could not be computed ({err}): no importances.png")
        return files
    files.append(_save_figure(ax.figure, study_dir / "importances.png"))
    plt.close(ax.figure)
    return files


def _save_figure(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return path


class _Dumper(yaml.SafeDumper):
    """Mappings in block style, lists on one line (``net_arch: [64, 64]``), as the packaged YAML."""


_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                                                            flow_style=True))


def _dump_yaml(data: Mapping[str, Any]) -> str:
    return yaml.dump(plain(dict(data)), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def _write_yaml(path: Path, data: Mapping[str, Any]) -> Path:
    return write_text(path, _dump_yaml(data))


# ------------------------------------------------------------------------------------- CLI
def add_parser(subparsers: Any) -> None:
    """Register ``driftrec tune`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "tune", help="tune hyperparameters with Optuna (ppo, dqn, mlp, gru, transformer)",
        description="Run or resume an Optuna study (TPE sampler, median pruning on the validations during training) "
                    "over a YAML search space; export the best hyperparameters to OUT/STUDY/best.yml (for "
                    "`driftrec train --hyperparams` and compare) with the optimisation history and parameter "
                    "importances. --trials is the study's total: re-running the same command finishes it.")
    p.add_argument("algo", choices=TUNABLE, metavar="ALGO", help=f"one of: {', '.join(TUNABLE)}")
    p.add_argument("--study", required=True, help="study name (the folder OUT/STUDY and the name in the storage)")
    p.add_argument("--trials", required=True, type=positive_int, help="trials of the study in total (all workers)")
    p.add_argument("--preset", default="default", help="simulator preset (default: default)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="postgresql://USER[:PASSWORD]@HOST[:PORT]/DB shared by workers on many machines "
                        "(default: the journal file OUT/STUDY/journal.log)")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes started here (default: 1)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the sampler, agents and users (default: 0)")
    p.add_argument("--timesteps", type=positive_int, default=None,
                   help="RL: training user-steps per trial (default: the preset's n_timesteps)")
    p.add_argument("--users", type=positive_int, default=None,
                   help=f"RL: users stepped together, n_envs (default: the hyperparameters'); supervised: users of "
                        f"the logging policy's event log (default: {DEFAULT_LOG_USERS})")
    p.add_argument("--eval-users", type=positive_int, default=None,
                   help=f"RL: validation users of every trial (default: {DEFAULT_EVAL_USERS})")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"parent of the study folder (default: {DEFAULT_OUT})")
    p.add_argument("--space", type=Path, default=None, metavar="FILE",
                   help="search space YAML (default: the packaged experiments/search_spaces/ALGO.yml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a SimConfig key (repeatable; values parsed as YAML)")
    p.add_argument("--heartbeat", type=positive_int, default=DEFAULT_HEARTBEAT, metavar="SECONDS",
                   help=f"PostgreSQL: seconds between heartbeats of a running trial; a trial is failed and re-queued "
                        f"after {STALE_BEATS} missed beats (default: {DEFAULT_HEARTBEAT})")
    p.set_defaults(func=run_tune_cli)


def run_tune_cli(args: argparse.Namespace) -> int:
    """``driftrec tune``: run the study, print its summary; 1 when every trial failed or a worker died
    before the study finished."""
    if args.algo in SUPERVISED and args.eval_users is not None:
        raise CLIError(f"--eval-users is for RL agents (ppo, dqn), not the supervised model {args.algo}")
    if args.storage is not None:
        parse_storage_url(args.storage)  # a malformed URL fails before SB3 and torch are imported
    config = TuneConfig(
        algo=args.algo, study=args.study, trials=args.trials, preset=args.preset,
        overrides=parse_overrides(args.overrides), storage=args.storage, workers=args.workers, seed=args.seed,
        timesteps=args.timesteps, users=args.users, eval_users=args.eval_users or DEFAULT_EVAL_USERS, out=args.out,
        space=args.space, heartbeat=args.heartbeat)
    result = run_tune(config)
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"study {escape(config.study)}: {config.algo} on {escape(config.preset)}")
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("trials", ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.states.items())) or "none")
    table.add_row("run here", f"{result.ran} trials in {result.wall_s:.1f} s")
    if result.best_trial is not None:
        table.add_row("best", f"trial {result.best_trial}: {result.best_value:.6g}")
        for key, value in result.best_params.items():
            table.add_row(f"  {escape(key)}", escape(_fmt(value)))
    table.add_row("files", escape(", ".join(p.name for p in result.files)) + f" in {escape(str(result.study_dir))}")
    Console().print(table)
    for note in result.notes:
        print(f"driftrec: note: {note}", file=sys.stderr)
    if result.states and not (result.states.get("COMPLETE") or result.states.get("PRUNED")):
        print(f"driftrec: every trial failed; see the 'error' column of {result.study_dir / 'trials.csv'}",
              file=sys.stderr)
        return 1
    if result.failed_workers:
        left = config.trials - sum(n for s, n in result.states.items() if s in ("COMPLETE", "PRUNED", "FAIL"))
        print(f"driftrec: {'; '.join(result.failed_workers)}" + (f"; {left} trials left: run the same command "
                                                                  "again to finish the study" if left > 0 else ""),
              file=sys.stderr)
        return 1
    return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
