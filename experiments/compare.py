"""``driftrec compare``: every policy, trained and judged on the same users, with honest statistics.

For each preset and seed (one *world*: its catalog is ``world_seed + seed``):

1. **logs**: the logging policy (an epsilon-mix of popularity and uniform random, propensities
   recorded) serves the ``log_users`` training users ``seed + i``, and with ``equal_requests`` (the
   default) the next ones too until the log holds ``rl_timesteps`` requests, as many as a cold RL
   agent trains on; their events are the data of the popularity policy and the supervised models.
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
written to a temporary name and renamed, and a model trains into ``user_model.partial/`` that is
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
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from driftrec.agents.registry import make_policy
from driftrec.envs.config import ConfigError, parse_sets
from driftrec.envs.presets import PRESETS, resolve_preset
from driftrec.envs.rollout import eval_seeds
from driftrec.experiments.artifacts import atomic_path, plain, write_parquet, write_text
from driftrec.experiments.cliutil import import_from_cwd, positive_int
from driftrec.experiments.compare_config import (
    DEFAULT_PROFILE,
    LOGS,
    RESUMABLE,
    TEACHER,
    WARM,
    WARM_TEACHER,
    CompareConfig,
    family,
    load_config,
)
from driftrec.experiments.report import write_summary
from driftrec.experiments.stats import HIDDEN_STATE
from driftrec.experiments.world_run import Reporter, WorldRun


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

    policy = make_policy("oracle-greedy", world.user_model, cfg.trace_users, world.seed)
    traj = figures.trace_interests(world.user_model, policy, eval_seeds(world.seed, cfg.trace_users))
    figures.interest_trajectories(traj, path)


def _notes(cfg: CompareConfig, worlds: Sequence[WorldRun], results: pd.DataFrame) -> list[str]:
    """Budgets and wall time per stage, for summary.md."""
    logs = (f"logs of at least {cfg.log_users:,} users, as many as hold {cfg.rl_timesteps:,} requests "
            "(equal_requests: the supervised models learn from as many requests as a cold RL agent trains on),"
            if cfg.equal_requests else f"logs of {cfg.log_users:,} users")
    notes = [f"{len(cfg.presets)} preset(s) x {cfg.seeds} seed(s); {cfg.eval_users:,} evaluation users per world, "
             f"the same for every policy (paired); {logs} under the logging policy (epsilon {cfg.epsilon:g}); "
             f"RL agents trained for {cfg.rl_timesteps:,} user-steps each."]
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
