"""The wall time of one compare grid, local backend against Ray: what a user should expect per core.

``python -m driftrec.experiments.bench_backends`` runs the same grid (default: the smoke profile
with larger budgets, ``stationary`` and ``default`` x 2 seeds x ``popularity, mlp, gru, ppo``: 16
cells of a few seconds each) under both backends, each as the command a user types, in a fresh
process and a fresh run folder: ``driftrec compare`` (one process, one cell after another) and
``driftrec compare --backend ray`` on a local cluster of ``--cpus`` CPUs started for the run (its
start-up counted, as a user pays it); ``--repeats N`` runs each N times, in turn, and reports the
medians. It checks that the two ``results.csv`` agree in every column but the wall times, prints
cells, both walls, the speed-up and the speed-up per core, and writes every figure with the
machine and its load to ``--out`` (JSON). On a shared machine the walls move with the other
load: the report holds the load averages before and after, and the cores the machine really
gave at the start (:func:`effective_cores`: ``--cpus`` copies of a pure-Python loop at once
against one alone).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from driftrec.experiments import bench_core
from driftrec.experiments.artifacts import write_text

GRID = ("--profile", "smoke", "--presets", "stationary,default", "--seeds", "2", "--set",
        "policies=popularity,mlp,gru,ppo", "--set", "log_users=2000", "--set", "eval_users=1000", "--set",
        "rl_timesteps=40000", "--set", "supervised.epochs=10")
"""The default grid: 16 cells of the smoke profile with larger budgets, a few seconds each."""
WALL = ["eval_wall_s", "train_wall_s"]


SPIN = "import time; t = time.perf_counter(); sum(i * i for i in range(10_000_000)); print(time.perf_counter() - t)"


def effective_cores(cpus: int) -> float:
    """How many cores ``cpus`` CPU-bound processes get at once right now: ``cpus`` x one alone's time
    over the slowest's when ``cpus`` run together (``cpus`` on an idle machine, less on a shared one)."""

    def spin(n: int) -> float:
        procs = [subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True) for _ in range(n)]
        return max(float(p.communicate()[0]) for p in procs)

    alone = spin(1)
    return cpus * alone / spin(cpus)


def run(grid: Sequence[str], cpus: int, folder: Path, repeats: int = 1) -> dict[str, Any]:
    """Time ``driftrec compare GRID`` with each backend into ``folder``, ``repeats`` times in turn
    (local, ray, local, ...); the report (see the module doc) holds every wall and their medians."""
    load_before, cores = bench_core._loadavg(), effective_cores(cpus)
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    tables = {}
    for repeat in range(repeats):
        for backend in ("local", "ray"):
            out = folder / f"{backend}{repeat}"
            extra = ["--backend", "ray", "--set", f"ray_cpus={cpus}"] if backend == "ray" else []
            command = [sys.executable, "-m", "driftrec.experiments.cli", "compare", *grid, *extra, "--out", str(out),
                       "--quiet"]
            print(f"bench: {' '.join(command[3:])}", file=sys.stderr, flush=True)
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            walls[backend].append(time.perf_counter() - start)
            table = pd.read_csv(out / "results.csv").drop(columns=WALL)
            tables.setdefault("first", table)
            pd.testing.assert_frame_equal(tables["first"], table)  # the same numbers, or no timing to report
    local, ray = statistics.median(walls["local"]), statistics.median(walls["ray"])
    speedup = local / ray
    return {"grid": list(grid), "cells": len(tables["first"]), "ray_cpus": cpus, "repeats": repeats,
            "local_walls_s": walls["local"], "ray_walls_s": walls["ray"], "local_wall_s": local,
            "ray_wall_s": ray, "speedup": speedup, "speedup_per_core": speedup / cpus,
            "effective_cores": cores,
            "same_results": True, "machine": bench_core._machine(), "loadavg_before": load_before,
            "loadavg_after": bench_core._loadavg()}


def print_report(report: dict[str, Any]) -> None:
    """The table of :func:`run`'s report."""
    print(f"medians of {report['repeats']} run(s) each, in turn")
    print("| cells | local (serial) wall | ray wall | ray CPUs | speed-up | speed-up per core | effective cores |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {report['cells']} | {report['local_wall_s']:.1f} s | {report['ray_wall_s']:.1f} s | {report['ray_cpus']} "
          f"| {report['speedup']:.2f}x | {report['speedup_per_core']:.2f} | {report['effective_cores']:.2f} |")
    print(f"load average before {report['loadavg_before']}, after {report['loadavg_after']}; "
          f"{report['machine']['cpu_count']} CPUs ({report['machine']['cpu_model']})")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m driftrec.experiments.bench_backends [--cpus N] [--out FILE] [-- COMPARE ARGS]``."""
    parser = argparse.ArgumentParser(prog="python -m driftrec.experiments.bench_backends", description=__doc__)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1,
                        help="CPUs of the local Ray cluster (default: the machine's)")
    parser.add_argument("--out", type=Path, default=Path("bench_backends.json"), help="JSON report")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each backend, in turn; the medians are "
                                                               "reported (default 1)")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the two run folders (default: temporary)")
    parser.add_argument("grid", nargs="*", help=f"driftrec compare's grid arguments, after -- (default: "
                                                f"{' '.join(GRID)})")
    args = parser.parse_args(argv)
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep '{args.keep}' is not empty: a run folder there would resume, not run")  # exits 2
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args.grid or GRID, args.cpus, args.keep or Path(tmp), max(args.repeats, 1))
    print_report(report)
    write_text(args.out, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
