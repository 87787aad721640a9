"""``driftrec simulate``: users living their lives under a policy, their events written to Parquet."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any

from driftrec.agents import plugins
from driftrec.agents.policies import DEFAULT_BURN_IN_USERS
from driftrec.agents.registry import POLICIES, make_policy
from driftrec.envs.config import parse_sets
from driftrec.envs.events import EventLogError, EventWriter, load_events
from driftrec.envs.policy import Policy
from driftrec.envs.presets import preset_config
from driftrec.envs.rollout import simulate_log, train_seeds
from driftrec.envs.user_model import build_user_model
from driftrec.experiments.cliutil import (
    CLIError,
    check_output,
    import_from_cwd,
    int_arg,
    positive_int,
    users_progress,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
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
                   help="policy that serves the users: random, popularity, oracle-greedy, logging, or your own "
                        "module.path:factory (as in compare's policies; the README's \"Your own policy\") "
                        "(default: random)")
    p.add_argument("--policy-logs", type=Path, default=None, metavar="FILE",
                   help="event log (Parquet) that popularity and logging rank items by (default: a random-policy "
                        f"burn-in of {DEFAULT_BURN_IN_USERS} users with seeds SEED + 2*10**9 + i); a "
                        "module:factory whose signature names logs= or logs_path= gets this log")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Simulate ``args.users`` users and write their events to ``args.out``."""
    overrides = parse_sets(args.overrides)
    if args.days is not None:
        overrides["horizon_days"] = args.days
    cfg = preset_config(args.preset, overrides)
    check_output(args.out)
    user_model = build_user_model(cfg)
    if plugins.is_plugin(args.policy):
        policy = plugin_policy(args, user_model)
        user_code = plugins.raised_by(args.policy, "its policy")  # its exception: one line, no half-written log
    else:
        policy = make_policy(args.policy, user_model, args.users, args.seed, **policy_options(args))
        user_code = contextlib.nullcontext()

    start = time.perf_counter()
    with users_progress(args.users) as (progress, task), EventWriter(args.out, cfg) as writer, user_code:
        log = simulate_log(user_model, policy, train_seeds(args.seed, args.users), writer=writer, batch=args.batch,
                           on_done=lambda k: progress.advance(task, k))
    wall = time.perf_counter() - start
    total_reward = float(log.stats.reward.sum())
    print(f"simulated {args.users} users ({args.preset}, {cfg.horizon_days:g} days, policy {args.policy}): "
          f"{writer.n_events} events, reward per user {total_reward / args.users:.4f}, "
          f"{wall:.1f} s -> {args.out}")
    return 0


def plugin_policy(args: argparse.Namespace, user_model: Any) -> Policy:
    """The policy of a ``module.path:factory`` entry, called as compare calls it
    (:mod:`driftrec.agents.plugins`), with ``--policy-logs`` as its ``logs`` / ``logs_path`` when its
    signature names them; the current folder is importable."""
    import_from_cwd()
    wants = plugins.factory_inputs(plugins.load_factory(args.policy))
    if args.epsilon is not None:
        raise CLIError(f"--epsilon is for the logging policy, not '{args.policy}'")
    if args.policy_logs is not None and not wants:
        raise CLIError(f"--policy-logs: the factory of '{args.policy}' takes no logs (its signature names neither "
                       f"{' nor '.join(plugins.PLUGIN_INPUTS)})")
    if wants and args.policy_logs is None:
        raise CLIError(f"policy '{args.policy}' takes {' and '.join(wants)}: give it an event log with "
                       "--policy-logs FILE (e.g. one written by driftrec simulate)")
    inputs: dict[str, Any] = {}
    if wants:
        try:
            inputs = {"logs": load_events(args.policy_logs), "logs_path": args.policy_logs}
        except EventLogError as err:
            raise CLIError(str(err)) from None
    return plugins.make_plugin_policy(args.policy, user_model, args.users, args.seed, **inputs)


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
