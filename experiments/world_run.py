"""One world (preset, seed) of a compare run: its logs, its cells and what each cell waits for
(:class:`WorldRun`), and the run's progress lines (:class:`Reporter`). :mod:`driftrec.experiments.compare`
runs the worlds and builds the artifacts from their cells."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftrec.agents import plugins
from driftrec.agents.evaluate import evaluate_policy
from driftrec.agents.registry import make_policy
from driftrec.envs.events import EventWriter, load_events, load_users
from driftrec.envs.presets import preset_config, resolve_preset
from driftrec.envs.rollout import simulate_log, train_seeds
from driftrec.envs.user_model import build_user_model
from driftrec.experiments.artifacts import plain, write_parquet, write_text
from driftrec.experiments.compare_config import LOGS, TEACHER, WARM, WARM_TEACHER, CompareConfig, family, uses_logs
from driftrec.experiments.train import train_policy


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
        self.user_model = build_user_model(self.sim_cfg)
        self._history_user_model: Any = None
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

    def user_model_for(self, obs_mode: str) -> Any:
        """The simulator with ``obs_mode`` (the sequence models read ``history``); same users, same dynamics."""
        if obs_mode == self.sim_cfg.obs_mode:
            return self.user_model
        if self._history_user_model is None or self._history_user_model.cfg.obs_mode != obs_mode:
            self._history_user_model = build_user_model(dataclasses.replace(self.sim_cfg, obs_mode=obs_mode))
        return self._history_user_model

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
            target = self.cfg.rl_timesteps if self.cfg.equal_requests else 0
            policy = make_policy("logging", self.user_model, self.cfg.log_users, self.seed, epsilon=self.cfg.epsilon)
            users, requests, more = 0, 0, self.cfg.log_users
            with EventWriter(self.logs_path, self.sim_cfg) as writer:  # with the users table: demographics
                while more > 0:  # the log_users users, then more at the rate so far until the log holds `target`
                    seeds = train_seeds(self.seed, users + more)[users:]
                    requests += int(simulate_log(self.user_model, policy, seeds, writer=writer).stats.requests.sum())
                    users += more
                    more = math.ceil((target - requests) * users / requests) if 0 < requests < target else 0
            wall = time.perf_counter() - start
            write_text(self.folder / "logs.json", json.dumps({"wall_s": wall, "events": writer.n_events,
                                                              "users": users, "requests": requests}) + "\n")
            self.report(f"{self.name}: logged {writer.n_events:,} events of {users:,} users ({requests:,} requests) "
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
        user_code = plugins.raised_by(policy, "its policy") if plugins.is_plugin(policy) else contextlib.nullcontext()
        with user_code:  # a plugin's act(): one line naming the entry
            result = evaluate_policy(trained, sim.cfg, self.cfg.eval_users, self.seed, user_model=sim)
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
            return make_policy(policy, self.user_model, n, self.seed), {}, self.user_model
        if policy == "oracle-planner":  # tunes itself on the world's validation users
            start = time.perf_counter()
            made = make_policy(policy, self.user_model, n, self.seed)
            return made, {"wall_s": time.perf_counter() - start, **getattr(made, "tuning", {})}, self.user_model
        if policy == "logging":
            return make_policy("logging", self.user_model, n, self.seed, epsilon=self.cfg.epsilon), {}, self.user_model
        if policy == "popularity":
            start = time.perf_counter()
            made = make_policy("popularity", self.user_model, n, self.seed, events=self.logs())
            return made, {"wall_s": time.perf_counter() - start, "env_steps": self.logged_requests()}, self.user_model
        if plugins.is_plugin(policy):
            return self._plugin(policy)
        if family(policy) == "rl":
            return self._rl(policy)
        return self._supervised(policy)

    def _plugin(self, policy: str) -> tuple[Any, dict[str, Any], Any]:
        """A user's ``module:factory`` (:mod:`driftrec.agents.plugins`); taking the logs, it pays their requests."""
        wants = plugins.factory_inputs(plugins.load_factory(policy))
        given = {"logs": self.logs(), "logs_path": self.logs_path} if wants else {}  # simulated here if needed
        made, info = plugins.build_plugin(policy, self.user_model, self.cfg.eval_users, self.seed, **given)
        cost = {**info, "env_steps": info["env_steps"] + (self.logged_requests() if wants else 0)}
        return made, cost, self.user_model

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
        return SB3Policy(agent), info, self.user_model

    def _teacher(self) -> Path:
        """The world's :data:`WARM_TEACHER` model (the ``mlp`` cell's, trained here if that cell has not run)."""
        folder = self.cell(WARM_TEACHER) / "model"
        self._train_into(folder, lambda out: self._fit(WARM_TEACHER, out, False))
        return folder / "model.pt"

    def _supervised(self, policy: str) -> tuple[Any, dict[str, Any], Any]:
        from driftrec.agents.supervised import RetrainingPolicy, SupervisedPolicy, load_network  # torch

        kind, _, variant = policy.partition("-")
        base_folder = self.cell(kind) / "model"
        if variant == "retrain" and (base_folder / "done.json").is_file():
            folder = base_folder  # deploy the trained <kind> and let it refit itself
        else:
            folder = self.cell(policy) / "model"
        info = self._train_into(folder, lambda out: self._fit(kind, out, variant == "finetune"))
        network = load_network(folder / "model.pt")
        sim = self.user_model_for("history" if network.sequence else self.sim_cfg.obs_mode)
        if variant == "retrain":
            made: Any = RetrainingPolicy(network, sim, every_days=self.cfg.retrain_every_days,
                                         window_days=self.cfg.retrain_window_days, seed=self.seed,
                                         log=self.logs(), log_users=load_users(self.logs_path))
        else:
            made = SupervisedPolicy(network, sim)
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


def _fmt(value: Any) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"
