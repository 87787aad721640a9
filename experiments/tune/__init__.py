"""``driftrec tune``: hyperparameter search with Optuna, by one process or many sharing a study.

``driftrec tune ppo|dqn|mlp|gru|transformer --preset P --trials N --study NAME`` runs an Optuna
study (:func:`run_tune`): the TPE sampler (seeded by ``--seed`` and the trial number, so a study
run by one worker is reproducible) proposes hyperparameters from a YAML search space
(``experiments/search_spaces/<algo>.yml``, or ``--space FILE``), every trial trains once, and
the median pruner stops RL trials whose validations trail the other trials' at the same point.

- RL (ppo, dqn): a trial is a ``driftrec train`` run (:func:`driftrec.experiments.train.train_policy`)
  of ``--timesteps`` user-steps; its objective is the reward per user of the validation users
  after the whole budget, and the validations along the way are the pruner's intermediate values.
  Every trial meets the same training and validation users (``--seed``), so trials differ only in
  their hyperparameters.
- Supervised (mlp, gru, transformer): the logging policy's event log of ``--users`` users is
  simulated once into the study folder; a trial is a :func:`driftrec.experiments.train.train_policy`
  run on it, judged on its validation examples, the latest of the training data (the space's
  ``objective``, by default the click log-loss); the held-out test examples, later still, are never
  selected on: ``best.yml`` and the summary report the chosen trial's test value only. Not pruned:
  ``train_supervised`` reports its metrics once, at the end.

The study folder ``--out/NAME`` (default ``runs/tune/NAME``):

| path | what |
|---|---|
| ``journal.log`` | the study itself (Optuna's journal file storage) unless ``--storage`` names a database |
| ``study.yaml`` | what the study tunes: algorithm, preset, simulator keys, budget, objective, storage |
| ``best.yml`` | the best trial's hyperparameters, for ``driftrec train --hyperparams`` and ``compare`` |
| ``trials.csv`` | one row per trial: number, state, value, parameters, worker, seconds, retry_of |
| ``history.png``, ``importances.png`` | optimisation history; parameter importances (PED-ANOVA) |
| ``logs.parquet`` | supervised studies: the event log every trial trains on |
| ``trials/NNNN/`` | each trial's run folder (model, spec, validations; metrics.json for supervised) |

``best.yml`` of an RL study is per preset (``{PRESET: {hyperparameters}}``, every rl-zoo3 key the
trial trained with, as :func:`driftrec.agents.rl.load_hyperparams` reads it); of a supervised study
a flat mapping of :class:`~driftrec.agents.supervised.SupervisedConfig` keys (compare's ``supervised:``).

Storage and workers. The default storage is a journal file in the study folder, which several
processes on one machine share safely (Optuna's JournalFileBackend takes its own lock for every
write; SQLite is not safe for concurrent writers). ``--storage postgresql://USER@HOST:PORT/DB``
puts the study in PostgreSQL so that workers on many machines share it (each runs the same
command); ``--workers K`` starts K worker processes here. The study's settings are stored with
it: resuming with another algorithm, preset, budget or objective is refused. ``--trials N`` is the
study's total, across all workers and runs: re-running the same command finishes an interrupted
study, and a larger N adds trials. Exactly N trials end COMPLETE, PRUNED or FAIL:

- a worker takes a trial while holding the study's reservation lock (an ``flock`` beside the
  journal; a PostgreSQL advisory lock keyed by the study name), counting the trials that are
  running, waiting or finished first, so no two workers start the N+1st trial (Optuna's
  MaxTrialsCallback checks after a trial ends, so racing workers can overshoot);
- a worker that dies (killed, out of memory, its machine lost) leaves its trial RUNNING until
  another worker notices: through the database heartbeat (``--heartbeat`` seconds; stale after
  three missed beats) or, for the journal, because the dead worker's ``flock`` on
  ``workers/ID.lock`` was released by the kernel. That trial is set FAIL and re-queued with the
  same parameters by Optuna's ``RetryHeartbeatStaleTrialCallback`` (WAITING; at most
  :data:`~driftrec.experiments.tune.storage.MAX_RETRY` times); the retry replaces it in the count,
  so no trial is lost and none counts twice (a worker that was only stalled past the grace period
  finds its trial failed and drops its late result). A Ctrl-C re-queues the interrupted trial
  the same way. Workers wait for the running trials of others before they exit, so a run
  that ends normally leaves the study finished.

The modules, one concern each (none imports this package's ``__init__``):

| module | what |
|---|---|
| :mod:`~driftrec.experiments.tune.space` | the search-space language: :func:`load_search_space` |
| :mod:`~driftrec.experiments.tune.settings` | :class:`TuneConfig`; what a worker derives; the stored settings |
| :mod:`~driftrec.experiments.tune.storage` | the journal file and PostgreSQL, reservation and liveness locks, retries |
| :mod:`~driftrec.experiments.tune.objectives` | a trial's training and validation value; the supervised study's log |
| :mod:`~driftrec.experiments.tune.worker` | the worker loop: take a trial, run it, record its end |
| :mod:`~driftrec.experiments.tune.export` | ``trials.csv``, ``best.yml``, figures, :class:`TuneResult` |
| :mod:`~driftrec.experiments.tune.job` | :func:`run_tune`: the study from start to export |
| :mod:`~driftrec.experiments.tune.cli` | ``driftrec tune``'s flags and summary (:func:`add_parser`) |
"""

from driftrec.experiments.tune.cli import add_parser, run_tune_cli
from driftrec.experiments.tune.export import TuneResult, export_study
from driftrec.experiments.tune.job import run_tune
from driftrec.experiments.tune.settings import TuneConfig
from driftrec.experiments.tune.space import (
    RL,
    SUPERVISED,
    TUNABLE,
    Param,
    SearchSpace,
    lay_over,
    load_search_space,
    search_space_file,
)
from driftrec.experiments.tune.storage import counted_trials, parse_storage_url
from driftrec.experiments.tune.worker import run_worker

__all__ = [
    "RL", "SUPERVISED", "TUNABLE", "Param", "SearchSpace", "TuneConfig", "TuneResult", "add_parser", "counted_trials",
    "export_study", "lay_over", "load_search_space", "parse_storage_url", "run_tune", "run_tune_cli", "run_worker",
    "search_space_file",
]
