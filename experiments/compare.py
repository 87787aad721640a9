"""``driftrec compare``: every policy, trained and judged on the same users, with honest statistics.

For each preset and seed (one *world*: its catalog is ``world_seed + seed``):

1. **logs**: the logging policy (an epsilon-mix of popularity and uniform random, propensities
   recorded) serves the ``log_users`` training users ``seed + i``; their events are the data of
   the popularity policy and the supervised models.
2. **train**: supervised models (``mlp``, ``gru``, ``transformer``; ``<kind>-finetune`` pretrains on
   the older log and fine-tunes on its last ``finetune_days``; ``<kind>-retrain`` starts from the
   trained ``<kind>`` and refits itself while deployed) on the logs; RL agents (``ppo``, ``dqn``,
   also ``a2c``, ``qrdqn``, ``maskable-ppo``) on the batched simulator's training users, validated
   on held-out validation users (the learning curves); the agent deployed is the checkpoint of the
   best validation, never the evaluation users' choice.
3. **evaluate**: every policy, the reference policies (``random``, ``popularity``, ``logging``,
   ``oracle-greedy``, and ``oracle-planner``, which tunes one weight on the world's validation
   users first) among them, on the same ``eval_users`` evaluation users ``seed + 10**9 + i``,
   whom no training met. Each user's draws come from its own random stream, so every policy meets
   the same users with the same luck (common random numbers) and differences are paired.

The run folder ``runs/NAME/``:

| path | what |
|---|---|
| ``config.yaml`` | the resolved :class:`CompareConfig` (with the profile's name) |
| ``results.csv`` | one row per policy x preset x seed: every metric of ``agents/evaluate.py``, regret, training cost |
| ``users.parquet``, ``daily.parquet`` | per evaluation user; mean reward per user by day of life |
| ``curves.csv`` | RL validation reward per user by training user-steps |
| ``summary.md`` | the tables, the paired comparisons and a verdict per preset |
| ``figures/`` | learning curves, reward by day with the drift events marked, bars with CIs, interest trajectories |
| ``cells/PRESET/seedS/`` | ``logs.parquet``; per policy ``result.json``, per-user and per-day Parquet, ``model/`` |

An RL agent's ``model/`` is a ``driftrec train`` run folder (TensorBoard logs in ``tb/``); a
supervised model's holds ``model.pt`` and its offline ``metrics.json``.

Resuming: a (policy, preset, seed) cell is finished when its ``result.json`` exists; every file is
written to a temporary name and renamed, and a model trains into ``model.partial/`` that is
renamed when training ends, so a run stopped anywhere (Ctrl-C, a crash) leaves finished cells
and nothing half-written under a final name. Re-running into the same folder skips finished
cells and redoes the rest; the tables, summary and figures are always rebuilt from the cells. A
folder made with other settings (budgets, users, simulator keys) is refused; adding presets,
seeds or policies is allowed.

The cells run in this process, in ``jobs`` worker processes (a world each) or as Ray tasks
(``backend: ray``, :mod:`driftrec.experiments.compare_ray`): the same folder and numbers, so a run
resumes under any of them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from driftrec.agents import plugins
from driftrec.agents.evaluate import evaluate_policy
from driftrec.agents.registry import make_policy
from driftrec.envs.config import Config, ConfigError, knob, parse_sets, read_yaml_mapping
from driftrec.envs.events import EventWriter, load_events, load_users
from driftrec.envs.model import build_model
from driftrec.envs.presets import PRESETS, is_preset_path, preset_config, resolve_preset
from driftrec.envs.rollout import eval_seeds, simulate_log, train_seeds
from driftrec.experiments.artifacts import atomic_path, plain, write_parquet, write_text
from driftrec.experiments.cliutil import import_from_cwd, positive_int
from driftrec.experiments.report import write_summary
from driftrec.experiments.stats import HIDDEN_STATE
from driftrec.experiments.train import train_policy

REFERENCE = ("random", "popularity", "logging", "oracle-greedy", "oracle-planner")
RL_ALGOS = ("ppo", "dqn", "a2c", "qrdqn", "maskable-ppo")
SUPERVISED = ("mlp", "gru", "transformer")
VARIANTS = ("finetune", "retrain")
WARM = "warm"
"""``<algo>-warm``: the RL agent starts from the world's ``mlp`` distilled on the logs
(:mod:`driftrec.agents.warm_start`), then trains the same budget as the cold ``<algo>``."""
WARM_TEACHER = "mlp"  # reads the ``features`` observation that the RL agents read
LOGS, TEACHER = "logs", "teacher"
"""The steps of a world before its cells (:meth:`WorldRun.plan`): simulating the logs, training the warm agents'
teacher."""
PROFILES = ("smoke", "quick", "standard", "full")
DEFAULT_PROFILE = "quick"
RESUMABLE = ("presets", "seeds", "first_seed", "policies", "trace_users", "jobs", "backend", "address", "ray_cpus",
             "cell_cpus")
"""Fields a finished run folder may be resumed with different values of (they add or drop cells)."""


def family(policy: str) -> str:
    """'reference', 'supervised' or 'rl'; 'custom' for a ``module:factory`` (its policy may declare another)."""
    if plugins.is_plugin(policy):
        return plugins.DEFAULT_FAMILY
    if policy in REFERENCE:
        return "reference"
    return "rl" if policy.removesuffix(f"-{WARM}") in RL_ALGOS else "supervised"


def uses_logs(policy: str) -> bool:
    """Whether the cell of ``policy`` reads the world's logs (all but the references that need none and cold RL)."""
    return policy not in ("random", "logging", "oracle-greedy", "oracle-planner") and policy not in RL_ALGOS


def check_policy(name: str) -> None:
    """Raise ConfigError unless ``name`` is a policy compare knows or a ``module.path:factory`` it can import."""
    kind, _, variant = name.partition("-")
    if name in REFERENCE or name.removesuffix(f"-{WARM}") in RL_ALGOS \
            or (kind in SUPERVISED and (not variant or variant in VARIANTS)) \
            or (plugins.is_plugin(name) and plugins.load_factory(name)):  # a bad one raises, naming itself
        return
    known = [*REFERENCE, *SUPERVISED, *(f"{k}-{v}" for k in SUPERVISED for v in VARIANTS), *RL_ALGOS,
             *(f"{a}-{WARM}" for a in RL_ALGOS)]
    raise ConfigError(f"unknown policy '{name}' in policies; choose from: {', '.join(known)}, or module:factory")


@dataclasses.dataclass(frozen=True)
class CompareConfig(Config):
    """What ``driftrec compare`` runs: presets, seeds, policies, users and budgets (see benchmark.yaml)."""

    label = "compare config"
    unknown_hint = "; see experiments/configs/benchmark.yaml"

    presets: tuple[str, ...] = knob(("default",), "simulator presets (names or preset YAML files): one world per "
                                                  "preset and seed", distinct=True)
    policies: tuple[str, ...] = knob((*REFERENCE, *SUPERVISED, "gru-finetune", "mlp-retrain", "ppo", "dqn", "ppo-warm",
                                      "dqn-warm"), "policies compared: references (oracle-planner, the upper one, "
                                                   "tuned on validation users), supervised models (-finetune, "
                                                   "-retrain), RL agents (-warm), yours: module:factory", distinct=True)
    seeds: int = knob(1, "seeds (worlds: catalog and users) first_seed, first_seed + 1, ...", 1, 1000)
    first_seed: int = knob(0, "first seed", 0, 2**31 - 1)
    log_users: int = knob(1000, "users of the logging policy whose events train popularity and the supervised models",
                          1, 10_000_000)
    epsilon: float = knob(0.3, "the logging policy's probability of a uniform random item per position", 0.0, 1.0)
    eval_users: int = knob(1000, "held-out evaluation users, the same for every policy", 2, 10_000_000)
    rl_timesteps: int = knob(200_000, "training user-steps of each RL agent", 1, 10**10)
    rl_users: int = knob(0, "users stepped together while an RL agent trains (SB3 n_envs; 0: the algorithm's "
                            "hyperparameters')", 0, 1_000_000)
    rl_evaluations: int = knob(5, "validations on held-out users while an RL agent trains (0: none)", 0, 10_000)
    rl_eval_users: int = knob(128, "held-out validation users of RL training", 1, 1_000_000)
    warm_start_steps: int = knob(500, "<algo>-warm: gradient steps distilling the world's mlp into the agent on "
                                      "the logs before RL", 1, 10_000_000)
    finetune_days: float = knob(7.0, "<kind>-finetune: fine-tune on the log's last this many days", 0.01, 3650.0)
    retrain_every_days: float = knob(3.0, "<kind>-retrain: refit while deployed every this many days", 0.01, 3650.0)
    retrain_window_days: float = knob(7.0, "<kind>-retrain: refit on the newest this many days", 0.01, 3650.0)
    trace_users: int = knob(4, "evaluation users whose interest trajectories are drawn (0: none)", 0, 64)
    jobs: int = knob(1, "worlds (preset, seed) run at once, each in its own process; a world's numbers do not "
                        "depend on it", 1, 256)
    backend: str = knob("local", "where the cells run: local (this process, or `jobs` processes) or ray (each "
                                 "cell a Ray task; pip install -e \".[ray]\"); the numbers do not depend on it",
                         choices=("local", "ray"))
    address: str = knob("", "ray backend: HOST:PORT of a running Ray cluster's head (empty: a local cluster "
                            "is started for the run)")
    ray_cpus: int = knob(0, "ray backend: CPUs of the local cluster started for the run (0: the machine's)",
                         0, 4096)
    cell_cpus: float = knob(1.0, "ray backend: CPUs each cell reserves on the cluster (its torch threads: "
                                 "torch_threads)", 0.01, 1024.0)
    torch_threads: int = knob(1, "torch threads (0: torch's default); one is ~15% slower on an idle 2-core machine "
                                 "and many times faster when other processes share the cores; the count changes "
                                 "floating-point sums, so it is part of what makes a run reproducible", 0, 1024)
    sim: Mapping[str, Any] = knob({}, "SimConfig keys laid over every preset")
    supervised: Mapping[str, Any] = knob({}, "SupervisedConfig keys (epochs, hidden, lr, ...)")
    hyperparams: Mapping[str, Any] = knob({}, "per RL algorithm, rl-zoo3 keys over agents/hyperparams/<algo>.yml, "
                                              "or the path of such a YAML file")

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    def check(self) -> None:
        """Check the presets, policies and nested mappings (each mistake: one ConfigError line)."""
        for preset in self.presets:
            if preset not in PRESETS and not is_preset_path(preset):
                raise ConfigError(f"unknown preset '{preset}' in presets; choose from: {', '.join(PRESETS)}, "
                                  "or a preset YAML file")
            resolve_preset(preset)  # a bad preset file: one line naming it
        labels = [resolve_preset(p).name for p in self.presets]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"presets must have distinct names, got {labels}")
        for policy in self.policies:
            check_policy(policy)
        if self.address and not re.fullmatch(r"[\w.-]+:\d{1,5}", self.address):
            raise ConfigError(f"address must be HOST:PORT of a Ray cluster's head, got '{self.address}'")
        if self.address and self.backend != "ray":
            raise ConfigError(f"address '{self.address}' is a Ray cluster's: use backend ray, or drop the address")
        for preset in self.presets:
            try:
                cfg = preset_config(preset, self.sim)
            except ConfigError as err:
                raise ConfigError(f"sim: {err}") from None
            if cfg.model != "shop" and any(family(p) == "supervised" or p.endswith(f"-{WARM}")
                                           for p in self.policies):
                raise ConfigError(f"preset '{preset}' uses the {cfg.model} user model; the supervised models "
                                  "need ShopSim, and so do the warm-started agents: drop them from policies or the "
                                  "preset")
        from driftrec.agents.supervised.config import SupervisedConfig  # the package imports torch: only here

        try:
            SupervisedConfig.from_dict(self.supervised)
        except ConfigError as err:
            raise ConfigError(f"supervised: {err}") from None
        for algo, value in self.hyperparams.items():
            if algo not in RL_ALGOS:
                raise ConfigError(f"hyperparams: unknown algorithm '{algo}'; choose from: {', '.join(RL_ALGOS)}")
            if not isinstance(value, (Mapping, str)):
                raise ConfigError(f"hyperparams.{algo} must be a mapping of rl-zoo3 keys or a YAML file path")
            if isinstance(value, str) and not Path(value).is_file():
                raise ConfigError(f"hyperparams.{algo}: file '{value}' does not exist")
            if isinstance(value, Mapping) and value:
                from driftrec.agents.rl import check_hyperparams  # imports SB3: only when there is something to check

                check_hyperparams(algo, value, where=f" (hyperparams.{algo})")


# ------------------------------------------------------------------------------------- config files
def default_config_path() -> Path:
    """The packaged ``experiments/configs/benchmark.yaml``."""
    return Path(str(resources.files("driftrec.experiments") / "configs" / "benchmark.yaml"))


def load_config(path: str | Path | None = None, profile: str = DEFAULT_PROFILE,
                overrides: Mapping[str, Any] | None = None) -> CompareConfig:
    """The config of ``path`` (default: the packaged benchmark): its ``defaults``, the ``profile``
    laid over them, then ``overrides`` (dotted keys reach into ``sim``, ``supervised``, ``hyperparams``; mappings
    merge key by key)."""
    path = Path(path) if path is not None else default_config_path()
    data = read_yaml_mapping(path, "config file")
    unknown = set(data) - {"defaults", "profiles"}
    if unknown:
        raise ConfigError(f"config file '{path}': unknown top-level key '{sorted(unknown)[0]}' "
                          "(expected 'defaults' and 'profiles')")
    profiles = data.get("profiles") or {}
    if profile not in profiles:
        raise ConfigError(f"config file '{path}' has no profile '{profile}'; it has: {', '.join(profiles) or 'none'}")
    try:
        cfg = CompareConfig.from_dict(data.get("defaults") or {})
        cfg = CompareConfig.from_dict(profiles[profile] or {}, base=cfg)
        return CompareConfig.from_dict(overrides or {}, base=cfg)
    except ConfigError as err:
        raise ConfigError(f"{path} (profile {profile}): {err}") from None


# ------------------------------------------------------------------------------------- one world
class Reporter:
    """One line per step on stderr, with the run's elapsed time (quiet when ``quiet``)."""

    def __init__(self, quiet: bool = False, start: float | None = None):
        self.quiet = quiet
        self.start = time.time() if start is None else start  # wall clock: worker processes share the run's

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.time() - self.start
            print(f"[{elapsed:7.1f} s] {message}", file=sys.stderr, flush=True)


class WorldRun:
    """One (preset, seed) of a compare run: its simulator, its logs and its cells (not the
    simulator's :class:`driftrec.envs.world.World`, the catalog every user of a seed shares)."""

    def __init__(self, run: Path, cfg: CompareConfig, preset: str, seed: int, report: Reporter):
        # a preset file runs as its base preset with its keys as overrides (training reads base names);
        # tables and folders use its name
        resolved = resolve_preset(preset)
        self.base_preset = resolved.base or preset
        file_keys = dict(resolved.overrides) if resolved.base else {}
        self.cfg, self.preset, self.seed, self.report = cfg, resolved.name, seed, report
        self.folder = run / "cells" / self.preset / f"seed{seed}"
        base = preset_config(preset, cfg.sim)
        overrides = {**file_keys, **dict(cfg.sim), "world_seed": base.world_seed + seed}
        self.sim_cfg = preset_config(self.base_preset, overrides)  # resolved once: every cell takes it
        self.model = build_model(self.sim_cfg)
        self._history_model: Any = None
        self._logs: pd.DataFrame | None = None

    @property
    def name(self) -> str:
        return f"{self.preset} seed {self.seed}"

    def cell(self, policy: str) -> Path:
        return self.folder / policy.replace(":", ".")  # a plugin's module:factory: no colon in paths

    def done(self, policy: str) -> bool:
        return (self.cell(policy) / "result.json").is_file()

    def plan(self) -> dict[str, list[str]]:
        """The unfinished steps of this world -- :data:`LOGS`, :data:`TEACHER` (the warm agents' ``mlp``
        model), each unfinished policy -- each with the unfinished steps it waits for, so that steps
        run at once never write one folder (the Ray backend)."""
        todo = [p for p in self.cfg.policies if not self.done(p)]
        plan: dict[str, list[str]] = {}
        if any(uses_logs(p) for p in todo) and not self.logs_path.is_file():
            plan[LOGS] = []
        if any(p.endswith(f"-{WARM}") for p in todo) \
                and not (self.cell(WARM_TEACHER) / "model" / "done.json").is_file():
            plan[TEACHER] = [LOGS] if LOGS in plan else []
        for policy in todo:
            after = [LOGS] if uses_logs(policy) else []
            kind = policy.partition("-")[0]
            if policy.endswith(f"-{WARM}") or policy in (WARM_TEACHER, f"{WARM_TEACHER}-retrain"):
                after.append(TEACHER)  # the teacher's folder is the mlp cell's, which mlp-retrain deploys
            if policy == f"{kind}-retrain":
                after.append(kind)  # deploys the trained <kind>
            plan[policy] = [step for step in after if step in plan or step in todo]
        return plan

    def model_for(self, obs_mode: str) -> Any:
        """The simulator with ``obs_mode`` (the sequence models read ``history``); same users, same dynamics."""
        if obs_mode == self.sim_cfg.obs_mode:
            return self.model
        if self._history_model is None or self._history_model.cfg.obs_mode != obs_mode:
            self._history_model = build_model(dataclasses.replace(self.sim_cfg, obs_mode=obs_mode))
        return self._history_model

    # --- stage 1: the logging policy's events -------------------------------------------------
    @property
    def logs_path(self) -> Path:
        return self.folder / "logs.parquet"

    def logs(self) -> pd.DataFrame:
        """The logging policy's events on the log users (simulated once, then read back)."""
        if self._logs is not None:
            return self._logs
        if not self.logs_path.is_file():
            start = time.perf_counter()
            self.folder.mkdir(parents=True, exist_ok=True)
            policy = make_policy("logging", self.model, self.cfg.log_users, self.seed, epsilon=self.cfg.epsilon)
            with EventWriter(self.logs_path, self.sim_cfg) as writer:  # with the users table: demographics
                simulate_log(self.model, policy, train_seeds(self.seed, self.cfg.log_users), writer=writer)
            wall = time.perf_counter() - start
            write_text(self.folder / "logs.json", json.dumps({"wall_s": wall, "events": writer.n_events}) + "\n")
            self.report(f"{self.name}: logged {writer.n_events:,} events of {self.cfg.log_users:,} users "
                        f"under the logging policy in {wall:.1f} s")
        self._logs = load_events(self.logs_path)
        return self._logs

    def logged_requests(self) -> int:
        """Requests (environment user-steps) in the logs: the interaction a log-trained policy cost."""
        logs = self.logs()
        shown = logs[logs["behaviour"] == "impression"]
        return int(shown.groupby(["user_id", "timestamp"]).ngroups)

    # --- stage 2 and 3: a policy, trained if it needs to be, then evaluated --------------------
    def run(self, policy: str) -> dict[str, Any]:
        """Train (if needed) and evaluate ``policy``; write its cell; return its result row."""
        trained, train, sim = self._policy(policy)
        fam = plugins.plugin_family(policy, trained) if plugins.is_plugin(policy) else family(policy)
        self.report(f"{self.name}: evaluating {policy} on {self.cfg.eval_users:,} users")
        result = evaluate_policy(trained, sim.cfg, self.cfg.eval_users, self.seed, model=sim)
        cell = self.cell(policy)
        users = result.users
        daily = pd.DataFrame({"day": np.arange(result.stats.daily_reward.shape[1]), "reward": result.daily_mean()})
        write_parquet(users, cell / "users.parquet")
        write_parquet(daily, cell / "daily.parquet")
        row = {"preset": self.preset, "seed": self.seed, "policy": policy, "family": fam,
               **{k: v for k, v in result.summary.items() if k != "wall_s"},
               "train_wall_s": train.get("wall_s", 0.0), "env_steps": train.get("env_steps", 0),
               "eval_wall_s": result.summary["wall_s"]}
        write_text(cell / "result.json", json.dumps(plain({**row, "train": train}, finite=True), indent=2) + "\n")
        self.report(f"{self.name}: {policy}: reward per user {row['reward']:.3f} "
                    f"[{row['reward_ci_low']:.3f}, {row['reward_ci_high']:.3f}] ({row['eval_wall_s']:.1f} s)")
        return row

    def _policy(self, policy: str) -> tuple[Any, dict[str, Any], Any]:
        """The policy object, what training it cost ({wall_s, env_steps, ...}) and the simulator
        (observation mode) it acts in."""
        n = self.cfg.eval_users
        if policy in ("random", "oracle-greedy"):
            return make_policy(policy, self.model, n, self.seed), {}, self.model
        if policy == "oracle-planner":  # tunes itself on the world's validation users
            start = time.perf_counter()
            made = make_policy(policy, self.model, n, self.seed)
            return made, {"wall_s": time.perf_counter() - start, **getattr(made, "tuning", {})}, self.model
        if policy == "logging":
            return make_policy("logging", self.model, n, self.seed, epsilon=self.cfg.epsilon), {}, self.model
        if policy == "popularity":
            start = time.perf_counter()
            made = make_policy("popularity", self.model, n, self.seed, events=self.logs())
            return made, {"wall_s": time.perf_counter() - start, "env_steps": self.logged_requests()}, self.model
        if plugins.is_plugin(policy):
            return self._plugin(policy)
        if family(policy) == "rl":
            return self._rl(policy)
        return self._supervised(policy)

    def _plugin(self, policy: str) -> tuple[Any, dict[str, Any], Any]:
        """A user's ``module:factory`` (:mod:`driftrec.agents.plugins`); taking the logs, it pays their requests."""
        wants = plugins.factory_inputs(plugins.load_factory(policy))
        given = {"logs": self.logs(), "logs_path": self.logs_path} if wants else {}  # simulated here if needed
        made, info = plugins.build_plugin(policy, self.model, self.cfg.eval_users, self.seed, **given)
        return made, {**info, "env_steps": info["env_steps"] + (self.logged_requests() if wants else 0)}, self.model

    def _train_into(self, folder: Path, train: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """Run ``train(partial_folder)`` unless ``folder/done.json`` exists; rename when it ends."""
        done = folder / "done.json"
        if done.is_file():
            return json.loads(done.read_text())
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run
        shutil.rmtree(folder, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            info = train(partial)
            (partial / "done.json").write_text(json.dumps(plain(info, finite=True), indent=2) + "\n")
            os.replace(partial, folder)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return info

    def _rl(self, policy: str) -> tuple[Any, dict[str, Any], Any]:
        from driftrec.agents.rl import SB3Policy, load_agent  # SB3 and torch: only when an RL cell runs

        algo = policy.removesuffix(f"-{WARM}")
        warm = algo != policy
        folder = self.cell(policy) / "model"
        hp_value = self.cfg.hyperparams.get(algo, {})
        hp_file = Path(hp_value) if isinstance(hp_value, str) else None
        hp = {} if hp_file is not None else dict(hp_value)

        def train(out: Path) -> dict[str, Any]:
            teacher = self._teacher() if warm else None
            self.report(f"{self.name}: training {policy} for {self.cfg.rl_timesteps:,} user-steps"
                        + (f", warm-started from {WARM_TEACHER} on the logs" if warm else ""))
            evals = self.cfg.rl_evaluations
            trained = train_policy(algo, self.sim_cfg, out, preset=self.base_preset, seed=self.seed,
                                   logs=self.logs_path if warm else None, settings=dict(
                                       hyperparams=hp, hyperparams_file=hp_file, timesteps=self.cfg.rl_timesteps,
                                       users=self.cfg.rl_users or None,
                                       eval_freq=max(self.cfg.rl_timesteps // evals, 1) if evals else 0,
                                       eval_users=self.cfg.rl_eval_users, checkpoint_freq=0,
                                       progress_bar=sys.stderr.isatty(), warm_start=teacher,
                                       warm_start_steps=self.cfg.warm_start_steps))
            info = {"wall_s": trained.wall_s, "env_steps": trained.timesteps}
            if warm:  # the teacher's log is interaction this agent cost too
                info["env_steps"] += self.logged_requests()
                info["warm_start"] = trained.record["warm_start"]
            if trained.best_validation is not None:  # the deployed agent (EvalCallback's best_model.zip)
                info["deployed_steps"], info["deployed_validation"] = trained.best_validation
            self.report(f"{self.name}: {policy} trained in {trained.wall_s:.1f} s"
                        + (f"; deploying its best validation, at {info['deployed_steps']:,} user-steps"
                           if "deployed_steps" in info else ""))
            return info

        info = self._train_into(folder, train)
        best = folder / "best_model.zip"
        agent, _ = load_agent(best if best.is_file() else folder)
        return SB3Policy(agent), info, self.model

    def _teacher(self) -> Path:
        """The world's :data:`WARM_TEACHER` model (the ``mlp`` cell's, trained here if that cell has not run)."""
        folder = self.cell(WARM_TEACHER) / "model"
        self._train_into(folder, lambda out: self._fit(WARM_TEACHER, out, False))
        return folder / "model.pt"

    def _supervised(self, policy: str) -> tuple[Any, dict[str, Any], Any]:
        from driftrec.agents.supervised import RetrainingPolicy, SupervisedPolicy, load_model  # torch

        kind, _, variant = policy.partition("-")
        base_folder = self.cell(kind) / "model"
        if variant == "retrain" and (base_folder / "done.json").is_file():
            folder = base_folder  # deploy the trained <kind> and let it refit itself
        else:
            folder = self.cell(policy) / "model"
        info = self._train_into(folder, lambda out: self._fit(kind, out, variant == "finetune"))
        model = load_model(folder / "model.pt")
        sim = self.model_for("history" if model.sequence else self.sim_cfg.obs_mode)
        if variant == "retrain":
            made: Any = RetrainingPolicy(model, sim, every_days=self.cfg.retrain_every_days,
                                         window_days=self.cfg.retrain_window_days, seed=self.seed,
                                         log=self.logs(), log_users=load_users(self.logs_path))
        else:
            made = SupervisedPolicy(model, sim)
        return made, info, sim

    def _fit(self, kind: str, out: Path, finetune: bool) -> dict[str, Any]:

        logs = self.logs()  # simulates them if needed
        what = f"{kind} (fine-tuned on the last {self.cfg.finetune_days:g} days)" if finetune else kind
        self.report(f"{self.name}: training {what} on {len(logs):,} logged events")
        finetune_days = self.cfg.finetune_days if finetune else None
        metrics = train_policy(kind, self.sim_cfg, out, preset=self.base_preset, seed=self.seed, logs=self.logs_path,
                               finetune_days=finetune_days, settings=self.cfg.supervised).record
        test = metrics["test"]
        self.report(f"{self.name}: {what} trained in {metrics['train_seconds']:.1f} s, held-out click AUC "
                    f"{_fmt(test['click']['auc'])}")
        return {"wall_s": float(metrics["train_seconds"]), "env_steps": self.logged_requests(),
                "offline": metrics.get("summary", {})}

    def curves(self, policy: str) -> pd.DataFrame:
        """The validation curve of an RL cell (empty for other policies or without validations)."""
        path = self.cell(policy) / "model" / "evaluations.npz"
        if family(policy) != "rl" or not path.is_file():
            return pd.DataFrame(columns=["timesteps", "reward"])
        with np.load(path) as data:
            return pd.DataFrame({"timesteps": data["timesteps"], "reward": data["results"].mean(axis=1)})


# ------------------------------------------------------------------------------------- the run
@dataclasses.dataclass
class CompareResult:
    """The tables of a finished run and where it lies."""

    out: Path
    results: pd.DataFrame
    users: pd.DataFrame
    daily: pd.DataFrame
    curves: pd.DataFrame
    summary: str
    wall_s: float


def prepare_run(out: Path, cfg: CompareConfig, profile: str, overwrite: bool = False) -> None:
    """Create ``out`` and write ``config.yaml``; refuse a folder made with other settings."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file, not a folder")
    path = out / "config.yaml"
    if path.is_file() and overwrite:
        shutil.rmtree(out)
    elif path.is_file():
        try:
            old = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:
            raise ConfigError(f"'{path}' is not valid YAML: pass --overwrite or choose another --out") from None
        new, defaults, before = cfg.to_dict(), CompareConfig().to_dict(), old.get("config", {})
        for key, value in new.items():
            was = before.get(key, defaults[key])  # a field newer than the run folder: its default then
            if key not in RESUMABLE and was != value:
                raise ConfigError(f"'{out}' holds a run with other settings ({key}: {was!r}"
                                  f", now {value!r}); resume with the same settings, choose another --out or pass "
                                  "--overwrite")
        for preset, content in preset_files(cfg).items():
            before = (old.get("preset_files") or {}).get(preset)
            if before is not None and before != content:
                raise ConfigError(f"'{out}' holds a run of preset file '{preset}' with other contents (it was "
                                  "recalibrated or edited); choose another --out or pass --overwrite")
    elif out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"'{out}' is not empty and holds no compare run (config.yaml); choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create --out '{out}': {err.strerror or err}") from None
    write_text(path, yaml.safe_dump({"profile": profile, "config": cfg.to_dict(), "preset_files": preset_files(cfg)},
                                    sort_keys=False))


def preset_files(cfg: CompareConfig) -> dict[str, dict[str, Any]]:
    """What each preset file of ``cfg`` holds (name, version, base, keys), as ``config.yaml`` records
    it: a resumed run whose preset file has changed since is refused rather than mixed."""
    files = {}
    for preset in cfg.presets:
        if preset not in PRESETS:
            p = resolve_preset(preset)
            files[preset] = plain({"name": p.name, "version": p.version, "base": p.base,
                                   "overrides": dict(p.overrides)})
    return files


def run_compare(cfg: CompareConfig, out: str | Path, *, profile: str = DEFAULT_PROFILE, overwrite: bool = False,
                quiet: bool = False) -> CompareResult:
    """Run (or resume) the comparison into ``out``; returns the tables (see the module doc)."""
    out = Path(out)
    prepare_run(out, cfg, profile, overwrite)
    _pin_threads(cfg)
    report = Reporter(quiet)
    start = time.perf_counter()
    keys = [(preset, seed) for preset in cfg.presets for seed in cfg.seed_list]
    if cfg.backend == "ray":
        from driftrec.experiments.compare_ray import run_on_ray  # imports ray: only for this backend

        worlds = [WorldRun(out, cfg, preset, seed, report) for preset, seed in keys]
        run_on_ray({(preset, seed, w.name): w.plan() for (preset, seed), w in zip(keys, worlds, strict=True)},
                   functools.partial(run_step, out.resolve(), cfg), report, address=cfg.address, cpus=cfg.ray_cpus,
                   cell_cpus=cfg.cell_cpus, prep=(LOGS, TEACHER))
    elif cfg.jobs > 1 and len(keys) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a forked child would inherit torch's and numba's threads mid-state
        with ProcessPoolExecutor(min(cfg.jobs, len(keys)), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_world, out, cfg, preset, seed, quiet, report.start) for preset, seed in keys]
            try:
                for future in futures:
                    future.result()
            except BaseException:  # the first failure ends the run (finished cells stay): start no other world
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        worlds = [WorldRun(out, cfg, preset, seed, report) for preset, seed in keys]
    else:
        worlds = [_run_world(out, cfg, preset, seed, report) for preset, seed in keys]
    result = build_artifacts(out, cfg, worlds, report)
    result.wall_s = time.perf_counter() - start
    report(f"done: {out / 'summary.md'}")
    return result


def _run_world(out: Path, cfg: CompareConfig, preset: str, seed: int, report: Reporter | bool,
               start: float | None = None) -> WorldRun:
    """Run the unfinished cells of world (``preset``, ``seed``). In a worker process (``cfg.jobs`` > 1)
    ``report`` is the run's ``quiet`` flag and ``start`` its start time: the worker makes its own
    reporter and sets its torch threads."""
    if not isinstance(report, Reporter):
        report = Reporter(report, start)
        _pin_threads(cfg)
    world = WorldRun(out, cfg, preset, seed, report)
    todo = [p for p in cfg.policies if not world.done(p)]
    if len(todo) < len(cfg.policies):
        report(f"{world.name}: {len(cfg.policies) - len(todo)} of {len(cfg.policies)} policies already done")
    for policy in todo:
        world.run(policy)
    return world


def run_step(out: Path, cfg: CompareConfig, preset: str, seed: int, step: str) -> None:
    """Run one step of :meth:`WorldRun.plan` of world (``preset``, ``seed``) into ``out``, quietly, in a
    worker (a Ray task) whose torch threads it sets."""
    _pin_threads(cfg)
    world = WorldRun(out, cfg, preset, seed, Reporter(quiet=True))
    if step == LOGS:
        world.logs()
    elif step == TEACHER:
        world._teacher()
    else:
        world.run(step)


def _pin_threads(cfg: CompareConfig) -> None:
    if cfg.torch_threads:
        import torch

        torch.set_num_threads(cfg.torch_threads)


def collect(cfg: CompareConfig, worlds: Sequence[WorldRun]) -> tuple[pd.DataFrame, ...]:
    """(results, users, daily, curves) of the finished cells of ``worlds``, regret filled in."""
    rows, users, daily, curves = [], [], [], []
    for world in worlds:
        for policy in cfg.policies:
            cell = world.cell(policy)
            result = json.loads((cell / "result.json").read_text())
            result.pop("train", None)
            rows.append(result)
            key = {"preset": world.preset, "seed": world.seed, "policy": policy}
            users.append(pd.read_parquet(cell / "users.parquet").assign(**key))
            daily.append(pd.read_parquet(cell / "daily.parquet").assign(**key, family=result["family"]))
            curve = world.curves(policy)
            if len(curve):
                curves.append(curve.assign(**key))
    results = pd.DataFrame(rows)
    for column in results.columns.difference(["preset", "policy", "family"]):
        results[column] = pd.to_numeric(results[column])  # NaN was stored as null

    # regret and share against the best reference of each world: oracle-planner or oracle-greedy
    refs = results[results["policy"].isin(HIDDEN_STATE)].groupby(["preset", "seed"])["reward"].max()
    index = pd.MultiIndex.from_frame(results[["preset", "seed"]])
    best = refs.reindex(index).to_numpy()
    results["regret"] = best - results["reward"].to_numpy()
    results["share"] = results["reward"].to_numpy() / best
    lead = ["preset", "seed", "policy"]
    users_df = pd.concat(users, ignore_index=True)
    users_df = users_df[lead + [c for c in users_df.columns if c not in lead]]
    daily_df = pd.concat(daily, ignore_index=True)[["preset", "seed", "policy", "family", "day", "reward"]]
    curves_df = (pd.concat(curves, ignore_index=True)[["preset", "seed", "policy", "timesteps", "reward"]] if curves
                 else pd.DataFrame(columns=["preset", "seed", "policy", "timesteps", "reward"]))
    return results, users_df, daily_df, curves_df


def build_artifacts(out: Path, cfg: CompareConfig, worlds: Sequence[WorldRun], report: Reporter) -> CompareResult:
    """Tables, summary and figures of the finished cells (rebuilt on every run)."""
    from driftrec.experiments import figures, stats  # matplotlib: not for --show-config

    results, users, daily, curves = collect(cfg, worlds)
    with atomic_path(out / "results.csv") as tmp:
        results.to_csv(tmp, index=False)
    write_parquet(users, out / "users.parquet")
    write_parquet(daily, out / "daily.parquet")
    with atomic_path(out / "curves.csv") as tmp:
        curves.to_csv(tmp, index=False)

    agg = stats.aggregate(results, users)
    comparisons = stats.comparisons(users, results)
    text = write_summary(out / "summary.md", agg, comparisons, title=f"driftrec compare: {out.name}",
                         notes=_notes(cfg, worlds, results), ladder=stats.ladder(results))
    report("drawing figures")
    fig = out / "figures"
    fig.mkdir(exist_ok=True)
    figures.reward_bars(agg, fig / "reward_bars.png")
    events = {w.preset: figures.calendar_events(w.sim_cfg) for w in worlds}
    figures.reward_by_day(daily, events, fig / "reward_by_day.png")
    if len(curves):
        figures.learning_curves(curves, fig / "learning_curves.png")
    if cfg.trace_users and worlds:
        _trace(worlds[0], cfg, fig / "interest_trajectories.png")
    return CompareResult(out, results, users, daily, curves, text, math.nan)


def _trace(world: WorldRun, cfg: CompareConfig, path: Path) -> None:
    """Interest trajectories of a few evaluation users under oracle-greedy (it keeps them longest)."""
    from driftrec.experiments import figures  # matplotlib

    policy = make_policy("oracle-greedy", world.model, cfg.trace_users, world.seed)
    traj = figures.trace_interests(world.model, policy, eval_seeds(world.seed, cfg.trace_users))
    figures.interest_trajectories(traj, path)


def _notes(cfg: CompareConfig, worlds: Sequence[WorldRun], results: pd.DataFrame) -> list[str]:
    """Budgets and wall time per stage, for summary.md."""
    notes = [f"{len(cfg.presets)} preset(s) x {cfg.seeds} seed(s); {cfg.eval_users:,} evaluation users per world, "
             f"the same for every policy (paired); logs of {cfg.log_users:,} users under the logging policy "
             f"(epsilon {cfg.epsilon:g}); RL agents trained for {cfg.rl_timesteps:,} user-steps each."]
    log_s = sum(json.loads((w.folder / "logs.json").read_text())["wall_s"] for w in worlds
                if (w.folder / "logs.json").is_file())
    stage = results.groupby("policy")[["train_wall_s", "eval_wall_s"]].sum()
    parts = [f"simulating the logs {log_s:.0f} s"] + [f"{p} {r.train_wall_s:.0f} s + {r.eval_wall_s:.0f} s"
                                           for p, r in stage.iterrows()]
    notes.append("Wall time, training + evaluation, summed over worlds: " + "; ".join(parts) + ".")
    notes.append("oracle-planner and oracle-greedy read the hidden user state: they are references, not deployable "
                 "policies; regret and share are against the better of the two in each world.")
    rl = [p for p in cfg.policies if family(p) == "rl"]
    if rl:
        cold = [p for p in rl if not p.endswith(f"-{WARM}")]
        warm = [p for p in rl if p.endswith(f"-{WARM}")]
        parts = []
        if cold:
            parts.append(f"{', '.join(cold)} start{'s' * (len(cold) == 1)} from random weights (cold)")
        if warm:
            parts.append(f"{', '.join(warm)} start{'s' * (len(warm) == 1)} from the world's {WARM_TEACHER} "
                         "distilled on the logs "
                         f"({cfg.warm_start_steps} gradient steps; the logs' requests count in their env_steps), "
                         "then train the same budget (warm)")
        notes.append("RL agents: " + "; ".join(parts) + ". Each is deployed at its best validation (learning "
                     "curves show every validation; a warm agent is validated once before RL too).")
    return notes


def _fmt(value: Any) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


# ------------------------------------------------------------------------------------- CLI
def add_parser(subparsers: Any) -> None:
    """Register ``driftrec compare``."""
    p = subparsers.add_parser(
        "compare", help="train and compare every policy on held-out users (the main job)",
        description="Per preset and seed: logs from the logging policy, supervised and RL training, then every "
                    "policy on the same held-out users (paired). Writes results.csv, per-user and per-day tables, "
                    "summary.md and figures into --out; re-running into the same folder resumes.")
    p.add_argument("--config", type=Path, default=None,
                   help="YAML with 'defaults' and 'profiles' (default: the packaged benchmark.yaml)")
    p.add_argument("--profile", default=DEFAULT_PROFILE,
                   help=f"profile of the config: smoke (CI, ~1 min), quick (~3 min), standard (7 presets x 3 "
                        f"seeds, ~45 min), full (hours) "
                        f"(default: {DEFAULT_PROFILE})")
    p.add_argument("--presets", default=None, help="comma-separated presets (default: the profile's)")
    p.add_argument("--seeds", type=positive_int, default=None, help="number of seeds (default: the profile's)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<profile>)")
    p.add_argument("--jobs", type=positive_int, default=None,
                   help="worlds (preset, seed) run at once, each in its own process (default: the profile's; the "
                        "numbers do not depend on it)")
    p.add_argument("--backend", choices=("local", "ray"), default=None,
                   help="local: this process (or --jobs processes); ray: each cell a task on a Ray cluster "
                        "(pip install -e \".[ray]\"), sized by --set ray_cpus=N (the local cluster's CPUs), "
                        "cell_cpus=C, torch_threads=T (default: the profile's, local)")
    p.add_argument("--address", default=None, metavar="HOST:PORT",
                   help="run on the running Ray cluster whose head this is (started with `ray start --head`; the "
                        "run folder must be at the same path on every machine; implies --backend ray)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable; YAML values; dotted keys for sim., supervised., "
                        "hyperparams., e.g. --set sim.horizon_days=14 --set rl_timesteps=50000)")
    p.add_argument("--overwrite", action="store_true", help="delete a previous run in --out first")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=run_compare_cli)


def run_compare_cli(args: Any) -> int:
    """``driftrec compare``: resolve the config, run or resume, print the summary's path and verdicts."""
    import_from_cwd()  # `policies` may name module:factory in the current folder
    overrides = parse_sets(args.overrides)
    for key in ("presets", "seeds", "jobs", "backend", "address"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    if args.address is not None and args.backend is None:
        overrides["backend"] = "ray"  # a cluster's address: its backend
    cfg = load_config(args.config, args.profile, overrides)
    if args.show_config:
        print(yaml.safe_dump({"profile": args.profile, "config": cfg.to_dict()}, sort_keys=False), end="")
        return 0
    out = args.out if args.out is not None else Path("runs") / args.profile
    try:
        result = run_compare(cfg, out, profile=args.profile, overwrite=args.overwrite, quiet=args.quiet)
    except KeyboardInterrupt:
        print(f"driftrec: interrupted; the finished cells in {out} are kept: run the same command to resume",
              file=sys.stderr)
        return 130
    print(result.summary)
    print(f"compare: {len(result.results)} cells in {result.wall_s:.0f} s -> {out}")
    return 0
