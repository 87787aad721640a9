"""``driftrec bench --learners``: how fast the learners run, beside the simulator that feeds them.

What is measured (on one preset, ``default`` unless ``--presets`` names another):

- **RL agents** (PPO, DQN): user-steps/s of ``driftrec train``'s own code path
  (:func:`driftrec.experiments.train.run_train`, packaged hyperparameters, validation and
  checkpoints off) as ``(long - short) / (t_long - t_short)`` between a short and a long run, each
  in a fresh child process and timed around the whole ``run_train`` call, so process start-up,
  construction, the first rollout's set-up and saving cancel. The children run as ``driftrec
  train`` does: unpinned, one torch thread (its ``--torch-threads`` default, as compare and offline
  run) unless ``--torch-threads`` sets another count (0: torch's default, one per core; the report
  records the count each run used). On a machine whose cores are shared, torch's default can run
  many times slower than one thread.
- **Supervised models** (mlp, gru, transformer), in one child: a log of ``log_users`` users under
  the logging policy (as ``driftrec compare`` makes it), its examples, then per repeat a fresh
  model trained by :func:`driftrec.agents.supervised.fit` for ``epochs`` epochs (examples x epochs
  / seconds; one untimed warm-up epoch on a slice first), and served on the same ``serve_users``
  evaluation users by :func:`driftrec.agents.evaluate.evaluate_policy`, the rollout ``compare``
  judges with, beside ``oracle-greedy`` on the same users (requests served / seconds, and the
  evaluation seconds as a multiple of oracle-greedy's of the same repeat).
- **The simulator**: :mod:`driftrec.experiments.bench`'s batched measurement (VecEnv and bare core,
  one pinned core) at each RL agent's ``n_envs``, so the table shows the share of a learner's time
  the simulator takes.

Two figures of the issue are computed from the medians, never asserted: PPO at least 5,000
user-steps/s (``driftrec train ppo --preset default``), and serving a supervised model at most 4x
oracle-greedy's evaluation time on the same users (the worst of the models is the value).

From Python: ``run_learners(LearnerSettings(...))`` returns the report (and writes it as JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from driftrec.envs.config import Config, ConfigError, knob
from driftrec.envs.presets import PRESETS
from driftrec.experiments import bench_core

SCHEMA_VERSION = 1
TARGET_PPO_STEPS = 5_000.0  # user-steps/s of `driftrec train ppo` on the preset
TARGET_SERVE_RATIO = 4.0  # a supervised model's evaluation seconds / oracle-greedy's on the same users, at most
RL = ("ppo", "dqn")
SUPERVISED = ("mlp", "gru", "transformer")
REFERENCE = "oracle-greedy"
WARMUP_USERS = 2  # users each policy serves, untimed, before its timed evaluation (lazy set-up, caches)
MODULE = "driftrec.experiments.bench_learners"


@dataclasses.dataclass(frozen=True)
class LearnerSettings(Config):
    """What ``driftrec bench --learners`` measures and where it writes the report (a message names a
    setting by its flag, as :class:`~driftrec.experiments.bench.BenchSettings` does)."""

    label = "bench --learners setting"

    preset: str = knob("default", "simulator preset of every measurement", choices=tuple(PRESETS))
    algos: tuple[str, ...] = knob(RL, "RL agents timed, each once", choices=RL)
    rl_steps: tuple[int, int] = knob((16_384, 65_536), "user-steps of the short and the long training run", 1)
    models: tuple[str, ...] = knob(SUPERVISED, "supervised models timed, each once", choices=SUPERVISED)
    log_users: int = knob(1000, "users of the logging policy whose events the supervised models train on", 1)
    epochs: int = knob(2, "timed training epochs of each supervised model per repeat", 1)
    serve_users: int = knob(500, "evaluation users every policy serves (the same users; compare standard: 500)", 1)
    repeats: int = knob(3, "samples per measurement; the report uses their median", 1)
    seconds: float = knob(1.0, "timed seconds of one simulator sample, > 0")
    torch_threads: int = knob(1, "torch threads of the learner children (as `driftrec train`); 0: torch's default", 0)
    hyperparams: Mapping[str, Mapping[str, Any]] = knob({}, "per timed algo, hyperparameters over the YAML")
    supervised: Mapping[str, Any] = knob({}, "SupervisedConfig keys (model sizes)")
    out: str | None = knob("bench_learners.json", "JSON report path; None writes nothing")
    cpu: int | None = knob(None, "CPU the simulator child is pinned to (as `driftrec bench`); -1 no pinning", -1)
    isolate: bool = knob(True, "each group in a fresh child; False: in this process (tests)")

    @classmethod
    def subject(cls, key: str) -> str:
        """The flag of setting ``key``: ``--serve-users``; the preset's is ``--presets``."""
        return "--presets" if key == "preset" else bench_core.flag(key)

    def check(self) -> None:
        """Each name once, something to time, hyperparameters only for timed agents, a short run
        shorter than the long one, samples that take some time."""
        for name, given, known in (("--algos", self.algos, RL), ("--models", self.models, SUPERVISED)):
            if len(set(given)) != len(given):
                raise ConfigError(f"{name}: distinct names from {', '.join(known)}, got {list(given)}")
        if not self.algos and not self.models:
            raise ConfigError("--algos and --models: nothing to time")
        if set(self.hyperparams) - set(self.algos):
            raise ConfigError(f"hyperparams: entries for {sorted(set(self.hyperparams) - set(self.algos))}, "
                              "which are not timed")
        if len(self.rl_steps) != 2 or not self.rl_steps[0] < self.rl_steps[1]:
            raise ConfigError(f"--rl-steps: SHORT,LONG with 1 <= SHORT < LONG, got "
                              f"{','.join(map(str, self.rl_steps))}")
        bench_core.check_seconds(self.seconds)


# Short settings (`driftrec bench --learners --quick`): about a minute on 2 cores, every path runs.
QUICK = {"rl_steps": (4096, 12_288), "log_users": 100, "epochs": 1, "serve_users": 20, "repeats": 1, "seconds": 0.2}


# ===================================================================================== parent side
def run_learners(settings: LearnerSettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every learner measurement (each group in a fresh child unless ``settings.isolate`` is
    False); return the report, also written to ``settings.out`` as JSON when set. ``progress``
    receives one line as each group starts."""
    settings = settings.validate()
    say = progress or (lambda line: None)
    started, load_before = time.time(), bench_core._loadavg()
    sim_cpu = bench_core._choose_cpu(settings.cpu) if settings.isolate else None

    def group(task: dict[str, Any], cpu: int | None = None, single_thread: bool = False) -> dict[str, Any]:
        if not settings.isolate:
            return _run_task({**task, "cpu": None})
        return bench_core._in_child(task, cpu, module=MODULE, single_thread=single_thread)

    def train_run(algo: str, steps: int) -> dict[str, Any]:
        return group({"kind": "rl", "algo": algo, "preset": settings.preset, "steps": steps,
                      "hyperparams": dict(settings.hyperparams.get(algo, {})), "torch_threads": settings.torch_threads})

    if not settings.isolate:  # fresh children all pay the one-time costs; here only the first run would
        for algo in settings.algos:
            train_run(algo, settings.rl_steps[0])
    runs: dict[str, list[dict[str, Any]]] = {algo: [] for algo in settings.algos}
    for repeat in range(settings.repeats):  # interleaved, so a burst of load hits every agent alike
        for algo in settings.algos:
            say(f"{algo}: training runs of {settings.rl_steps[0]:,} and {settings.rl_steps[1]:,} user-steps "
                f"(repeat {repeat + 1}/{settings.repeats})")
            runs[algo].append({name: train_run(algo, steps)
                               for name, steps in zip(("short", "long"), settings.rl_steps, strict=True)})

    supervised: dict[str, Any] = {}
    if settings.models:
        say(f"supervised: log of {settings.log_users:,} users; train {', '.join(settings.models)}; serve them and "
            f"{REFERENCE} on {settings.serve_users:,} users ({settings.repeats} repeats)")
        supervised = group({"kind": "supervised", "preset": settings.preset, "models": list(settings.models),
                            "log_users": settings.log_users, "epochs": settings.epochs,
                            "serve_users": settings.serve_users, "repeats": settings.repeats,
                            "torch_threads": settings.torch_threads, "config": dict(settings.supervised)})

    simulator: dict[int, dict[str, Any]] = {}
    for n in sorted({pair["long"]["n_envs"] for pairs in runs.values() for pair in pairs}):
        say(f"simulator: VecEnv and core of {settings.preset} at N={n} (one pinned core)")
        raw = group({"kind": "batched", "presets": [settings.preset], "users": n, "seconds": settings.seconds,
                     "repeats": settings.repeats, "clock": "wall"}, sim_cpu, single_thread=True)
        simulator[n] = bench_core._batched_row(settings.preset, n, raw)

    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "section": "learners",
        "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(time.time() - started, 3),
        "machine": {**bench_core._machine(), "torch": _torch_version(), "isolated": settings.isolate,
                    "simulator_pinned_cpu": sim_cpu, "loadavg_before": load_before,
                    "loadavg_after": bench_core._loadavg()},
        "settings": settings.to_dict(),
        "rl": [_rl_row(algo, pairs, simulator) for algo, pairs in runs.items()],
        "supervised": _supervised_rows(supervised) if supervised else {},
        "simulator": list(simulator.values()),
    }
    report["targets"] = evaluate_targets(report)
    if settings.out:
        Path(settings.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def evaluate_targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's two figures: measured value (from the medians), threshold and pass flag; a figure
    whose measurement was not run has value and passed None."""
    ppo = next((r for r in report["rl"] if r["algo"] == "ppo"), None)
    serve = [r for r in report.get("supervised", {}).get("serve", []) if r["policy"] != REFERENCE]
    worst = max(serve, key=lambda r: r["ratio_to_reference"]["median"], default=None)
    preset = report["settings"]["preset"]
    figures = {
        "ppo_user_steps": (None if ppo is None else ppo["rate"]["median"], TARGET_PPO_STEPS, ">=",
                           f"driftrec train ppo --preset {preset}: user-steps/s"),
        "serve_ratio": (None if worst is None else worst["ratio_to_reference"]["median"], TARGET_SERVE_RATIO, "<=",
                        f"supervised serving / {REFERENCE} evaluation seconds, same users (worst: "
                        f"{'-' if worst is None else worst['policy']})"),
    }
    return {name: {"description": doc, "value": value, "threshold": threshold, "compare": op,
                   "passed": None if value is None else bool(value >= threshold if op == ">=" else value <= threshold)}
            for name, (value, threshold, op, doc) in figures.items()}


def _rl_row(algo: str, pairs: list[dict[str, Any]], simulator: dict[int, dict[str, Any]]) -> dict[str, Any]:
    rates = [_ratio(p["long"]["timesteps"] - p["short"]["timesteps"], p["long"]["seconds"] - p["short"]["seconds"])
             for p in pairs]
    n = pairs[0]["long"]["n_envs"]
    sim = simulator[n]["vec_env"]["median"]
    rate = _summary(rates)
    share = None if rate["median"] is None else rate["median"] / sim
    return {"algo": algo, "n_envs": n, "torch_threads": pairs[0]["long"]["torch_threads"], "rate": rate,
            "simulator_vec_env": sim, "simulator_share": share, "runs": pairs}


def _supervised_rows(raw: dict[str, Any]) -> dict[str, Any]:
    train = [{"model": m, "examples": raw["examples"], "epochs": raw["epochs"],
              "rate": _summary([raw["examples"] * raw["epochs"] / s for s in raw["train_seconds"][m]]),
              "seconds": raw["train_seconds"][m]} for m in raw["models"]]
    ref = raw["serve"][REFERENCE]
    serve = []
    for policy in (REFERENCE, *raw["models"]):
        samples = raw["serve"][policy]
        serve.append({"policy": policy, "users": raw["serve_users"], "requests": [s["requests"] for s in samples],
                      "seconds": bench_core._summary([s["seconds"] for s in samples]),
                      "rate": _summary([_ratio(s["requests"], s["seconds"]) for s in samples]),
                      "ratio_to_reference": bench_core._summary([s["seconds"] / r["seconds"]
                                                            for s, r in zip(samples, ref, strict=True)])})
    return {"log": raw["log"], "torch_threads": raw["torch_threads"], "train": train, "serve": serve}


def _torch_version() -> str:
    import torch  # bench_core._machine has imported it already, through stable_baselines3

    return str(torch.__version__)


def _ratio(num: float, den: float) -> float | None:
    # a noisy pair can leave no time between the short and the long run: no rate (None), not a huge one
    return num / den if den > 0 else None


def _summary(samples: list[float | None]) -> dict[str, Any]:
    """As :func:`driftrec.experiments.bench_core._summary`, the median over the samples that have a value."""
    kept = [x for x in samples if x is not None]
    return {"median": statistics.median(kept) if kept else None, "samples": samples}


# ====================================================================================== child side
def _child_main(task_json: str, out_path: str) -> None:
    """Entry point of a learner child process (see :func:`driftrec.experiments.bench_core._child_main`)."""
    bench_core._child_main(task_json, out_path, run_task=_run_task)


def _run_task(task: dict[str, Any]) -> dict[str, Any]:
    if task["kind"] == "rl":
        result = _measure_rl(task["algo"], task["preset"], task["steps"], task["hyperparams"], task["torch_threads"])
    elif task["kind"] == "supervised":
        result = _measure_supervised(task)
    else:  # the simulator: driftrec bench's own groups
        return bench_core._run_task(task)
    result["cpus_used"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return result


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[int]:
    """torch's thread count set to ``threads`` (0: left as it is) for the block; yields the count in force."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _measure_rl(algo: str, preset: str, steps: int, hyperparams: dict[str, Any], threads: int) -> dict[str, Any]:
    """One ``driftrec train`` run of ``steps`` user-steps, validation and checkpoints off, timed whole."""
    # in the measuring child, as the imports below
    from driftrec.envs.presets import preset_config
    from driftrec.experiments.train import train_policy

    with _torch_threads(threads) as used, tempfile.TemporaryDirectory(prefix="driftrec-bench-rl-") as tmp:
        sim = preset_config(preset)
        start = time.perf_counter()
        spec = train_policy(algo, sim, tmp, preset=preset, settings=dict(
            hyperparams=hyperparams, timesteps=steps, eval_freq=0, checkpoint_freq=0)).record
        seconds = time.perf_counter() - start
    return {"timesteps": int(spec["timesteps"]), "seconds": seconds, "learn_seconds": float(spec["wall_time_s"]),
            "n_envs": int(spec["hyperparams"]["n_envs"]), "torch_threads": used}


def _measure_supervised(task: dict[str, Any]) -> dict[str, Any]:
    """Log, examples, then per repeat: train each model ``epochs`` epochs; serve oracle-greedy and each model."""
    # the simulator (numba) and torch load in the measuring child: `driftrec bench` itself imports neither
    from driftrec.agents.evaluate import evaluate_policy
    from driftrec.agents.registry import make_policy
    from driftrec.agents.supervised import (
        FeatureSpec,
        SupervisedConfig,
        SupervisedPolicy,
        build_examples,
        fit,
        make_network,
    )
    from driftrec.envs.events import EventWriter, load_events, load_users
    from driftrec.envs.presets import preset_config
    from driftrec.envs.rollout import simulate_log, train_seeds
    from driftrec.envs.user_model import build_user_model

    cfg = SupervisedConfig.from_dict({"preset": task["preset"], **task["config"]})
    sim_cfg = preset_config(task["preset"])
    sims = {"features": build_user_model(sim_cfg),
            "history": build_user_model(dataclasses.replace(sim_cfg, obs_mode="history"))}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="driftrec-bench-log-") as tmp:  # the log as compare makes it
        logging = make_policy("logging", sims["features"], task["log_users"], 0)
        path = Path(tmp) / "logs.parquet"
        with EventWriter(path) as writer:
            simulate_log(sims["features"], logging, train_seeds(0, task["log_users"]), writer=writer)
        events, users = load_events(path), load_users(path)
    spec = FeatureSpec.from_config(sim_cfg)
    examples = build_examples(events, spec, users)
    log = {"users": task["log_users"], "events": int(len(events)), "examples": len(examples),
           "seconds": time.perf_counter() - start}

    def trained(kind: str, data: Any, epochs: int, seed: int) -> tuple[Any, float]:
        network = make_network(kind, spec, cfg, seed)
        network.uses_demographics = data.knows_demographics(spec)
        network.set_pos_weights(data, cfg.click_pos_weight, cfg.purchase_pos_weight)
        begin = time.perf_counter()
        fit(network, data, None, epochs=epochs, lr=cfg.lr, patience=cfg.patience, seed=seed)
        return network, time.perf_counter() - begin

    def served(policy: Any, sim: Any, n: int) -> dict[str, float]:
        summary = evaluate_policy(policy, sim.cfg, n, 0, user_model=sim).summary
        return {"seconds": summary["wall_s"], "requests": round(summary["requests"] * summary["users"])}

    n_serve = task["serve_users"]
    train_s: dict[str, list[float]] = {m: [] for m in task["models"]}
    serve: dict[str, list[dict[str, float]]] = {p: [] for p in (REFERENCE, *task["models"])}
    with _torch_threads(task["torch_threads"]) as used:
        warm = examples.take(np.arange(min(len(examples), 2 * cfg.batch_size)))
        served(make_policy(REFERENCE, sims["features"], WARMUP_USERS, 0), sims["features"], WARMUP_USERS)
        for kind in task["models"]:  # untimed: lazy set-up of torch and the first calls
            network, _ = trained(kind, warm, 1, 0)
            sim = sims["history" if network.sequence else "features"]
            served(SupervisedPolicy(network, sim), sim, WARMUP_USERS)
        for repeat in range(task["repeats"]):
            serve[REFERENCE].append(served(make_policy(REFERENCE, sims["features"], n_serve, 0), sims["features"],
                                           n_serve))
            for kind in task["models"]:
                network, seconds = trained(kind, examples, task["epochs"], repeat)
                train_s[kind].append(seconds)
                sim = sims["history" if network.sequence else "features"]
                serve[kind].append(served(SupervisedPolicy(network, sim), sim, n_serve))
    return {"models": task["models"], "log": log, "examples": len(examples), "epochs": task["epochs"],
            "serve_users": n_serve, "train_seconds": train_s, "serve": serve, "torch_threads": used}


# ============================================================================ command line
LEARNER_FLAGS = ("algos", "rl_steps", "models", "log_users", "epochs", "serve_users", "torch_threads")
SIMULATOR_FLAGS = ("users", "memory_users", "clock")  # driftrec bench's, unused by --learners


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--learners`` flag and its options, on ``driftrec bench``'s parser."""
    d = LearnerSettings()
    g = parser.add_argument_group(
        "learners", "--learners times PPO and DQN training, supervised training and serving, beside the simulator; "
                    "--presets (one), --seconds (simulator samples), --repeats, --out, --cpu, --quick and --check "
                    "apply to it too")
    g.add_argument("--learners", action="store_true",
                   help=f"run the learner section only and write its own report (default: {d.out})")
    g.add_argument("--algos", type=bench_core._names, default=None, help=f"RL agents (default: {','.join(d.algos)})")
    g.add_argument("--rl-steps", type=bench_core._ints, default=None, metavar="SHORT,LONG",
                   help="user-steps of the short and the long training run; the rate is their difference over the "
                        f"difference of their times (default: {d.rl_steps[0]},{d.rl_steps[1]})")
    g.add_argument("--models", type=bench_core._names, default=None,
                   help=f"supervised models (default: {','.join(d.models)})")
    g.add_argument("--log-users", type=int, default=None, help=f"users of the training log (default: {d.log_users})")
    g.add_argument("--epochs", type=int, default=None, help=f"timed epochs per training (default: {d.epochs})")
    g.add_argument("--serve-users", type=int, default=None,
                   help=f"evaluation users every policy serves (default: {d.serve_users})")
    g.add_argument("--torch-threads", type=int, default=None,
                   help="torch threads of the learners (default: 1, as `driftrec train`, compare and offline run; "
                        "0: torch's default, one per core)")


def check_flags(args: argparse.Namespace) -> None:
    """Raise ValueError (one line) on a flag the chosen section does not read."""
    learners = getattr(args, "learners", False)
    given = [n for n in (SIMULATOR_FLAGS if learners else LEARNER_FLAGS) if getattr(args, n, None) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ValueError(f"{flag} is not read by {'--learners' if learners else 'the simulator section'}; "
                         f"{'drop it' if learners else 'add --learners'}")


def settings_from_args(args: argparse.Namespace) -> LearnerSettings:
    """LearnerSettings from parsed arguments: explicit flags, else --quick's values, else the defaults."""
    check_flags(args)
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    for name in (*LEARNER_FLAGS, "repeats", "seconds", "cpu"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.presets is not None:
        if len(args.presets) != 1:
            raise ValueError(f"--presets: --learners times one preset, got {', '.join(args.presets)}")
        values["preset"] = args.presets[0]
    out = LearnerSettings.out if args.out is None else (args.out or None)
    return LearnerSettings(**values, out=out)


def print_report(report: dict[str, Any], console: Any) -> None:
    """The report as rich tables: RL agents beside the simulator, supervised models, the figures."""
    from rich.table import Table

    s, fmt = report["settings"], bench_core._fmt
    repeats = f"median of {s['repeats']}"
    rl = Table(title=f"RL training on {s['preset']}, user-steps/s ({repeats}; runs of {s['rl_steps'][0]:,} and "
                     f"{s['rl_steps'][1]:,} user-steps)")
    rl.caption = ("learn: `driftrec train`'s run_train, (long - short) / (t_long - t_short); simulator: its VecEnv "
                  "alone at the same N on one pinned core; share: the simulator's part of the learner's time")
    for col in ("agent", "N", "torch threads", "learn", "simulator", "share"):
        rl.add_column(col, justify="left" if col == "agent" else "right")
    for row in report["rl"]:
        rl.add_row(row["algo"], f"{row['n_envs']:,}", str(row["torch_threads"]), _rate(row["rate"]["median"]),
                   fmt(row["simulator_vec_env"]),
                   "n/a" if row["simulator_share"] is None else f"{row['simulator_share']:.2%}")
    console.print(rl)

    sup = report["supervised"]
    if sup:
        log = sup["log"]
        table = Table(title=f"supervised models ({repeats}; torch threads {sup['torch_threads']})")
        table.caption = (f"train: fit on {log['examples']:,} examples of {log['users']:,} logged users x "
                         f"{s['epochs']} epochs; serve: evaluate_policy on the same {s['serve_users']:,} users, "
                         f"x {REFERENCE} = evaluation seconds over {REFERENCE}'s")
        for col in ("policy", "train examples/s", "serve requests/s", "eval s", f"x {REFERENCE}"):
            table.add_column(col, justify="left" if col == "policy" else "right")
        train = {r["model"]: r for r in sup["train"]}
        for row in sup["serve"]:
            fitted = train.get(row["policy"])
            table.add_row(row["policy"], "-" if fitted is None else _rate(fitted["rate"]["median"]),
                          _rate(row["rate"]["median"]), f"{row['seconds']['median']:.2f}",
                          f"{row['ratio_to_reference']['median']:.2f}")
        console.print(table)

    console.print(bench_core.targets_table("figures of the issue (computed, not asserted)",
                                      ("figure", "value", "threshold", "met"), report["targets"],
                                      lambda v, t: fmt(v) if t["compare"] == ">=" else f"{v:.2f}"))
    m = report["machine"]
    console.print(f"[dim]{m['cpu_model']}, {m['cpu_count']} CPUs (learners unpinned, simulator pinned to "
                  f"{m['simulator_pinned_cpu']}); load average before {m['loadavg_before']}, after "
                  f"{m['loadavg_after']}; Python {m['python']}, torch {m['torch']}, SB3 {m['stable_baselines3']}[/dim]")


def _rate(value: float | None) -> str:
    return "n/a" if value is None else bench_core._fmt(value)
