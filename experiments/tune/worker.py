"""The worker loop of ``driftrec tune``: take a trial under the study's reservation lock, run it,
record how it ended; until the study has its trials.

Every worker process of a study (started by :func:`driftrec.experiments.tune.job.run_tune` or on
another machine by the same command) runs :func:`run_worker`. A worker takes a trial while holding
the reservation lock, counting the trials that are running, waiting or finished first, so no two
workers start the N+1st trial (Optuna's MaxTrialsCallback checks after a trial ends, so racing
workers can overshoot); a re-queued trial is taken first. A worker that was only stalled past the
grace period finds its trial failed and re-queued and drops its late result; a Ctrl-C re-queues the
interrupted trial. Workers wait for the running trials of others before they exit, so a run that
ends normally leaves the study finished.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import sys
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from driftrec.envs.config import ConfigError
from driftrec.experiments.tune.objectives import make_objective
from driftrec.experiments.tune.settings import StudySetup, TuneConfig, check_settings, study_setup
from driftrec.experiments.tune.storage import Store, counted_trials, label_retry, open_store, storage_trial_id

if TYPE_CHECKING:  # optuna takes a second to import: `driftrec presets` should not wait
    import optuna
    from optuna.trial import Trial

TRIAL_ERRORS = (ConfigError, ValueError, RuntimeError, ArithmeticError, AssertionError)
"""A trial raising one of these (bad hyperparameter combination, NaN loss) fails; the study goes on."""


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna's INFO lines and experimental-feature warnings off: driftrec prints one line per trial."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # SB3's advice on batch sizes and target updates that do not fit n_envs: sampled combinations often don't
        warnings.filterwarnings("ignore", message="You have specified a mini-batch size")
        warnings.filterwarnings("ignore", message="The number of environments used is greater than the target")
        # driftrec keeps the heartbeat itself (ask/tell under the reservation lock, see the module doc)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        try:
            yield
        finally:
            optuna.logging.set_verbosity(level)


def open_study(setup: StudySetup, store: Store) -> optuna.Study:
    """Create or load the study (checking its settings) with the median pruner (RL)."""
    import optuna

    space = setup.space
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if setup.rl and space.evaluations > 1:
        # steps are validations counted from 1, and MedianPruner prunes from step n_warmup_steps on:
        # + 1 keeps the first n_warmup_steps validations of every trial safe
        pruner = optuna.pruners.MedianPruner(n_startup_trials=space.pruner_startup_trials,
                                             n_warmup_steps=space.pruner_warmup_steps + 1)
    with store.reserve():
        study = optuna.create_study(storage=store.storage, study_name=setup.config.study,
                                    sampler=trial_sampler(setup, 0), pruner=pruner, direction=space.direction,
                                    load_if_exists=True)
        check_settings(study, setup, store.where)
    return study


def trial_sampler(setup: StudySetup, number: int) -> optuna.samplers.BaseSampler:
    """The TPE sampler of trial ``number``, seeded by (``--seed``, ``number``).

    A sampler per trial rather than per worker: TPE keeps no state but its random generator (it
    reads the history from the storage), and seeding by the trial number gives every trial its own
    stream whichever worker or machine takes it, so two machines started together never propose
    the same startup trials, a resumed study never repeats its first ones, and one worker's study
    is reproducible. ``constant_liar`` counts the trials running elsewhere as bad, which spreads
    concurrent proposals.
    """
    import optuna

    seed = int(np.random.SeedSequence([setup.config.seed, number]).generate_state(1)[0])
    return optuna.samplers.TPESampler(n_startup_trials=setup.space.startup_trials, seed=seed, multivariate=True,
                                      constant_liar=True)


def run_worker(config: TuneConfig, index: int = 0) -> int:
    """Run trials of ``config``'s study until it has ``config.trials``; returns the trials this worker ran.

    Every worker process of a study (started by :func:`run_tune` or on another machine) runs this.
    """
    setup = study_setup(config)
    config = setup.config  # validated
    with optuna_quiet():
        store = open_store(config)
        study = open_study(setup, store)
        objective = make_objective(setup)
        ran = 0
        with store.alive(worker := worker_id()):
            while True:
                trial = take_trial(study, store, setup, worker)
                if trial is None:
                    break
                if trial is WAIT:
                    time.sleep(store.poll)
                    continue
                with store.heartbeat(study, trial):
                    run_trial(study, store, trial, objective, config, index)
                ran += 1
    return ran


def worker_id(pid: int | None = None) -> str:
    """``HOST-PID-RANDOM``: names a worker process in its trials (user attribute ``worker``)."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())
    return f"{host}-{pid if pid is not None else os.getpid()}-{uuid.uuid4().hex[:6]}"


WAIT: Any = object()  # take_trial: others' trials are still running


def take_trial(study: optuna.Study, store: Store, setup: StudySetup, worker: str) -> Trial | None:
    """The next trial of this worker (a re-queued one first), :data:`WAIT` while the study is full
    but others still run trials, or None when the study is finished."""
    from optuna.trial import TrialState

    with store.reserve():
        store.fail_stale(study)
        every = study.get_trials(deepcopy=False)
        trials = counted_trials(every)
        states = Counter(t.state for t in trials)
        if states[TrialState.WAITING] or len(trials) < setup.config.trials:
            # under the lock no driftrec worker adds a trial, so the new one's number is len(every)
            study.sampler = trial_sampler(setup, len(every))
            trial = study.ask()  # pops a WAITING trial (a re-queued one) if there is one
            trial.set_user_attr("worker", worker)
            label_retry(trial)
            return trial
        return WAIT if states[TrialState.RUNNING] else None


def run_trial(study: optuna.Study, store: Store, trial: Trial, objective: Callable[[Trial], float],
              config: TuneConfig, index: int) -> None:
    """Run one trial and record how it ended."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    start = time.perf_counter()
    trial_id = storage_trial_id(store.storage, study, trial.number)

    def finish(state: TrialState, value: float | None = None, error: str | None = None) -> bool:
        """Record the end; False when the trial had already ended (failed and re-queued by another
        worker that found this one's heartbeat stale)."""
        try:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
            if error is not None:
                trial.set_user_attr("error", error)
            study.tell(trial, value, state=state)
            told = True
        except (UpdateFinishedTrialError, ValueError):  # ValueError: optuna's "Cannot tell a FAIL trial"
            if not store.storage.get_trial(trial_id).state.is_finished():
                raise
            told = False
        if not config.quiet:
            frozen = store.storage.get_trial(trial_id)
            what = {TrialState.COMPLETE: f"value {frozen.value:.6g}" if frozen.value is not None else "complete",
                    TrialState.PRUNED: f"pruned at validation {frozen.last_step}",
                    TrialState.FAIL: f"failed: {error}"}.get(frozen.state, frozen.state.name.lower())
            if not told:
                what = "was failed and re-queued by another worker meanwhile (its heartbeat had stopped)"
            who = f", worker {index}" if config.workers > 1 else ""
            print(f"{config.study}: trial {trial.number} {what} ({time.perf_counter() - start:.1f} s{who})",
                  flush=True)
        return told

    try:
        value = objective(trial)
    except optuna.TrialPruned:
        finish(TrialState.PRUNED)
    except KeyboardInterrupt:
        with store.reserve():  # fail and re-queue in one turn: the count never drops below the study's
            if finish(TrialState.FAIL, error="interrupted"):
                store.retry(study, store.storage.get_trial(trial_id))
        raise
    except TRIAL_ERRORS as err:
        finish(TrialState.FAIL, error=" ".join(f"{type(err).__name__}: {err}".split())[:500])
    except BaseException as err:
        finish(TrialState.FAIL, error=" ".join(f"{type(err).__name__}: {err}".split())[:500])
        raise
    else:
        if math.isfinite(value):
            finish(TrialState.COMPLETE, value)
        else:
            finish(TrialState.FAIL, error=f"the objective is {value}")


def worker_main(config: TuneConfig, index: int, threads: int) -> None:
    """Entry point of a worker process started by :func:`run_tune` (spawned: a fresh interpreter)."""
    import torch

    torch.set_num_threads(threads)
    try:
        run_worker(config, index)
    except KeyboardInterrupt:
        sys.exit(130)
    except ConfigError as err:
        print(f"driftrec: error: worker {index}: {err}", file=sys.stderr)
        sys.exit(2)


