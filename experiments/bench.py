"""``driftrec bench``: how fast the simulator runs, measured against Gymnasium's CartPoleVectorEnv.

What is measured (all rates in user-steps per second: N users stepped once is N user-steps):

- for each preset and batch size N: the SB3 VecEnv path (``make_vec_env(preset, N, seed=0)``,
  the shell agents train on) and the bare core (``model.step(state, a, inplace=True)`` then
  ``model.observe(state)``, restarting users whose life ended, as the shells do);
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
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from driftrec.envs.config import Config, ConfigError, knob
from driftrec.envs.presets import PRESETS

SCHEMA_VERSION = 1
TARGET_PRESET = "default"
TARGET_USER_STEPS = 1_000_000.0  # VecEnv user-steps/s of TARGET_PRESET at BenchSettings.target_users
TARGET_CARTPOLE_RATIO = 0.15  # ... and as a fraction of CartPoleVectorEnv at the same N
TARGET_SINGLE_STEPS = 20_000.0  # single-user env (gym.make) steps/s of TARGET_PRESET
SINGLE_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                      "VECLIB_MAXIMUM_THREADS")
ACTION_BATCHES = 64  # pre-drawn action batches cycled through in a timed loop
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
MEMORY_STEPS = 3  # steps taken by the large batch of the memory measurement
MIB = 2.0**20
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
        return "--" + key.replace("_", "-")

    def check(self) -> None:
        """A sample must take some time."""
        check_seconds(self.seconds)


def check_seconds(seconds: float) -> None:
    """ConfigError naming ``--seconds`` unless a sample of ``seconds`` takes some time (> 0, finite)."""
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"--seconds must be > 0, got {seconds}")


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


def _batched_row(preset: str, n: int, raw: dict[str, Any]) -> dict[str, Any]:
    vec, core, cart = _summary(raw["vec_env"][preset]), _summary(raw["core"][preset]), _summary(raw["cartpole"])
    return {"preset": preset, "users": n, "vec_env": vec, "core": core, "cartpole": cart,
            "ratio_vec_env": vec["median"] / cart["median"], "ratio_core": core["median"] / cart["median"],
            "cpus_used": raw["cpus_used"]}


def _summary(samples: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(samples), "samples": samples}


def _choose_cpu(cpu: int | None) -> int | None:
    """The CPU children pin to (None: no pinning, where the OS offers none or -1 asks for none)."""
    if cpu == -1 or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if cpu is None:
        return allowed[0]
    if cpu not in allowed:
        raise ValueError(f"--cpu {cpu} is not one this process may run on: {allowed}")
    return cpu


def _in_child(task: dict[str, Any], cpu: int | None, module: str = "driftrec.experiments.bench",
              single_thread: bool = True) -> dict[str, Any]:
    """Run one measurement group in a fresh interpreter (pinned to ``cpu`` unless None, own memory):
    ``module``'s ``_child_main`` runs ``task``; ``single_thread`` sets the BLAS/OpenMP pools to one
    thread (False: the environment as the user's commands see it, e.g. ``driftrec train``'s)."""
    env = {**os.environ, **({v: "1" for v in SINGLE_THREAD_VARS} if single_thread else {})}
    with tempfile.TemporaryDirectory(prefix="driftrec-bench-") as tmp:
        out = Path(tmp) / "result.json"
        code = f"import sys; from {module} import _child_main; _child_main(sys.argv[1], sys.argv[2])"
        proc = subprocess.run([sys.executable, "-c", code, json.dumps({**task, "cpu": cpu}), str(out)],
                              env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            lines = proc.stderr.strip().splitlines() or ["no error output"]
            raise RuntimeError(f"benchmark child {task['kind']} failed (exit {proc.returncode}): {lines[-1]}")
        return json.loads(out.read_text())


def _in_process(task: dict[str, Any], cpu: int | None) -> dict[str, Any]:
    """Run one group here, unpinned: for tests. Its memory peak includes all this process did before."""
    return _run_task({**task, "cpu": cpu})


def _machine() -> dict[str, Any]:
    import gymnasium
    import stable_baselines3

    cpu_model = platform.processor()
    try:  # Linux names the CPU here; platform.processor() is often empty there
        with open("/proc/cpuinfo") as f:
            cpu_model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                             cpu_model)
    except OSError:
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
            "gymnasium": gymnasium.__version__, "stable_baselines3": stable_baselines3.__version__,
            "cpu_model": cpu_model, "cpu_count": os.cpu_count(),
            "cpus_allowed": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}


def _loadavg() -> list[float] | None:
    # the machine may be shared: the load beside the numbers says how much to trust them
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


# ====================================================================================== child side
def _child_main(task_json: str, out_path: str,
                run_task: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
    """Entry point of a child process: pin, run one group (``run_task``, default this module's),
    write its JSON result to ``out_path``."""
    task = json.loads(task_json)
    if task.get("cpu") is not None:
        os.sched_setaffinity(0, {task["cpu"]})
    Path(out_path).write_text(json.dumps((run_task or _run_task)(task)))


def _run_task(task: dict[str, Any]) -> dict[str, Any]:
    kind = task["kind"]
    if kind == "batched":
        result = _measure_batched(task["presets"], task["users"], task["seconds"], task["repeats"],
                                  CLOCKS[task["clock"]])
    elif kind == "single":
        result = _measure_single(task["presets"], task["seconds"], task["repeats"], CLOCKS[task["clock"]])
    elif kind == "memory":
        result = _measure_memory(task["preset"], task["users"])
    else:
        raise ValueError(f"unknown benchmark task kind '{kind}'")
    # the CPUs this group actually ran on: 1 when pinned
    result["cpus_used"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return result


def _rate(step: Callable[[], Any], seconds: float, per_step: int, clock: Callable[[], float]) -> float:
    """Units per second of ``step`` (``per_step`` units per call), timed for at least ``seconds``."""
    calls, t0 = 0, clock()
    while True:
        step()
        calls += 1
        elapsed = clock() - t0
        if elapsed >= seconds:
            return calls * per_step / elapsed


def _timed(step: Callable[[], Any], seconds: float, per_step: int,
           clock: Callable[[], float] = time.perf_counter) -> float:
    _rate(step, min(0.1, seconds / 5), per_step, clock)  # warm caches and lazy allocations first
    return _rate(step, seconds, per_step, clock)


def _action_batches(space: Any, n: int, rng: np.random.Generator, batches: int = ACTION_BATCHES) -> Iterator[Any]:
    """Endless cycle of ``batches`` pre-drawn random valid action batches of ``n`` users for a
    single-user Discrete or MultiDiscrete ``space`` (shape (n,) or (n, K))."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        drawn = space.start + rng.integers(0, space.n, size=(batches, n))
    elif isinstance(space, spaces.MultiDiscrete):
        drawn = space.start + rng.integers(0, space.nvec, size=(batches, n, *space.nvec.shape))
    else:
        raise TypeError(f"bench draws actions for Discrete or MultiDiscrete spaces, not {space}")
    pool = list(drawn)
    while True:
        yield from pool


def _measure_batched(presets: Sequence[str], n: int, seconds: float, repeats: int,
                     clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """CartPoleVectorEnv and, per preset, the VecEnv and the bare core at N = ``n`` users.

    Repeats are interleaved (cartpole, then each preset) so a burst of load hits all alike.
    """
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    from driftrec.envs import make_vec_env, model_for
    from driftrec.envs.rng import user_keys

    rng = np.random.default_rng(0)
    cartpole = CartPoleVectorEnv(num_envs=n)
    cartpole.reset(seed=0)
    cart_actions = _action_batches(cartpole.single_action_space, n, rng)

    def cart_step() -> None:
        cartpole.step(next(cart_actions))

    steps: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {}
    for preset in presets:
        vec = make_vec_env(preset, n, seed=0)
        vec.reset()
        vec_actions = _action_batches(vec.action_space, n, rng)
        model = model_for(preset)
        core = {"state": model.init(user_keys(np.arange(n)), np.zeros(n, dtype=np.int64))}
        core_actions = _action_batches(model.action_space, n, rng)

        def vec_step(vec: Any = vec, actions: Iterator[Any] = vec_actions) -> None:
            vec.step(next(actions))

        def core_step(model: Any = model, core: dict[str, Any] = core, actions: Iterator[Any] = core_actions) -> None:
            state, out = model.step(core["state"], next(actions), inplace=True)
            done = out.terminated | out.truncated
            if done.any():  # users whose life ended start the next one, as every shell does
                model.reset_where(state, done)
            core["state"] = state
            model.observe(state)

        steps[preset] = (vec_step, core_step)

    result: dict[str, Any] = {"cartpole": [], "vec_env": {p: [] for p in presets}, "core": {p: [] for p in presets}}
    for _ in range(repeats):
        result["cartpole"].append(_timed(cart_step, seconds, n, clock))
        for preset, (vec_step, core_step) in steps.items():
            result["vec_env"][preset].append(_timed(vec_step, seconds, n, clock))
            result["core"][preset].append(_timed(core_step, seconds, n, clock))
    return result


def _measure_single(presets: Sequence[str], seconds: float, repeats: int,
                    clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Steps/s of the single-user env, raw and as ``gym.make`` builds it, resetting when done."""
    import gymnasium as gym

    from driftrec.envs import ENV_ID, ShopSimEnv

    rng = np.random.default_rng(0)
    steps: dict[tuple[str, str], Callable[[], None]] = {}
    for preset in presets:
        for how, env in (("raw_env", ShopSimEnv(preset)), ("gym_make", gym.make(ENV_ID, preset=preset))):
            env.reset(seed=0)
            actions = _action_batches(env.action_space, 1, rng, batches=1024)

            def step(env: Any = env, actions: Iterator[Any] = actions) -> None:
                _, _, terminated, truncated, _ = env.step(next(actions)[0])
                if terminated or truncated:
                    env.reset()

            steps[(how, preset)] = step
    result: dict[str, Any] = {"raw_env": {p: [] for p in presets}, "gym_make": {p: [] for p in presets}}
    for _ in range(repeats):
        for (how, preset), step in steps.items():
            result[how][preset].append(_timed(step, seconds, 1, clock))
    return result


def _measure_memory(preset: str, n: int) -> dict[str, Any]:
    """Peak resident set of this (fresh) process around a batch of ``n`` users, in MiB."""
    from driftrec.envs import model_for
    from driftrec.envs.rng import user_keys

    model = model_for(preset)
    actions = next(_action_batches(model.action_space, n, np.random.default_rng(0), batches=1))
    rss_before = _peak_rss_mib()  # imports, world and the action batch: what any run pays
    state = model.init(user_keys(np.arange(n)), np.zeros(n, dtype=np.int64))
    for _ in range(MEMORY_STEPS):
        state, _ = model.step(state, actions, inplace=True)
    obs = model.observe(state)
    rss_peak = _peak_rss_mib()
    state_bytes = sum(getattr(state, f.name).nbytes for f in dataclasses.fields(state))
    obs_bytes = sum(v.nbytes for v in obs.values()) if isinstance(obs, dict) else obs.nbytes
    return {"preset": preset, "users": n, "steps": MEMORY_STEPS,
            "rss_before_mib": rss_before, "rss_peak_mib": rss_peak,
            "rss_growth_mib": None if rss_peak is None or rss_before is None else rss_peak - rss_before,
            "state_mib": state_bytes / MIB, "obs_mib": obs_bytes / MIB, "state_bytes_per_user": state_bytes / n}


def _peak_rss_mib() -> float | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


# ============================================================================ command line
def add_parser(subparsers: Any) -> None:
    """Register ``driftrec bench`` on the CLI's subparsers."""
    parser = subparsers.add_parser(
        "bench", help="simulator speed and memory, against CartPoleVectorEnv; --learners: the learners' speed",
        description=DESCRIPTION)
    _add_arguments(parser)
    parser.set_defaults(func=run_cli)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    from driftrec.experiments import bench_learners  # it imports this module's helpers

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
    from driftrec.experiments import bench_learners

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
        from driftrec.experiments import bench_learners

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


def targets_table(title: str, columns: Sequence[str], targets: dict[str, dict[str, Any]],
                  fmt: Callable[[float, dict[str, Any]], str]) -> Any:
    """A rich table of computed targets (description, value, ``compare`` threshold, met); ``fmt(number,
    target)`` writes a target's value and threshold."""
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col == columns[0] else "right")
    for t in targets.values():
        met = {True: "yes", False: "NO", None: "not measured"}[t["passed"]]
        value = "-" if t["value"] is None else fmt(t["value"], t)
        table.add_row(t["description"], value, f"{t.get('compare', '>=')} {fmt(t['threshold'], t)}", met)
    return table


def _fmt(rate: float) -> str:
    return f"{rate:,.0f}"


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} MiB"


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got '{text}'")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated preset names")
    return names


if __name__ == "__main__":
    sys.exit(main())
