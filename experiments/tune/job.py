"""``run_tune``: run or resume a ``driftrec tune`` study with its workers here, then export it.

It validates the job (one-line ConfigErrors before any trial), opens the study in its storage,
simulates a supervised study's log once, writes ``study.yaml``, runs the workers (this process,
or ``--workers`` spawned interpreters) and exports ``trials.csv``, ``best.yml`` and the figures.
"""

from __future__ import annotations

import os
import time

from driftrec.envs.config import ConfigError
from driftrec.experiments.tune.export import TuneResult, export_study, write_yaml
from driftrec.experiments.tune.objectives import simulate_log
from driftrec.experiments.tune.settings import TuneConfig, study_setup
from driftrec.experiments.tune.storage import counted_trials, open_store
from driftrec.experiments.tune.worker import open_study, optuna_quiet, run_worker, worker_id, worker_main


def run_tune(config: TuneConfig) -> TuneResult:
    """Run (or resume) ``config``'s study to ``config.trials`` trials and export its best and figures.

    User mistakes (unknown algorithm, preset, key or search-space parameter, a malformed or
    unreachable storage URL, a study made with other settings) raise one-line ConfigErrors before
    any trial starts. With ``workers > 1`` the workers are spawned interpreters: a script calling
    this must guard its entry point with ``if __name__ == "__main__":`` (multiprocessing's rule).
    """
    import multiprocessing

    start = time.perf_counter()
    setup = study_setup(config)
    config = setup.config  # validated
    study_dir = config.study_dir
    if study_dir.exists() and not study_dir.is_dir():
        raise ConfigError(f"cannot use study folder '{study_dir}': it is a file")
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create study folder '{study_dir}': {err.strerror or err}") from None
    with optuna_quiet():
        store = open_store(config)
        study = open_study(setup, store)
        if not setup.rl:
            logs = study_dir / "logs.parquet"
            with store.reserve():  # one worker simulates; the others find the file
                if not logs.is_file():
                    began = time.perf_counter()
                    events = simulate_log(setup, logs)
                    if not config.quiet:
                        print(f"{config.study}: simulated the log of {setup.settings['log_users']} users under the "
                              f"logging policy ({events} events, {time.perf_counter() - began:.1f} s)", flush=True)
        write_yaml(study_dir / "study.yaml", {"study": config.study, "storage": store.where,
                                               "space": str(setup.space.path), **setup.settings})
        done = counted_trials(study.get_trials(deepcopy=False))
        if not config.quiet:
            todo = max(config.trials - len(done), 0)
            print(f"{config.study}: {len(done)} of {config.trials} trials in {store.where}; "
                  + (f"running {todo} more with {config.workers} worker{'s' * (config.workers > 1)}" if todo
                     else "nothing to run"), flush=True)

    failed: list[str] = []
    if config.workers == 1:
        ran = run_worker(config, 0)
    else:
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch or database state
        threads = max(1, (os.cpu_count() or 1) // config.workers)
        procs = [ctx.Process(target=worker_main, args=(config, i, threads), name=f"driftrec-tune-{i}")
                 for i in range(config.workers)]
        for proc in procs:
            proc.start()
        try:
            for proc in procs:
                proc.join()
        except KeyboardInterrupt:  # the workers got the same SIGINT: let them re-queue their trials
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.terminate()
            raise
        failed = [f"worker {i} exited with status {p.exitcode}" for i, p in enumerate(procs) if p.exitcode]
        ours = tuple(worker_id(p.pid).rsplit("-", 1)[0] + "-" for p in procs)  # HOST-PID- of each child
        ran = sum(1 for t in study.get_trials(deepcopy=False)
                  if t.state.is_finished() and str(t.user_attrs.get("worker", "")).startswith(ours))

    with optuna_quiet():
        with store.reserve():
            store.fail_stale(study)  # a worker that died here leaves no RUNNING trial behind
        result = export_study(study, setup, time.perf_counter() - start)
    result.ran, result.failed_workers = ran, failed
    return result


