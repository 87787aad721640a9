"""``driftrec bench``: how fast the simulator runs, measured against Gymnasium's CartPoleVectorEnv.

What is measured (all rates in user-steps per second: N users stepped once is N user-steps):

- for each preset and batch size N: the SB3 VecEnv path (``make_vec_env(preset, N, seed=0)``,
  the shell agents train on) and the bare core (``user_model.step(state, a, inplace=True)`` then
  ``user_model.observe(state)``, restarting users whose life ended, as the shells do);
- Gymnasium's ``CartPoleVectorEnv(num_envs=N)`` at the same N, in the same process and repeat,
  as the reference: the ratio ours / CartPole cancels much of the machine's speed and load;
- the single-user Gymnasium env, raw ``ShopSimEnv`` and through ``gym.make`` (with the checker
  wrappers users get), resetting when an episode ends;
- the memory of a large batch (1,000,000 users by default): peak resident set of a fresh process
  before and after ``init`` + a few ``step`` + one ``observe``, and the bytes of the state arrays.

"On one core": every group runs in a fresh child process, pinned to one CPU
(``os.sched_setaffinity``) with the BLAS/OpenMP thread pools set to one thread through the
environment before numpy is imported (threadpoolctl is not a dependency). A fresh process also
makes the memory peak honest. Actions are random valid actions drawn before the timed loop.
Each measurement is repeated; the report keeps every sample and uses the median.

The targets (issue: "simulator speed") are computed from the numbers, never asserted:
``default`` at N = 4096 through the VecEnv at least 1,000,000 user-steps/s and at least 0.15x
CartPoleVectorEnv; the single-user env (``gym.make``, ``default``) at least 20,000 steps/s.

From Python: ``run(BenchSettings(...))`` returns the report dict (and writes it as JSON);
``main(["--quick"])`` runs it as the command line does. ``driftrec bench --learners`` times the
learners beside the simulator instead (:mod:`driftrec.experiments.bench_learners`, its own report).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from driftrec.envs.config import Config, knob
from driftrec.envs.presets import PRESETS
from driftrec.experiments import bench_learners
from driftrec.experiments.bench_core import (  # noqa: F401  (MIB: the report's unit, for its readers)
    CLOCKS,
    MIB,
    SINGLE_THREAD_VARS,
    _batched_row,
    _choose_cpu,
    _fmt,
    _in_child,
    _in_process,
    _ints,
    _loadavg,
    _machine,
    _names,
    _summary,
    check_seconds,
    flag,
    targets_table,
)

SCHEMA_VERSION = 1
TARGET_PRESET = "default"
TARGET_USER_STEPS = 1_000_000.0  # VecEnv user-steps/s of TARGET_PRESET at BenchSettings.target_users
TARGET_CARTPOLE_RATIO = 0.15  # ... and as a fraction of CartPoleVectorEnv at the same N
TARGET_SINGLE_STEPS = 20_000.0  # single-user env (gym.make) steps/s of TARGET_PRESET
DESCRIPTION = ("Time ShopSim batched (SB3 VecEnv and bare core) and single-user, against Gymnasium's "
               "CartPoleVectorEnv, each group in a child process pinned to one CPU; print a table and "
               "write a JSON report with every sample and the targets.")


@dataclasses.dataclass(frozen=True)
class BenchSettings(Config):
    """What ``driftrec bench`` measures and where it writes the report (a message names a setting by
    its flag, ``--memory-users``)."""

    label = "bench setting"

    presets: tuple[str, ...] = knob(("default", "recsim-ie"), "presets timed (each row of the table)",
                                    choices=tuple(PRESETS), distinct=True)
    users: tuple[int, ...] = knob((1, 64, 1024, 4096), "batch sizes N", 1, distinct=True)
    seconds: float = knob(1.0, "timed seconds of one measurement (one sample), > 0")
    repeats: int = knob(3, "samples per measurement; the report uses their median", 1)
    memory_users: int = knob(1_000_000, "users of the memory measurement; 0 skips it", 0)
    out: str | None = knob("bench.json", "JSON report path; None writes nothing")
    cpu: int | None = knob(None, "CPU the children are pinned to: None the first allowed one, -1 no pinning", -1)
    target_users: int = knob(4096, "N at which the batched targets are judged", 1)
    isolate: bool = knob(True, "each group in a fresh pinned child; False: in this process, unpinned (tests)")
    clock: str = knob("wall", "'wall' (perf_counter) or 'cpu' (the child's CPU time: robust on a shared machine)",
                      choices=tuple(CLOCKS))

    @classmethod
    def subject(cls, key: str) -> str:
        """The flag of setting ``key``: ``--memory-users``."""
        return flag(key)

    def check(self) -> None:
        """A sample must take some time."""
        check_seconds(self.seconds)


# Tiny settings for tests and CI: fast, but every code path runs.
QUICK = {"users": (1, 64), "seconds": 0.05, "repeats": 1, "memory_users": 1000}


# ===================================================================================== parent side
def run(settings: BenchSettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every measurement group (in a fresh pinned child process unless ``settings.isolate`` is
    False); return the report, also written to ``settings.out`` as JSON when set. ``progress``
    receives one line as each group starts."""
    settings = settings.validate()
    say = progress or (lambda line: None)
    cpu = _choose_cpu(settings.cpu) if settings.isolate else None
    group = _in_child if settings.isolate else _in_process
    started = time.time()
    load_before = _loadavg()
    base = {"seconds": settings.seconds, "repeats": settings.repeats, "presets": list(settings.presets),
            "clock": settings.clock}

    batched_raw: dict[int, dict[str, Any]] = {}
    for n in settings.users:
        say(f"batched N={n}: CartPoleVectorEnv, VecEnv and core of {', '.join(settings.presets)}")
        batched_raw[n] = group({**base, "kind": "batched", "users": n}, cpu)
    say("single-user env: ShopSimEnv and gym.make")
    single_raw = group({**base, "kind": "single"}, cpu)
    memory: list[dict[str, Any]] = []
    if settings.memory_users:
        for preset in settings.presets:
            say(f"memory: {settings.memory_users:,} users of {preset}")
            memory.append(group({"kind": "memory", "preset": preset, "users": settings.memory_users}, cpu))

    batched = [_batched_row(preset, n, batched_raw[n]) for preset in settings.presets for n in settings.users]
    single = [{"preset": p, "raw_env": _summary(single_raw["raw_env"][p]),
               "gym_make": _summary(single_raw["gym_make"][p]), "cpus_used": single_raw["cpus_used"]}
              for p in settings.presets]
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "started": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(time.time() - started, 3),
        "machine": {**_machine(), "isolated": settings.isolate, "pinned_cpu": cpu,
                    "threads_env": {v: "1" for v in SINGLE_THREAD_VARS} if settings.isolate else {},
                    "loadavg_before": load_before, "loadavg_after": _loadavg()},
        "settings": settings.to_dict(),
        "batched": batched,
        "single_env": single,
        "memory": memory,
    }
    report["targets"] = evaluate_targets(report, settings.target_users)
    if settings.out:
        Path(settings.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


def evaluate_targets(report: dict[str, Any], target_users: int = 4096) -> dict[str, dict[str, Any]]:
    """Each target's measured value, threshold and pass flag, computed from ``report``'s medians.

    A target whose cell was not measured (preset or N not in the run) has value and passed None.
    """
    cell = next((r for r in report["batched"] if r["preset"] == TARGET_PRESET and r["users"] == target_users), None)
    single = next((r for r in report["single_env"] if r["preset"] == TARGET_PRESET), None)
    values = {
        "batched_user_steps": (None if cell is None else cell["vec_env"]["median"], TARGET_USER_STEPS,
                               f"{TARGET_PRESET} VecEnv user-steps/s at N={target_users}"),
        "cartpole_ratio": (None if cell is None else cell["ratio_vec_env"], TARGET_CARTPOLE_RATIO,
                           f"{TARGET_PRESET} VecEnv / CartPoleVectorEnv user-steps/s at N={target_users}"),
        "single_env_steps": (None if single is None else single["gym_make"]["median"], TARGET_SINGLE_STEPS,
                             f"{TARGET_PRESET} single-user env (gym.make) steps/s"),
    }
    return {name: {"description": doc, "value": value, "threshold": threshold,
                   "passed": None if value is None else bool(value >= threshold)}
            for name, (value, threshold, doc) in values.items()}


# ============================================================================ command line
def add_parser(subparsers: Any) -> None:
    """Register ``driftrec bench`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "bench", help="simulator speed and memory, against CartPoleVectorEnv; --learners: the learners' speed",
        description=DESCRIPTION)
    _add_arguments(parser)
    parser.set_defaults(func=run_cli)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    d = BenchSettings()
    # numeric defaults are None so that --quick can supply its own while explicit flags still win
    parser.add_argument("--presets", type=_names, default=None,
                        help=f"comma-separated presets (default: {','.join(d.presets)})")
    parser.add_argument("--users", type=_ints, default=None,
                        help=f"comma-separated batch sizes N (default: {','.join(map(str, d.users))})")
    parser.add_argument("--seconds", type=float, default=None, help=f"seconds per sample (default: {d.seconds})")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"samples per measurement, the median is reported (default: {d.repeats})")
    parser.add_argument("--memory-users", type=int, default=None,
                        help=f"users of the memory measurement, 0 skips it (default: {d.memory_users:,})")
    parser.add_argument("--out", default=None,
                        help=f"JSON report path, '' for none (default: {d.out}; with --learners "
                             f"{bench_learners.LearnerSettings.out})")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed; -1: none)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings for tests and CI: " + ", ".join(f"{k}={v}" for k, v in QUICK.items())
                        + "; with --learners: " + ", ".join(f"{k}={v}" for k, v in bench_learners.QUICK.items()))
    parser.add_argument("--clock", choices=tuple(CLOCKS), default=None,
                        help="wall: elapsed time (default); cpu: each pinned child's CPU time, which other "
                             "processes on a shared machine barely disturb")
    parser.add_argument("--check", action="store_true", help="exit 1 if a measured target is missed")
    bench_learners.add_arguments(parser)


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    """BenchSettings from parsed arguments: explicit flags, else --quick's values, else the defaults."""
    bench_learners.check_flags(args)  # a --learners option without --learners is a mistake, not ignored
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    for name in ("presets", "users", "seconds", "repeats", "memory_users", "cpu", "clock"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    return BenchSettings(**values, out=BenchSettings.out if args.out is None else (args.out or None))


def run_cli(args: argparse.Namespace) -> int:
    """``driftrec bench``: run, print the tables, write the JSON. Exit 0; 1 if ``--check`` and a
    target is missed; 2 on a bad option or a failed measurement. ``--learners`` runs
    :mod:`driftrec.experiments.bench_learners` instead, with the same exits."""
    if getattr(args, "learners", False):
        return run_section(args, bench_learners.settings_from_args, bench_learners.run_learners,
                           bench_learners.print_report)
    return run_section(args, settings_from_args, run, print_report)


def run_section(args: argparse.Namespace, settings_of: Callable[[argparse.Namespace], Any],
                measure: Callable[..., dict[str, Any]], show: Callable[[dict[str, Any], Any], None]) -> int:
    """The settings of ``args`` (``settings_of``), their report (``measure(settings, progress=...)``)
    printed (``show``) and written: the exit status of :func:`run_cli`."""
    from rich.console import Console

    console, err = Console(), Console(stderr=True)
    try:
        settings = settings_of(args)
        report = measure(settings, progress=lambda line: err.print(f"[dim]bench: {line}[/dim]"))
    except (ValueError, RuntimeError) as exc:
        print(f"driftrec bench: error: {exc}", file=sys.stderr)
        return 2
    show(report, console)
    if settings.out:
        console.print(f"report written to {settings.out}")
    missed = [name for name, t in report["targets"].items() if t["passed"] is False]
    return 1 if args.check and missed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry: ``python -m driftrec.experiments.bench --quick``."""
    parser = argparse.ArgumentParser(prog="driftrec bench", description=DESCRIPTION)
    _add_arguments(parser)
    return run_cli(parser.parse_args(argv))


def print_report(report: dict[str, Any], console: Any) -> None:
    """The report as rich tables: batched rates, single-user env, memory, targets."""
    from rich.table import Table

    targets = report["targets"]
    target_users = report["settings"]["target_users"]
    table = Table(title="ShopSim batched user-steps/s (median of "
                        f"{report['settings']['repeats']} x {report['settings']['seconds']} s, one pinned core)")
    table.caption = "ratio = VecEnv / CartPoleVectorEnv at the same N, measured side by side"
    for col in ("preset", "N", "VecEnv", "core", "CartPole", "ratio", "target met"):
        table.add_column(col, justify="left" if col == "preset" else "right")
    for row in report["batched"]:
        met = ""
        if row["preset"] == TARGET_PRESET and row["users"] == target_users:
            flags = (targets["batched_user_steps"]["passed"], targets["cartpole_ratio"]["passed"])
            met = "yes" if all(flags) else "no"
        table.add_row(row["preset"], f"{row['users']:,}", _fmt(row["vec_env"]["median"]),
                      _fmt(row["core"]["median"]), _fmt(row["cartpole"]["median"]),
                      f"{row['ratio_vec_env']:.3f}", met)
    console.print(table)

    single = Table(title="single-user Gymnasium env, steps/s")
    for col in ("preset", "ShopSimEnv", "gym.make"):
        single.add_column(col, justify="left" if col == "preset" else "right")
    for row in report["single_env"]:
        single.add_row(row["preset"], _fmt(row["raw_env"]["median"]), _fmt(row["gym_make"]["median"]))
    console.print(single)

    for mem in report["memory"]:
        console.print(f"memory, {mem['users']:,} users of {mem['preset']}: state arrays {mem['state_mib']:,.1f} MiB "
                      f"({mem['state_bytes_per_user']:,.0f} B/user), observation {mem['obs_mib']:,.1f} MiB; "
                      f"peak RSS {_mib(mem['rss_peak_mib'])} (before init {_mib(mem['rss_before_mib'])}, "
                      f"growth {_mib(mem['rss_growth_mib'])}) after init + {mem['steps']} steps + observe")

    console.print(targets_table("targets", ("target", "value", "threshold", "passed"), targets,
                                lambda v, t: f"{v:.3f}" if t["threshold"] < 1 else _fmt(v)))
    m = report["machine"]
    console.print(f"[dim]{m['cpu_model']}, {m['cpu_count']} CPUs, pinned to {m['pinned_cpu']}; "
                  f"load average before {m['loadavg_before']}, after {m['loadavg_after']}; "
                  f"Python {m['python']}, numpy {m['numpy']}, gymnasium {m['gymnasium']}[/dim]")


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} MiB"


if __name__ == "__main__":
    sys.exit(main())
