"""The ``driftrec`` command line.

Every subcommand registers itself with ``add_parser(subparsers)`` and sets ``func(args) -> int``
(the exit status) through ``set_defaults``; ``bench`` lives in :mod:`driftrec.experiments.bench`.
User mistakes (a bad config key, preset, policy or output path) print one line,
``driftrec: error: ...``, on stderr and exit with status 2; nothing is left half-written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from driftrec.agents.policies import DEFAULT_BURN_IN_USERS
from driftrec.agents.registry import POLICIES, make_policy
from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.events import EventLogError, EventRecorder, EventWriter, load_events
from driftrec.envs.model import build_model
from driftrec.envs.presets import PRESETS, preset_config
from driftrec.envs.rollout import rollout, train_seeds

EXIT_USAGE = 2


class CLIError(Exception):
    """A user mistake on the command line; the message is one line."""


# ------------------------------------------------------------------------------------- presets
def add_presets_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``driftrec presets``."""
    p = sub.add_parser("presets", help="list the simulator presets (or every config key)",
                       description="List the named, versioned simulator presets.")
    p.add_argument("--long", action="store_true", help="add each preset's paragraph of description")
    p.add_argument("--keys", action="store_true",
                   help="list every SimConfig key (default, allowed values, doc) instead")
    p.set_defaults(func=run_presets)


def run_presets(args: argparse.Namespace) -> int:
    """Print the presets table, or the config keys with ``--keys``."""
    console = Console()
    if args.keys:
        table = Table(title="SimConfig keys (driftrec simulate --set key=value)")
        table.add_column("key", no_wrap=True, style="bold")
        table.add_column("default", no_wrap=True)
        table.add_column("allowed")
        table.add_column("doc")
        for row in SimConfig.describe():
            table.add_row(*map(escape, row))
    else:
        table = Table(title="driftrec presets", show_lines=args.long)
        table.add_column("name", no_wrap=True, style="bold", min_width=max(map(len, PRESETS)))
        table.add_column("version", justify="right")
        table.add_column("summary")
        for preset in PRESETS.values():
            # --long puts the paragraph under the summary: one wide column reads better than two narrow ones
            text = escape(preset.summary)
            if args.long:
                text += f"\n\n[dim]{escape(preset.description)}[/dim]"
            table.add_row(escape(preset.name), str(preset.version), text)
    console.print(table)
    return 0


# ------------------------------------------------------------------------------------- simulate
def add_simulate_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``driftrec simulate``."""
    p = sub.add_parser(
        "simulate", help="simulate users under a policy and write their event log (Parquet)",
        description="Simulate N users, each living one life of --days days, under a logging policy, "
                    "and write every event to a Parquet file. User i is the user of seed SEED + i, "
                    "and that seed is its user_id in the log: ShopSimEnv(preset=...).reset(seed=user_id) "
                    "meets the same user.")
    p.add_argument("--preset", default="default", help="simulator preset (see `driftrec presets`); default: default")
    p.add_argument("--users", type=positive_int, default=100, help="number of users (default: 100)")
    p.add_argument("--days", type=float, default=None,
                   help="length of each user's life in days (sets horizon_days, over any --set; "
                        "default: the preset's)")
    p.add_argument("--policy", default="random",
                   help="policy that serves the users: random, popularity, oracle-greedy or logging (default: random)")
    p.add_argument("--policy-logs", type=Path, default=None, metavar="FILE",
                   help="event log (Parquet) that popularity and logging rank items by (default: a random-policy "
                        f"burn-in of {DEFAULT_BURN_IN_USERS} users with seeds SEED + 2*10**9 + i)")
    p.add_argument("--epsilon", type=float, default=None,
                   help="logging policy: probability of a uniform random item at each position (default: 0.3)")
    p.add_argument("--seed", type=int_arg(0, 2**62, "an integer seed"), default=0,
                   help="seed of users and policy (default: 0)")
    p.add_argument("--out", required=True, type=Path, help="output Parquet file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a SimConfig key (repeatable; values parsed as YAML; "
                        "`driftrec presets --keys` lists them)")
    p.add_argument("--batch", type=positive_int, default=4096,
                   help="users simulated at once; bounds memory (default: 4096)")
    p.set_defaults(func=run_simulate)


def run_simulate(args: argparse.Namespace) -> int:
    """Simulate ``args.users`` users and write their events to ``args.out``."""
    overrides = parse_overrides(args.overrides)
    if args.days is not None:
        overrides["horizon_days"] = args.days
    cfg = preset_config(args.preset, overrides)
    check_output(args.out)
    model = build_model(cfg)
    policy = make_policy(args.policy, model, args.users, args.seed, **policy_options(args))

    start = time.perf_counter()
    total_reward = 0.0
    with _progress(args.users) as (progress, task), EventWriter(args.out, cfg) as writer:
        recorder = EventRecorder(model)
        all_seeds = train_seeds(args.seed, args.users)
        for lo in range(0, args.users, args.batch):
            stats = rollout(model, policy, all_seeds[lo:lo + args.batch], recorder=recorder, batch=args.batch,
                            on_done=lambda k: progress.advance(task, k))
            total_reward += float(stats.reward.sum())
            writer.write(recorder.to_table())
            writer.write_users(recorder.users_table())
            recorder.clear()
    wall = time.perf_counter() - start
    print(f"simulated {args.users} users ({args.preset}, {cfg.horizon_days:g} days, policy {args.policy}): "
          f"{writer.n_events} events, reward per user {total_reward / args.users:.4f}, "
          f"{wall:.1f} s -> {args.out}")
    return 0


def policy_options(args: argparse.Namespace) -> dict[str, Any]:
    """The policy options of ``simulate``'s flags; a flag the chosen policy does not take is an error."""
    options: dict[str, Any] = {}
    if args.policy not in POLICIES:
        return options  # make_policy names the known policies
    if args.policy_logs is not None:
        if args.policy not in ("popularity", "logging"):
            raise CLIError(f"--policy-logs is for the popularity and logging policies, not '{args.policy}'")
        try:
            options["events"] = load_events(args.policy_logs)
        except EventLogError as err:
            raise CLIError(str(err)) from None
    if args.epsilon is not None:
        if args.policy != "logging":
            raise CLIError(f"--epsilon is for the logging policy, not '{args.policy}'")
        options["epsilon"] = args.epsilon
    return options


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> {key: value} with values parsed as YAML (numbers, bools, strings)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"bad --set '{item}': expected KEY=VALUE, e.g. --set drift_gradual=0.2")
        try:
            overrides[key] = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError:
            raise CLIError(f"bad --set '{item}': the value is not valid YAML") from None
    return overrides


def check_output(path: Path) -> None:
    """Fail early (before a long simulation) when ``path`` cannot be written."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CLIError(f"cannot write '{path}': it is a folder")
    if not folder.is_dir():
        raise CLIError(f"cannot write '{path}': folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write '{path}': folder '{folder}' is not writable")


@contextmanager
def _progress(total: int) -> Iterator[tuple[Progress, TaskID]]:
    """A rich progress bar of users done, on stderr (hidden when stderr is not a terminal)."""
    console = Console(stderr=True)
    with Progress(TextColumn("users done"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not console.is_terminal) as progress:
        yield progress, progress.add_task("simulate", total=total)


def int_arg(lo: int, hi: int | None = None, what: str = "an integer") -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[lo, hi)`` (no upper bound when ``hi`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo or (hi is not None and value >= hi):
            bound = f"[{lo}, {hi})" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {text!r}")
        return value

    return parse


positive_int = int_arg(1, what="a positive integer")
non_negative_int = int_arg(0, what="an integer")


# ------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The ``driftrec`` parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="driftrec", description="driftrec: recommendation under drifting user interests.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_presets_parser(sub)
    add_simulate_parser(sub)
    # bench, train and evaluate import numba kernels, SB3 and torch only when they run
    from driftrec.experiments import bench, calibrate, compare, ingest, offline, train, tune

    compare.add_parser(sub)
    bench.add_parser(sub)
    train.add_parser(sub)
    tune.add_parser(sub)
    ingest.add_parser(sub)
    offline.add_parser(sub)
    calibrate.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``driftrec`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, CLIError) as err:
        return _fail(str(err))
    except OSError as err:  # e.g. the disk filled or the folder vanished while writing
        where = f"'{err.filename}': " if err.filename else ""
        return _fail(f"{where}{err.strerror or err}")
    except KeyboardInterrupt:
        print("driftrec: interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(f"driftrec: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
