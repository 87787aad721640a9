"""The machinery both sections of ``driftrec bench`` share (:mod:`driftrec.experiments.bench`, the
simulator, and :mod:`driftrec.experiments.bench_learners`): measurement groups run in fresh child
processes pinned to one CPU, the simulator's timed loops (batched, single-user, memory), sample
summaries, the targets table and the option types.

The simulator and Gymnasium are imported inside the measurements, which run in the children:
``driftrec bench --help`` and the parent process do not load them (the vector shells load SB3
and torch).
"""

from __future__ import annotations

import argparse
import dataclasses
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

from driftrec.envs.config import ConfigError

SINGLE_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                      "VECLIB_MAXIMUM_THREADS")
ACTION_BATCHES = 64  # pre-drawn action batches cycled through in a timed loop
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
MEMORY_STEPS = 3  # steps taken by the large batch of the memory measurement
MIB = 2.0**20


def flag(key: str) -> str:
    """The command-line flag of setting ``key``: ``--memory-users``."""
    return "--" + key.replace("_", "-")


def check_seconds(seconds: float) -> None:
    """ConfigError naming ``--seconds`` unless a sample of ``seconds`` takes some time (> 0, finite)."""
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"--seconds must be > 0, got {seconds}")


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


def _in_child(task: dict[str, Any], cpu: int | None, module: str = "driftrec.experiments.bench_core",
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

    # the simulator (numba) and the vector shells (SB3) load in the child that measures, not in `driftrec bench`
    from driftrec.envs import make_vec_env, user_model_for
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
        user_model = user_model_for(preset)
        core = {"state": user_model.init(user_keys(np.arange(n)), np.zeros(n, dtype=np.int64))}
        core_actions = _action_batches(user_model.action_space, n, rng)

        def vec_step(vec: Any = vec, actions: Iterator[Any] = vec_actions) -> None:
            vec.step(next(actions))

        def core_step(user_model: Any = user_model, core: dict[str, Any] = core,
                      actions: Iterator[Any] = core_actions) -> None:
            state, out = user_model.step(core["state"], next(actions), inplace=True)
            done = out.terminated | out.truncated
            if done.any():  # users whose life ended start the next one, as every shell does
                user_model.reset_where(state, done)
            core["state"] = state
            user_model.observe(state)

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

    from driftrec.envs import ENV_ID, ShopSimEnv  # in the measuring child, as above

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
    from driftrec.envs import user_model_for  # in the measuring child, as above
    from driftrec.envs.rng import user_keys

    user_model = user_model_for(preset)
    actions = next(_action_batches(user_model.action_space, n, np.random.default_rng(0), batches=1))
    rss_before = _peak_rss_mib()  # imports, world and the action batch: what any run pays
    state = user_model.init(user_keys(np.arange(n)), np.zeros(n, dtype=np.int64))
    for _ in range(MEMORY_STEPS):
        state, _ = user_model.step(state, actions, inplace=True)
    obs = user_model.observe(state)
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
