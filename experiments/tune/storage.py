"""Where a ``driftrec tune`` study lives and how its workers take turns and notice dead ones.

- The journal file in the study folder (:class:`JournalStore`, the default): Optuna's
  JournalFileBackend takes its own lock for every write, so several processes on one machine share
  it safely. Turns by an ``flock`` beside the journal; a worker is alive while it holds the
  ``flock`` on ``workers/ID.lock``, which the kernel releases when its process dies.
- PostgreSQL (:class:`PostgresStore`, ``--storage postgresql://...``): Optuna's RDBStorage with
  its heartbeat (stale after :data:`STALE_BEATS` missed beats), for workers on many machines.
  Turns by a PostgreSQL advisory lock keyed by the study name.

A running trial whose worker died is set FAIL and re-queued by Optuna's own
``RetryHeartbeatStaleTrialCallback`` (called by RDBStorage for stale heartbeats, by
:meth:`JournalStore.fail_stale` for dead ``flock`` holders): a WAITING copy with the same
parameters, at most :data:`MAX_RETRY` times. The copy replaces the failed trial in the count
(:func:`counted_trials`), so no trial is lost and none counts twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftrec.envs.config import ConfigError
from driftrec.experiments.tune.settings import TuneConfig

if TYPE_CHECKING:  # optuna takes a second to import: `driftrec presets` should not wait
    import optuna
    from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
    from optuna.trial import FrozenTrial, Trial

STALE_BEATS = 3  # a trial whose worker missed this many heartbeats is failed and re-queued
MAX_RETRY = 2  # re-queues of a trial whose worker died, before it counts as failed
POLL = 1.0  # seconds between looks at the running trials of other workers, while waiting for them


def parse_storage_url(text: str) -> Any:
    """``--storage`` -> a SQLAlchemy URL of a PostgreSQL database; anything else is a one-line ConfigError."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = _hide_password(text)
    expected = "expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise ConfigError(f"--storage '{shown}' is not a database URL: {expected}") from None
    backend = url.get_backend_name()
    if backend == "postgres":
        raise ConfigError(f"--storage '{shown}': write postgresql://, not postgres://")
    if backend != "postgresql":
        raise ConfigError(f"--storage '{shown}': only PostgreSQL is supported ({expected}); leave --storage out for "
                          "the local journal file (SQLite is not safe for concurrent workers)")
    if not url.database:
        raise ConfigError(f"--storage '{shown}' names no database: {expected}")
    if not url.host and "host" not in url.query:
        raise ConfigError(f"--storage '{shown}' names no host: {expected}")
    if url.drivername == "postgresql":  # the driver driftrec installs (SQLAlchemy 2.0 would pick psycopg2)
        url = url.set(drivername="postgresql+psycopg")
    return url


def _hide_password(text: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", text)


class Store:
    """Where a study lives and how its workers take turns (see the module doc)."""

    storage: BaseStorage
    where: str  # for messages and study.yaml
    poll: float  # seconds between looks at other workers' running trials

    def __init__(self) -> None:
        self.retry = retry_callback()  # re-queues a trial whose worker died

    def reserve(self) -> contextlib.AbstractContextManager[None]:
        """The study's reservation lock: held while counting trials and taking one."""
        raise NotImplementedError

    def alive(self, worker: str) -> contextlib.AbstractContextManager[None]:
        """Announce ``worker`` as alive while the context is open."""
        return contextlib.nullcontext()

    def heartbeat(self, study: optuna.Study, trial: Trial) -> contextlib.AbstractContextManager[None]:
        """Keep ``trial`` marked as alive while the context is open."""
        return contextlib.nullcontext()

    def fail_stale(self, study: optuna.Study) -> None:
        """Fail and re-queue the running trials of dead workers (call while holding :meth:`reserve`)."""
        raise NotImplementedError


class JournalStore(Store):
    """Optuna's journal file in the study folder; liveness by ``flock`` (released when a process dies)."""

    def __init__(self, study_dir: Path):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        super().__init__()
        self.study_dir = study_dir
        path = study_dir / "journal.log"
        self.storage = JournalStorage(JournalFileBackend(str(path)))
        self.where = str(path)
        self.poll = POLL

    @contextlib.contextmanager
    def reserve(self) -> Iterator[None]:
        import fcntl

        with open(self.study_dir / ".reserve.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _lock_path(self, worker: str) -> Path:
        return self.study_dir / "workers" / f"{worker}.lock"

    @contextlib.contextmanager
    def alive(self, worker: str) -> Iterator[None]:
        import fcntl

        path = self._lock_path(worker)
        path.parent.mkdir(exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # held until this process ends, however it ends
            try:
                yield
            finally:
                path.unlink(missing_ok=True)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _is_alive(self, worker: str) -> bool:
        import fcntl

        path = self._lock_path(worker)
        try:
            handle = open(path)  # noqa: SIM115 (closed below on every path)
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        path.unlink(missing_ok=True)
        return False

    def fail_stale(self, study: optuna.Study) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get("worker")
            if worker is None or self._is_alive(str(worker)):
                continue
            trial_id = storage_trial_id(self.storage, study, trial.number)
            try:
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:  # it ended after all
                continue
            self.retry(study, self.storage.get_trial(trial_id))


class PostgresStore(Store):
    """Optuna's RDBStorage with a heartbeat; turns by a PostgreSQL advisory lock keyed by the study."""

    def __init__(self, url_text: str, study: str, heartbeat: int):
        import sqlalchemy
        from optuna.storages import RDBStorage
        from sqlalchemy.pool import NullPool

        super().__init__()
        url = parse_storage_url(url_text)
        self.where = url.render_as_string(hide_password=True)
        self.poll = min(float(heartbeat), POLL)
        self.heartbeat_interval = heartbeat
        self._key = _lock_key(f"driftrec-tune:{study}")
        try:
            self.engine = sqlalchemy.create_engine(url, poolclass=NullPool)
            # Optuna creates its tables on first use; workers starting together on a fresh
            # database would race to create them, so they take turns.
            with self._locked(_lock_key("driftrec-tune:create-tables")):
                self.storage = RDBStorage(
                    url.render_as_string(hide_password=False), engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=heartbeat, grace_period=STALE_BEATS * heartbeat,
                    heartbeat_stale_trial_callback=self.retry)
        except (ImportError, sqlalchemy.exc.NoSuchModuleError) as err:
            raise ConfigError(f"--storage {self.where}: the PostgreSQL driver is missing ({err}); "
                              "pip install 'psycopg[binary]'") from None
        except sqlalchemy.exc.SQLAlchemyError as err:
            first = str(getattr(err, "orig", None) or err).strip().splitlines()
            raise ConfigError(f"cannot use --storage {self.where}: {first[0] if first else type(err).__name__}") \
                from None

    @contextlib.contextmanager
    def _locked(self, key: int) -> Iterator[None]:
        import sqlalchemy

        with self.engine.begin() as conn:  # the lock ends with the transaction, or with a dead worker's connection
            conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield

    def reserve(self) -> contextlib.AbstractContextManager[None]:
        return self._locked(self._key)

    @contextlib.contextmanager
    def heartbeat(self, study: optuna.Study, trial: Trial) -> Iterator[None]:
        trial_id = storage_trial_id(self.storage, study, trial.number)
        self.storage.record_heartbeat(trial_id)  # before the lock is released: a trial never runs unbeaten
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.heartbeat_interval):
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as err:  # noqa: BLE001 (a lost connection must not kill the trial)
                    print(f"driftrec: warning: heartbeat of trial {trial.number} failed: {err}", file=sys.stderr)

        thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def fail_stale(self, study: optuna.Study) -> None:
        from optuna.storages import fail_stale_trials

        fail_stale_trials(study)  # sets FAIL and calls the storage's callback, self.retry, for each stale trial


def _lock_key(text: str) -> int:
    """A signed 64-bit advisory lock key from a name."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def storage_trial_id(storage: BaseStorage, study: optuna.Study, number: int) -> int:
    """The storage's id of trial ``number`` of ``study``."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


def open_store(config: TuneConfig) -> Store:
    """The storage of ``config``'s study: the journal file in its folder, or its PostgreSQL URL."""
    if config.storage is None:
        config.study_dir.mkdir(parents=True, exist_ok=True)
        return JournalStore(config.study_dir)
    return PostgresStore(config.storage, config.study, config.heartbeat)


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    """Optuna's re-queue of a trial whose worker died: a WAITING copy with its parameters (and user
    attributes) that records the trials it re-runs (:func:`retry_history`); at most
    :data:`MAX_RETRY` copies of one trial."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)


def retry_history(trial: FrozenTrial) -> list[int]:
    """The trials that ``trial`` re-runs, oldest first, as Optuna's retry callback records them
    (empty for a trial that is no retry)."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    return RetryHeartbeatStaleTrialCallback.retry_history(trial)


def label_retry(trial: Trial) -> None:
    """Name in a re-queued ``trial``'s user attributes (so in ``trials.csv``) the trial it replaces
    (``retry_of``) and its retries so far (``retries``). Optuna's callback copied the failed trial's
    attributes with its parameters: the failed run's ``error`` does not describe this one."""
    history = retry_history(trial.storage.get_trial(storage_trial_id(trial.storage, trial.study, trial.number)))
    if history:
        trial.set_user_attr("retry_of", history[-1])
        trial.set_user_attr("retries", len(history))
        if trial.user_attrs.get("error") is not None:
            trial.set_user_attr("error", None)


def counted_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count toward ``--trials``: a failed trial that was re-queued is replaced by its copy."""
    replaced = {history[-1] for t in trials if (history := retry_history(t))}
    return [t for t in trials if t.number not in replaced]


