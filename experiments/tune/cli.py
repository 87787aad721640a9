"""``driftrec tune`` on the command line: the subcommand's flags and its summary table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from driftrec.envs.config import parse_sets
from driftrec.experiments.cliutil import CLIError, int_arg, positive_int
from driftrec.experiments.tune.job import run_tune
from driftrec.experiments.tune.settings import (
    DEFAULT_EVAL_USERS,
    DEFAULT_HEARTBEAT,
    DEFAULT_LOG_USERS,
    DEFAULT_OUT,
    TuneConfig,
)
from driftrec.experiments.tune.space import SUPERVISED, TUNABLE
from driftrec.experiments.tune.storage import STALE_BEATS, parse_storage_url

SEED = int_arg(0, 2**31, "an integer seed")


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
        overrides=parse_sets(args.overrides), storage=args.storage, workers=args.workers, seed=args.seed,
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
        if result.best_test_value is not None:
            table.add_row("test", f"{escape(result.metric)} {result.best_test_value:.6g} (held-out; the best trial "
                                  "only, never selected on)")
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
