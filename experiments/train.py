"""``driftrec train`` and ``driftrec evaluate``: train an agent, then judge it on held-out users.

``driftrec train ppo|dqn|a2c|qrdqn|maskable-ppo --preset P --out runs/NAME`` trains an SB3
agent (:func:`run_train`) on the batched simulator and writes into ``runs/NAME/``:

| file | what |
|---|---|
| ``model.zip`` | the trained SB3 model (``driftrec.agents.rl.load_agent``) |
| ``spec.yaml`` | resolved SimConfig, preset, algorithm, hyperparameters, spaces, layout, versions, wall time |
| ``evaluations.npz`` | periodic validation: ``timesteps``, ``results`` (reward per user), ``ep_lengths`` |
| ``best_model.zip`` | the model of the best validation |
| ``checkpoints/`` | ``model_<timesteps>_steps.zip`` every ``--checkpoint-freq`` timesteps |
| ``tb/`` | TensorBoard logs (``tensorboard --logdir runs/NAME/tb``) |

``--warm-start runs/MLP [--logs LOGS]`` first distils a trained supervised model into the agent
(:func:`driftrec.agents.warm_start.warm_start`: on the log's requests, or without ``--logs`` on
the teacher's own recommendations to training users), validates the distilled agent once before
the first step (so it can be the best checkpoint) and records what it did in ``spec.yaml``
(``warm_start``); the distillation's time counts in the wall time.

Users (see :mod:`driftrec.agents.rl`): training users ``SEED + i``, validation users (the periodic
evaluation) ``SEED + 3*10**9 + i``; ``driftrec evaluate --seed S`` judges on the evaluation users
``S + 10**9 + i``, whom training never meets.

``driftrec train mlp|gru|transformer --logs FILE --out runs/NAME`` trains a supervised model on
an event log (:func:`driftrec.agents.supervised.train_supervised`).

Both go through :func:`train_policy`, the one entry point that trains one policy from a resolved
SimConfig into a run folder: compare's cells, tuning's trials and notebooks call it too.

``driftrec evaluate runs/NAME [--preset P] --users N`` loads a model with its spec, checks that
the requested environment has the spaces it was trained on, and prints reward per user with its
95% bootstrap CI and the other metrics of :func:`driftrec.agents.evaluate.evaluate_policy`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import difflib
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from driftrec.agents.evaluate import EvalResult, evaluate_policy
from driftrec.envs.config import REQUIRED, Config, ConfigError, SimConfig, knob, parse_sets
from driftrec.envs.presets import preset_config, resolve_preset
from driftrec.envs.rollout import train_seeds
from driftrec.envs.user_model import build_user_model
from driftrec.experiments.artifacts import plain
from driftrec.experiments.cliutil import CLIError, check_output, int_arg, non_negative_int, positive_int

if TYPE_CHECKING:  # torch and SB3 take seconds to import: `driftrec presets` should not wait for them
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

RL_ALGOS = ("ppo", "dqn", "a2c", "qrdqn", "maskable-ppo")  # driftrec.agents.rl.ALGORITHMS, without importing SB3
SUPERVISED = ("mlp", "gru", "transformer")
DEFAULT_USERS = 64  # n_envs when the hyperparameters name none
DEFAULT_EVALUATIONS = 10  # validations per run when --eval-freq is not given
SPEC_VERSION = 1
SB3_SEED = int_arg(0, 2**31, "an integer seed")  # SB3 seeds numpy's legacy RandomState too


@dataclasses.dataclass(frozen=True)
class RLTrainConfig(Config):
    """One RL training run: the CLI's ``driftrec train ALGO`` flags, for tests, tuning and notebooks."""

    label = "RL training"

    algo: str = knob(REQUIRED, "RL algorithm", choices=RL_ALGOS)
    out: Path | str = knob(REQUIRED, "run folder (created); see the module doc for what it holds")
    preset: str = knob("default", "simulator preset (a name or a preset YAML file)")
    overrides: Mapping[str, Any] = knob({}, "SimConfig keys over the preset")
    hyperparams: Mapping[str, Any] = knob({}, "hyperparameters over the file's")
    hyperparams_file: Path | None = knob(None, "hyperparameter YAML; None: the packaged agents/hyperparams/<algo>.yml")
    timesteps: int | None = knob(None, "training budget (user-steps); None: the hyperparameters' n_timesteps", 1)
    users: int | None = knob(None, f"users stepped together (n_envs); None: the hyperparameters' n_envs or "
                                   f"{DEFAULT_USERS}", 1)
    seed: int = knob(0, "seeds SB3 (torch, exploration) and the training users (SEED + i)", 0)
    eval_freq: int | None = knob(None, f"timesteps between validations; None: {DEFAULT_EVALUATIONS} per run; 0: none",
                                 0)
    eval_users: int = knob(256, "validation users (SEED + 3*10**9 + i), the same at every validation", 1)
    checkpoint_freq: int | None = knob(None, "timesteps between checkpoints; None: as eval_freq; 0: none", 0)
    progress_bar: bool = knob(False, "SB3's tqdm/rich bar on stderr")
    overwrite: bool = knob(False, "replace a finished run in out")
    verbose: int = knob(0, "SB3 verbosity", 0, 2)
    warm_start: Path | str | None = knob(None, "a supervised model (its run folder or model.pt) to distil first")
    warm_start_logs: Path | str | None = knob(None, "the log it distils on (None: the teacher serves training users)")
    warm_start_steps: int = knob(500, "distillation gradient steps (driftrec.agents.warm_start)", 1)


@dataclasses.dataclass
class TrainResult:
    """What :func:`run_train` made: the trained agent, its spec (as written to ``spec.yaml``) and the folder."""

    agent: BaseAlgorithm
    spec: dict[str, Any]
    out: Path

    @property
    def evaluations(self) -> dict[str, np.ndarray]:
        """The periodic validations (``evaluations.npz``), empty when there were none."""
        path = self.out / "evaluations.npz"
        if not path.is_file():
            return {}
        with np.load(path) as data:
            return {k: data[k] for k in data.files}


def _final_eval_class(algo: str) -> type[EvalCallback]:
    """SB3's EvalCallback (sb3-contrib's maskable one for MaskablePPO) that also validates once
    when training ends, so the last point of the learning curve is the saved model (SB3 alone
    evaluates every ``eval_freq`` calls only), and with ``at_start`` once before the first step
    (a warm-started agent: the distilled agent is a candidate for the best checkpoint)."""
    if algo == "maskable-ppo":
        from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback as base
    else:
        from stable_baselines3.common.callbacks import EvalCallback as base

    class FinalEval(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, at_start: bool = False, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.at_start = at_start

        def _on_training_start(self) -> None:
            super()._on_training_start()
            if self.at_start and not self.evaluations_timesteps:
                self._evaluate_now()

        def _on_training_end(self) -> None:
            if self.eval_freq > 0 and (not self.evaluations_timesteps
                                       or self.evaluations_timesteps[-1] < self.num_timesteps):
                self._evaluate_now()

        def _evaluate_now(self) -> None:
            freq, self.eval_freq = self.eval_freq, 1  # _on_step evaluates when n_calls % eval_freq == 0
            try:
                self._on_step()
            finally:
                self.eval_freq = freq

    return FinalEval


def run_train(config: RLTrainConfig, callbacks: Sequence[BaseCallback] = (), *,
              sim_config: SimConfig | None = None) -> TrainResult:
    """Train ``config.algo`` and write the run folder; ``callbacks`` join SB3's (e.g. tuning's pruning).

    ``sim_config`` is the simulator, resolved by the caller (None: ``config.preset`` with
    ``config.overrides``); ``config.preset`` still names the hyperparameters' section, and
    ``spec.yaml`` records it with ``config.overrides``, from which ``driftrec evaluate`` rebuilds
    the simulator. User mistakes (unknown preset, config key or hyperparameter, a slate for DQN, a finished run
    in ``out``) raise ConfigError before any training.
    """
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.vec_env import VecMonitor

    from driftrec.agents.rl import (  # SB3 and torch, here and below: only the commands that train or load an agent
        HeldOutUsers,
        build_agent,
        env_spec,
        load_hyperparams,
        resolved_hyperparams,
        save_agent,
        validation_seeds,
    )
    from driftrec.envs.vector import ShopSimVecEnv  # imports SB3

    config.validate()
    algo = config.algo
    cfg = preset_config(config.preset, config.overrides) if sim_config is None else sim_config
    preset = resolve_preset(config.preset)  # a calibrated preset file takes its base preset's hyperparameters
    hp = load_hyperparams(algo, preset.base or preset.name, config.hyperparams_file)
    hp.update(config.hyperparams)
    if config.timesteps is not None:
        hp["n_timesteps"] = config.timesteps
    if config.users is not None:
        hp["n_envs"] = config.users
    hp.setdefault("n_envs", DEFAULT_USERS)
    hp = resolved_hyperparams(algo, hp)
    if "n_timesteps" not in hp:
        raise ConfigError(f"no training budget: give --timesteps or n_timesteps in the {algo} hyperparameters")
    n_timesteps, n_users = int(hp["n_timesteps"]), int(hp["n_envs"])
    eval_freq = config.eval_freq if config.eval_freq is not None else max(n_timesteps // DEFAULT_EVALUATIONS, 1)
    checkpoint_freq = config.checkpoint_freq if config.checkpoint_freq is not None else eval_freq
    teacher = _warm_start_teacher(config)
    out = _prepare_out(Path(config.out), config.overwrite)

    model_sim = build_user_model(cfg)
    venv = VecMonitor(ShopSimVecEnv(n_users, config=cfg, seed=int(train_seeds(config.seed, 1)[0])))
    agent = build_agent(algo, venv, hp, config.seed, tensorboard_log=str(out / "tb"), verbose=config.verbose)
    start = time.perf_counter()
    warm: dict[str, Any] = {}
    if teacher is not None:
        from driftrec.agents.warm_start import warm_start  # SB3 and torch

        warm = warm_start(agent, teacher, model_sim, events=config.warm_start_logs, seed=config.seed,
                          steps=config.warm_start_steps).to_dict()
        warm["model"] = str(config.warm_start)
    steps_per_call = venv.num_envs  # SB3 callbacks count VecEnv steps; every one is n_users user-steps
    cbs: list[BaseCallback] = []
    if eval_freq:
        first = int(validation_seeds(config.seed, 1)[0])
        eval_env = VecMonitor(HeldOutUsers(ShopSimVecEnv(config.eval_users, config=cfg), first))
        cbs.append(_final_eval_class(algo)(eval_env, n_eval_episodes=config.eval_users,
                                           eval_freq=max(eval_freq // steps_per_call, 1), log_path=str(out),
                                           best_model_save_path=str(out), deterministic=True, warn=False,
                                           verbose=config.verbose, at_start=teacher is not None))
    if checkpoint_freq:
        cbs.append(CheckpointCallback(max(checkpoint_freq // steps_per_call, 1), str(out / "checkpoints"),
                                      name_prefix="model"))
    cbs.extend(callbacks)

    agent.learn(total_timesteps=n_timesteps, callback=CallbackList(cbs), progress_bar=config.progress_bar,
                tb_log_name=algo)
    wall = time.perf_counter() - start
    spec = _spec(config, preset.version, out, cfg, env_spec(cfg, model_sim), hp, agent, wall, eval_freq)
    if warm:
        spec["warm_start"] = plain(warm, finite=True)
    save_agent(agent, out, spec)
    return TrainResult(agent, spec, out)


def _warm_start_teacher(config: RLTrainConfig) -> Any:
    """The supervised model ``config.warm_start`` names (None without one); ConfigError, one line
    naming the file, when it or the log is missing or unreadable."""
    if config.warm_start is None:
        if config.warm_start_logs is not None:
            raise ConfigError("a warm-start log was given without a model to warm-start from (--warm-start)")
        return None
    path = Path(config.warm_start)
    file = path / "model.pt" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"warm start: no supervised model at '{file}' (a `driftrec train mlp|gru|transformer` "
                          "run folder or its model.pt)")
    if config.warm_start_logs is not None and not Path(config.warm_start_logs).is_file():
        raise ConfigError(f"warm start: log '{config.warm_start_logs}' does not exist")
    from driftrec.agents.warm_start import load_teacher  # SB3 and torch

    try:
        return load_teacher(file)
    except ConfigError:
        raise
    except Exception as err:  # a truncated or foreign file
        raise ConfigError(f"warm start: cannot read the supervised model '{file}': {err}") from None


def _prepare_out(out: Path, overwrite: bool) -> Path:
    """Create the run folder; refuse (one line) to overwrite a finished run unless asked."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file, not a folder")
    if (out / "spec.yaml").exists():
        if not overwrite:
            raise ConfigError(f"'{out}' already holds a trained model (spec.yaml); "
                              "choose a new --out or pass --overwrite")
        for name in ("spec.yaml", "model.zip", "best_model.zip", "evaluations.npz"):
            (out / name).unlink(missing_ok=True)
        for name in ("checkpoints", "tb"):
            shutil.rmtree(out / name, ignore_errors=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create --out '{out}': {err.strerror or err}") from None
    return out


def _spec(config: RLTrainConfig, preset_version: int, out: Path, cfg: SimConfig, env: dict[str, Any],
          hp: dict[str, Any], agent: BaseAlgorithm, wall: float, eval_freq: int) -> dict[str, Any]:
    """The ``spec.yaml`` mapping (YAML-safe: plain numbers, strings, lists, mappings)."""
    import torch

    last = {}
    path = out / "evaluations.npz"
    if path.is_file():
        with np.load(path) as data:
            rewards = data["results"][-1]
            last = {"timesteps": int(data["timesteps"][-1]), "reward_mean": float(np.mean(rewards)),
                    "reward_std": float(np.std(rewards)), "best_reward_mean": float(np.max(data["results"].mean(1)))}
    return {
        "spec_version": SPEC_VERSION,
        "algo": config.algo,
        "preset": config.preset,
        "preset_version": preset_version,  # as read when training began (a preset file may change meanwhile)
        "overrides": plain(dict(config.overrides)),
        "config": plain(cfg.to_dict()),
        "env": env,
        "hyperparams": plain(hp),
        "seed": config.seed,
        "users": {"train": int(hp["n_envs"]), "train_seeds": f"{config.seed} + i",
                  "validation": config.eval_users if eval_freq else 0,
                  "validation_seeds": f"{config.seed} + 3*10**9 + i"},
        "n_timesteps": int(hp["n_timesteps"]),
        "timesteps": int(agent.num_timesteps),
        "wall_time_s": round(wall, 3),
        "torch_threads": torch.get_num_threads(),
        "eval_freq": eval_freq,
        "last_validation": last,
        "versions": _versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("driftrec", "stable_baselines3", "sb3_contrib", "torch", "gymnasium", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


# ------------------------------------------------------------------------------------- one policy
@dataclasses.dataclass
class TrainedPolicy:
    """What :func:`train_policy` made: the run folder, the trained policy's file and what training cost."""

    kind: str  # the RL algorithm or the supervised model
    out: Path  # the run folder
    wall_s: float  # training's wall time (RL: with a warm start's distillation; supervised: with the features)
    timesteps: int  # user-steps an RL agent trained (0 for a supervised model: its interaction is its log's)
    record: dict[str, Any]  # RL: the spec (``spec.yaml``); supervised: the metrics (``metrics.json``)
    rl: TrainResult | None = None  # RL: run_train's result (the trained SB3 agent); None when supervised

    @property
    def model_path(self) -> Path:
        """The file of the policy to deploy: an RL agent's best validation (``best_model.zip``) when it
        was validated, else its last model (``model.zip``); a supervised model's ``model.pt``."""
        if self.rl is None:
            return self.out / "model.pt"
        best = self.out / "best_model.zip"
        return best if best.is_file() else self.out / "model.zip"

    @property
    def evaluations(self) -> dict[str, np.ndarray]:
        """An RL agent's periodic validations (``evaluations.npz``); empty without them or when supervised."""
        return {} if self.rl is None else self.rl.evaluations

    @property
    def best_validation(self) -> tuple[int, float] | None:
        """(user-steps, validation reward per user) of the best validation, the deployed agent's; None without."""
        curve = self.evaluations
        if not curve:
            return None
        best = int(np.argmax(curve["results"].mean(axis=1)))
        return int(curve["timesteps"][best]), float(curve["results"][best].mean())


def train_policy(kind: str, sim_config: SimConfig | None, out: Path | str, *, preset: str = "default", seed: int = 0,
                 logs: Path | str | None = None, finetune_days: float | None = None,
                 settings: Mapping[str, Any] | None = None,
                 callbacks: Sequence[BaseCallback] = ()) -> TrainedPolicy:
    """Train one policy of ``kind`` into the run folder ``out``: the one entry point of compare's
    cells, tuning's trials, ``driftrec train`` and notebooks.

    - RL (``ppo``, ``dqn``, ``a2c``, ``qrdqn``, ``maskable-ppo``): :func:`run_train` in ``sim_config``
      (required), with ``preset``'s hyperparameters; ``spec.yaml`` records ``preset`` and the keys
      where ``sim_config`` differs from it. ``settings`` are :class:`RLTrainConfig` fields
      (``hyperparams``, ``timesteps``, ``users``, ``eval_freq``, ``eval_users``, ``warm_start``, ...);
      ``logs`` is the log a warm start distils on; ``callbacks`` join SB3's.
    - Supervised (``mlp``, ``gru``, ``transformer``): :func:`driftrec.agents.supervised.train_supervised`
      on the event log ``logs`` (required), ``finetune_days`` as there. ``sim_config`` is the
      simulator the log came from, with ``preset`` its name; None trusts the config the log
      stores (else the 'default' preset), with any SimConfig keys of ``settings`` on top.
      ``settings`` are :class:`driftrec.agents.supervised.SupervisedConfig` keys.

    Mistakes (an unknown kind, a missing log or simulator, an option of the other family) raise
    one-line ConfigErrors.
    """
    if kind not in RL_ALGOS and kind not in SUPERVISED:
        raise ConfigError(f"unknown policy to train '{kind}'; choose one of: {', '.join((*RL_ALGOS, *SUPERVISED))}")
    settings = dict(settings or {})
    if kind in SUPERVISED:
        if logs is None:
            raise ConfigError(f"{kind} trains on an event log: none was given")
        if callbacks:
            raise ConfigError(f"SB3 callbacks are for RL agents, not the supervised model {kind}")
        try:
            from driftrec.agents.supervised import train_supervised
        except ImportError as err:
            raise ConfigError(f"supervised models are not available in this install ({err})") from None
        if sim_config is not None:
            settings.update(sim_config=sim_config, preset=preset)
        metrics = train_supervised(kind, logs, out, finetune_days=finetune_days, seed=seed, **settings)
        return TrainedPolicy(kind, Path(out), float(metrics.get("train_seconds", 0.0)), 0, metrics)
    if finetune_days is not None:
        raise ConfigError(f"finetune_days is for supervised models (mlp, gru, transformer), not {kind}")
    if sim_config is None:
        raise ConfigError(f"{kind} trains in a simulator: give its config")
    base = preset_config(preset).to_dict()
    overrides = {k: v for k, v in sim_config.to_dict().items() if v != base[k]}
    config = RLTrainConfig.from_dict({**settings, "algo": kind, "out": out, "preset": preset, "overrides": overrides,
                                      "seed": seed, "warm_start_logs": logs})
    result = run_train(config, callbacks, sim_config=sim_config)
    return TrainedPolicy(kind, result.out, float(result.spec["wall_time_s"]), int(result.spec["timesteps"]),
                         result.spec, result)


# ------------------------------------------------------------------------------------- evaluate
def run_evaluate(run: str | Path, preset: str | None = None, overrides: Mapping[str, Any] | None = None,
                 users: int = 1000, seed: int = 0, batch: int = 4096,
                 deterministic: bool = True) -> tuple[EvalResult, dict[str, Any], list[str]]:
    """Evaluate the model of ``run`` on ``users`` evaluation users of ``seed``.

    The environment is ``preset`` (default: the training preset) with the training run's
    overrides and then ``overrides`` on top. Returns (EvalResult, spec, notes); raises
    EnvSpecError (a ConfigError, one line naming what differs) when the spaces do not match.
    """
    from driftrec.agents.rl import SB3Policy, check_env_spec, load_agent  # SB3 and torch

    agent, spec = load_agent(run)
    cfg = preset_config(preset or str(spec["preset"]), {**dict(spec.get("overrides") or {}), **dict(overrides or {})})
    notes = check_env_spec(spec, cfg, agent)
    result = evaluate_policy(SB3Policy(agent, deterministic=deterministic), cfg, users, seed, batch=batch)
    return result, spec, notes


# ------------------------------------------------------------------------------------- CLI
def add_parser(subparsers: Any) -> None:
    """Register ``driftrec train`` and ``driftrec evaluate`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "train", help="train an RL agent (ppo, dqn, a2c, qrdqn, maskable-ppo) or a supervised model",
        description="Train an SB3 agent on the batched simulator (validating on held-out users, checkpointing, "
                    "logging to TensorBoard) and write runs/NAME/{model.zip, spec.yaml, evaluations.npz}; or train a "
                    "supervised model (mlp, gru, transformer) on an event log.")
    p.add_argument("algo", choices=(*RL_ALGOS, *SUPERVISED), metavar="ALGO",
                   help=f"one of: {', '.join((*RL_ALGOS, *SUPERVISED))}")
    p.add_argument("--out", required=True, type=Path, help="run folder, e.g. runs/NAME")
    p.add_argument("--torch-threads", type=non_negative_int, default=1,
                   help="torch's CPU threads (default: 1, robust when other work shares the cores, as compare and "
                        "offline run; 0: torch's default, one per core, faster only on an otherwise idle machine)")
    p.add_argument("--seed", type=SB3_SEED, default=0,
                   help="seed of the agent and of the training users SEED + i (default: 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a SimConfig key (e.g. n_items=20) or a hyperparameter (e.g. gamma=0.95); "
                        "repeatable; values parsed as YAML")
    rl = p.add_argument_group("RL agents")
    rl.add_argument("--preset", default="default", help="simulator preset (default: default)")
    rl.add_argument("--timesteps", type=positive_int, default=None,
                    help="training budget in user-steps (default: the hyperparameters' n_timesteps)")
    rl.add_argument("--hyperparams", type=Path, default=None, metavar="FILE",
                    help="hyperparameter YAML, per preset or flat (default: the packaged agents/hyperparams/ALGO.yml)")
    rl.add_argument("--users", type=positive_int, default=None,
                    help=f"users stepped together, n_envs (default: the hyperparameters' n_envs or {DEFAULT_USERS})")
    rl.add_argument("--eval-freq", type=non_negative_int, default=None,
                    help=f"timesteps between validations on held-out users, 0 for none "
                         f"(default: {DEFAULT_EVALUATIONS} per run)")
    rl.add_argument("--eval-users", type=positive_int, default=256, help="validation users (default: 256)")
    rl.add_argument("--checkpoint-freq", type=non_negative_int, default=None,
                    help="timesteps between checkpoints, 0 for none (default: as --eval-freq)")
    rl.add_argument("--warm-start", type=Path, default=None, metavar="MODEL",
                    help="distil a supervised model (its run folder or model.pt) into the agent before RL; with "
                         "--logs on the log it was trained on, else on its own recommendations to training users")
    rl.add_argument("--warm-start-steps", type=positive_int, default=500,
                    help="distillation gradient steps of --warm-start (default: 500)")
    rl.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    sup = p.add_argument_group("supervised models")
    sup.add_argument("--logs", type=Path, default=None, metavar="FILE",
                     help="event log (Parquet) to train on (RL agents: the log --warm-start distils on)")
    sup.add_argument("--finetune-days", type=float, default=None, metavar="D",
                     help="pretrain on the older logs, then fine-tune on the last D days")
    p.set_defaults(func=run_train_cli)

    e = subparsers.add_parser(
        "evaluate", help="evaluate a trained agent on held-out users",
        description="Load runs/NAME/model.zip with its spec.yaml, check the environment matches the one it was "
                    "trained on, and report reward per user (mean, 95% bootstrap CI) and the other metrics on "
                    "the evaluation users SEED + 10**9 + i (never met in training).")
    e.add_argument("run", type=Path, help="run folder written by `driftrec train`")
    e.add_argument("--preset", default=None, help="simulator preset (default: the one the model was trained on)")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a SimConfig key, over the training run's overrides (repeatable)")
    e.add_argument("--users", type=positive_int, default=1000, help="evaluation users (default: 1000)")
    e.add_argument("--seed", type=SB3_SEED, default=0, help="evaluation users SEED + 10**9 + i (default: 0)")
    e.add_argument("--batch", type=positive_int, default=4096, help="users stepped at once (default: 4096)")
    e.add_argument("--stochastic", action="store_true", help="sample actions instead of the deterministic predict")
    e.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the summary as JSON")
    e.set_defaults(func=run_evaluate_cli)


def run_train_cli(args: argparse.Namespace) -> int:
    """``driftrec train``: dispatch to RL training or to the supervised models."""
    overrides = parse_sets(args.overrides)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    if args.algo in SUPERVISED:
        return _train_supervised_cli(args, overrides)
    if args.finetune_days is not None:
        raise CLIError(f"--finetune-days is for supervised models (mlp, gru, transformer), not {args.algo}")
    if args.logs is not None and args.warm_start is None:
        raise CLIError(f"--logs is the training data of supervised models, or with --warm-start the log {args.algo} "
                       "is warm-started on; give --warm-start MODEL or drop --logs")
    from driftrec.agents.rl import hyperparam_keys  # SB3 and torch

    sim_keys, hp_keys = {f.name for f in dataclasses.fields(SimConfig)}, hyperparam_keys(args.algo)
    for key in overrides:  # --set serves both: a key that is neither gets one message naming both
        if key not in sim_keys and key not in hp_keys:
            close = difflib.get_close_matches(key, sim_keys | hp_keys, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise CLIError(f"--set {key}: neither a SimConfig key nor a {args.algo} hyperparameter{hint}")
    sim = preset_config(args.preset, {k: v for k, v in overrides.items() if k in sim_keys})
    trained = train_policy(args.algo, sim, args.out, preset=args.preset, seed=args.seed, logs=args.logs, settings=dict(
        hyperparams={k: v for k, v in overrides.items() if k not in sim_keys},
        hyperparams_file=args.hyperparams, timesteps=args.timesteps, users=args.users,
        eval_freq=args.eval_freq, eval_users=args.eval_users, checkpoint_freq=args.checkpoint_freq,
        progress_bar=sys.stderr.isatty(), overwrite=args.overwrite, warm_start=args.warm_start,
        warm_start_steps=args.warm_start_steps))
    spec = trained.record
    last = spec["last_validation"]
    where = (f", validation reward per user {last['reward_mean']:.3f} ({spec['users']['validation']} users)"
             if last else "")
    if "warm_start" in spec:
        warm = spec["warm_start"]
        print(f"warm-started from the {warm['teacher']} in {args.warm_start} on {warm['observations']:,} "
              f"{'logged' if warm['source'] == 'logs' else 'served'} requests ({warm['steps']} steps, "
              f"{warm['seconds']:.1f} s; the agent's first choice is the teacher's on {warm['agreement']:.0%} of "
              "held-out requests)")
    print(f"trained {args.algo} on {args.preset} for {spec['timesteps']} timesteps ({spec['users']['train']} users) "
          f"in {spec['wall_time_s']:.1f} s{where} -> {trained.out}")
    return 0


def _train_supervised_cli(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    if args.logs is None:
        raise CLIError(f"train {args.algo} needs --logs FILE (an event log from `driftrec simulate`)")
    rl_only = [flag for flag, value in (("--timesteps", args.timesteps), ("--hyperparams", args.hyperparams),
                                        ("--users", args.users), ("--eval-freq", args.eval_freq),
                                        ("--checkpoint-freq", args.checkpoint_freq),
                                        ("--warm-start", args.warm_start)) if value is not None]
    if rl_only:
        raise CLIError(f"{', '.join(rl_only)} are for RL agents, not the supervised model {args.algo}")
    metrics = train_policy(args.algo, None, args.out, seed=args.seed, logs=args.logs, finetune_days=args.finetune_days,
                           settings=overrides).record
    table = Table(title=f"{args.algo} on {args.logs}: offline metrics")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for key, value in (metrics or {}).items():
        table.add_row(escape(str(key)), _fmt(value))
    Console().print(table)
    print(f"-> {args.out}")
    return 0


def run_evaluate_cli(args: argparse.Namespace) -> int:
    """``driftrec evaluate``: print the summary table (and write ``--json``)."""
    if args.json is not None:
        check_output(args.json)
    result, spec, notes = run_evaluate(args.run, args.preset, parse_sets(args.overrides), args.users, args.seed,
                                       args.batch, deterministic=not args.stochastic)
    for note in notes:
        print(f"driftrec: note: {note}", file=sys.stderr)
    s = result.summary
    preset = args.preset or spec["preset"]
    table = Table(title=f"{spec['algo']} ({escape(str(args.run))}) on {escape(preset)}: "
                        f"{int(s['users'])} evaluation users, seed {args.seed}")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_row("reward per user", f"{s['reward']:.4f}  [{s['reward_ci_low']:.4f}, {s['reward_ci_high']:.4f}] "
                                     f"95% CI ({result.ci_method})")
    for key, value in s.items():
        if key not in ("reward", "reward_ci_low", "reward_ci_high", "users"):
            table.add_row(escape(key), _fmt(value))
    Console().print(table)
    if args.json is not None:
        payload = {"run": str(args.run), "algo": spec["algo"], "preset": preset, "seed": args.seed,
                   "ci_method": result.ci_method, "summary": {k: _json_float(v) for k, v in s.items()}}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return escape(str(value))


def _json_float(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
