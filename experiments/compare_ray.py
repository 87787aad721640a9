"""The Ray backend of ``driftrec compare`` (``--backend ray``): every cell of the grid a Ray task.

:func:`run_on_ray` gets each world's plan (:meth:`driftrec.experiments.world_run.WorldRun.plan`:
the world's unfinished steps -- its logs, the warm agents' teacher, its cells -- each with the
steps it waits for) and a function that runs one step. The driver submits a step once the steps
it waits for have finished and at most as many at once as the cluster has room for (its CPUs
over ``cell_cpus``), so the running count is true and a failure stops the run cleanly: the failed
cell is reported in one line, no step starts after it, the running ones finish and the run ends
with one line naming the failures. Each task writes its cell into the run folder exactly as the
local backend does (atomic writes, ``.partial`` model folders, ``result.json`` last); the driver
then builds every table and figure from the folder with the local backend's code, so the two
backends resume each other's runs and give the same numbers.

The tasks read and write the run folder by its absolute path and run in the driver's working
directory (relative preset and hyperparameter files) with the driver's working directory and the
``sys.path`` entries it added in front of their ``sys.path`` (:func:`in_driver_context`: a policy
module beside the config imports in a task as in the driver). A cluster of several machines
therefore needs the run folder, and those files, on a shared filesystem at the same path on every
machine.

Ray is an optional extra (``pip install -e ".[ray]"``), imported only when this backend runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

from driftrec.experiments.cliutil import CLIError

INSTALL = 'pip install -e ".[ray]"'
OBJECT_STORE_BYTES = 100 * 2**20
"""The local cluster's object store: the tasks pass file paths, not data, so Ray's minimum-sized store will do."""

World = tuple[str, int, str]  # (preset, seed, name shown in progress lines)
Step = tuple[World, str]  # a world and the name of one of its steps


def import_ray() -> Any:
    """The ``ray`` module, or a one-line CLIError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise CLIError(f"--backend ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


def run_on_ray(plans: Mapping[World, Mapping[str, Sequence[str]]], run_step: Callable[[str, int, str], Any],
               report: Callable[[str], None], *, address: str = "", cpus: int = 0, cell_cpus: float = 1.0,
               prep: Collection[str] = ()) -> None:
    """Run every step of ``plans`` as a task ``run_step(preset, seed, step)`` needing ``cell_cpus`` CPUs,
    on the cluster at ``address`` or on a local one of ``cpus`` CPUs (0: the machine's) started for
    the run; ``prep`` names the steps that are not cells (not counted in the progress lines).
    Raises CLIError naming the failed cells when any failed, after the running ones finish."""
    waiting: dict[Step, set[Step]] = {(world, step): {(world, d) for d in after}
                                      for world, plan in plans.items() for step, after in plan.items()}
    cells = sum(step not in prep for _, step in waiting)
    if not waiting:
        return
    with connect(address, cpus) as ray:
        task = ray.remote(num_cpus=cell_cpus)(in_driver_context)
        context = (os.getcwd(), driver_path())
        running: dict[Any, Step] = {}
        done, failed = 0, []

        def progress(event: str) -> None:
            busy = sum(step not in prep for _, step in running.values())
            preparing = f", {len(running) - busy} {'/'.join(prep)} running" if len(running) > busy else ""
            report(f"ray: {event} [cells: {done}/{cells} done, {busy} running, {len(failed)} failed{preparing}]")

        while True:
            room = int(ray.cluster_resources().get("CPU", 0) / cell_cpus + 1e-9) - len(running)
            if room <= 0 and not running:
                raise CLIError(f"cell_cpus is {cell_cpus:g}, more than the Ray cluster's "
                               f"{ray.cluster_resources().get('CPU', 0):g} CPUs")
            start = [key for key, after in waiting.items() if not after][:max(room, 0)] if not failed else []
            for world, step in start:
                del waiting[(world, step)]
                running[task.remote(*context, run_step, world[0], world[1], step)] = (world, step)
            if start:
                progress(f"started {', '.join(f'{world[2]}: {step}' for world, step in start)}")
            if not running:
                break
            (ref,), _ = ray.wait(list(running), num_returns=1)
            world, step = running.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayError as err:
                failed.append(f"{world[2]}: {step}")
                progress(f"{world[2]}: {step} FAILED: {_one_line(err)}")
                continue
            done += step not in prep
            for after in waiting.values():
                after.discard((world, step))
            progress(f"{world[2]}: {step} done")
    if waiting and not failed:
        raise RuntimeError(f"steps that wait for one another: {sorted(waiting)}")
    if failed:
        raise CLIError(f"{len(failed)} step(s) failed ({'; '.join(failed)}), {len(waiting)} not started; the "
                       "finished cells are kept: run the same command to resume (--backend local shows the "
                       "traceback)")


@contextlib.contextmanager
def connect(address: str = "", cpus: int = 0) -> Iterator[Any]:
    """Ray, connected to the cluster at ``address`` (HOST:PORT) or to a local cluster of ``cpus`` CPUs
    (0: the machine's) started here and shut down afterwards. Where this process is connected
    already (a notebook, the tests), that connection is used and left open."""
    ray = import_ray()
    if address:
        host, _, port = address.rpartition(":")
        try:  # Ray itself retries an unreachable address for minutes, logging as it goes
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as err:
            raise CLIError(f"cannot reach the Ray cluster at '{address}': {getattr(err, 'strerror', None) or err} "
                           "(start its head with `ray start --head --port=PORT`)") from None
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR)
    if address:
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError) as err:  # e.g. not a Ray head, another Ray version, no token
            hint = "" if os.environ.get("RAY_AUTH_MODE") == "token" else (
                " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN "
                "or ~/.ray/auth_token here too)")
            raise CLIError(f"cannot connect to the Ray cluster at '{address}': {_one_line(err)}{hint}") from None
    else:
        # "local": a new cluster even where `ray start` runs one on this machine (ray.init() would join it)
        ray.init(address="local", num_cpus=cpus or os.cpu_count(), object_store_memory=OBJECT_STORE_BYTES,
                 include_dashboard=False, **options)
    try:
        yield ray
    finally:
        ray.shutdown()


def driver_path() -> list[str]:
    """Where the driver imports from beyond the interpreter's own folders: its working directory and
    the ``sys.path`` entries it added (``PYTHONPATH``, a notebook's additions)."""
    own = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})
    return list(dict.fromkeys([os.getcwd(), *(p or os.getcwd() for p in sys.path if not p.startswith(own))]))


def in_driver_context(folder: str, path: Sequence[str], fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in the driver's working directory ``folder`` with its :func:`driver_path` ``path``
    in front of ``sys.path``: a Ray task (alone in its worker process while it runs) then reads relative
    files and imports modules, a policy plugin's among them, as the driver does."""
    if os.path.isdir(folder):
        os.chdir(folder)
    sys.path[:0] = [p for p in path if p not in sys.path]
    return fn(*args)


def _one_line(err: BaseException) -> str:
    """A task's error in one line: the exception raised in the task (not Ray's wrapper and traceback)."""
    cause = getattr(err, "cause", None) or err
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"
