"""What a ``driftrec tune`` study leaves in its folder: ``trials.csv``, ``best.yml``, the figures,
and the :class:`TuneResult` that :func:`driftrec.experiments.tune.job.run_tune` returns.

``best.yml`` of an RL study is per preset (``{PRESET: {hyperparameters}}``, every rl-zoo3 key the
trial trained with, as :func:`driftrec.agents.rl.load_hyperparams` reads it); of a supervised study
a flat mapping of :class:`~driftrec.agents.supervised.SupervisedConfig` keys (compare's
``supervised:``). Its header names the chosen trial's validation value and, for a supervised
study, that trial's held-out test value: the only test number the study reports.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from driftrec.experiments.artifacts import atomic_path, plain, write_text
from driftrec.experiments.tune.settings import StudySetup, describe
from driftrec.experiments.tune.storage import counted_trials

if TYPE_CHECKING:  # optuna takes a second to import: `driftrec presets` should not wait
    import optuna
    from optuna.trial import FrozenTrial


@dataclasses.dataclass
class TuneResult:
    """What a :func:`~driftrec.experiments.tune.job.run_tune` call left: the study's trials, its best,
    the files written."""

    study_dir: Path
    states: dict[str, int]  # trial state -> trials (a re-queued trial counts once)
    ran: int  # trials this call's workers finished
    best_trial: int | None
    best_value: float | None  # the best trial's validation value (the objective)
    best_params: dict[str, Any]
    files: list[Path]
    notes: list[str]
    wall_s: float
    failed_workers: list[str]  # "worker K exited with status S"
    metric: str = ""  # the objective's metric, e.g. reward or click_logloss
    best_test_value: float | None = None  # supervised: the best trial's held-out test value of the metric


def export_study(study: optuna.Study, setup: StudySetup, wall_s: float = 0.0) -> TuneResult:
    """Write ``trials.csv``, ``best.yml`` and the figures into the study folder (each atomically)."""
    from optuna.trial import TrialState

    study_dir = setup.config.study_dir
    trials = counted_trials(study.get_trials(deepcopy=False))
    states = Counter(t.state.name for t in trials)
    files: list[Path] = []
    notes: list[str] = []
    if trials:
        frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "user_attrs", "datetime_start",
                                              "duration"))
        # the test metrics of every trial stay in the storage: only the chosen trial's are reported
        frame = frame.drop(columns=["user_attrs_test_metrics"], errors="ignore")
        files.append(write_text(study_dir / "trials.csv", frame.to_csv(index=False)))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best_trial: int | None = None
    best_value: float | None = None
    best_params: dict[str, Any] = {}
    best_test: float | None = None
    if complete:
        best = study.best_trial
        best_trial, best_value, best_params = best.number, float(best.value), setup.space.values(best.params)
        best_test = best.user_attrs.get("test_metrics", {}).get(setup.space.metric)
        files.append(_write_best(study_dir / "best.yml", setup, best, best_params, len(complete), best_test))
    else:
        notes.append("no trial completed: no best.yml")
    files.extend(_figures(study, study_dir, len(complete), notes))
    return TuneResult(study_dir=study_dir, states=dict(states), ran=0, best_trial=best_trial, best_value=best_value,
                      best_params=best_params, files=files, notes=notes, wall_s=wall_s, failed_workers=[],
                      metric=setup.space.metric, best_test_value=best_test)


def _write_best(path: Path, setup: StudySetup, best: FrozenTrial, values: dict[str, Any], complete: int,
                test: float | None) -> Path:
    """``best.yml``: per preset rl-zoo3 keys (RL) or SupervisedConfig keys (supervised); the header
    names the chosen trial's validation value and (supervised) its held-out test value."""
    config, space = setup.config, setup.space
    header = [f"# driftrec tune {config.algo}: study '{config.study}', best of {complete} complete trials "
              f"(trial {best.number}), validation {space.metric} {best.value:.6g} ({space.direction})"]
    if test is not None:
        header.append(f"# held-out test {space.metric} of trial {best.number}: {test:.6g} (reported, never "
                      "selected on)")
    header += [f"# preset {config.preset}" + (f", simulator keys {describe(setup.settings['overrides'])}"
                                             if setup.settings["overrides"] else "") + f", seed {config.seed}; "
              f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}"]
    settings = setup.trial_settings(values)
    if setup.rl:
        header.append(f"# driftrec train {config.algo} --preset {config.preset} --hyperparams {path.name} ...; "
                      f"compare: hyperparams: {{{config.algo}: {path}}}")
        from driftrec.agents.rl import parse_policy_kwargs

        if "policy_kwargs" in settings:
            settings["policy_kwargs"] = parse_policy_kwargs(settings["policy_kwargs"])
        data: dict[str, Any] = {config.preset: plain(settings)}
    else:
        header.append(f"# SupervisedConfig keys: compare's `supervised:` mapping, or driftrec train {config.algo} "
                      "--set KEY=VALUE ...")
        data = plain(settings)
    return write_text(path, "\n".join(header) + "\n" + dump_yaml(data))


def _figures(study: optuna.Study, study_dir: Path, complete: int, notes: list[str]) -> list[Path]:
    """Optimisation history (>= 1 complete trial) and parameter importances (>= 2)."""
    if complete < 1:
        return []
    import matplotlib.pyplot as plt
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.visualization import matplotlib as vis

    files = []
    ax = vis.plot_optimization_history(study)
    files.append(_save_figure(ax.figure, study_dir / "history.png"))
    plt.close(ax.figure)
    if complete < 2:
        notes.append("parameter importances need at least 2 complete trials: no importances.png")
        return files
    try:
        # PED-ANOVA: no scikit-learn needed (Optuna's default fANOVA needs it)
        ax = vis.plot_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError, ZeroDivisionError) as err:
        notes.append(f"parameter importances could not be computed ({err}): no importances.png")
        return files
    files.append(_save_figure(ax.figure, study_dir / "importances.png"))
    plt.close(ax.figure)
    return files


def _save_figure(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return path


class _Dumper(yaml.SafeDumper):
    """Mappings in block style, lists on one line (``net_arch: [64, 64]``), as the packaged YAML."""


_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data,
                                                                            flow_style=True))


def dump_yaml(data: Mapping[str, Any]) -> str:
    return yaml.dump(plain(dict(data)), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def write_yaml(path: Path, data: Mapping[str, Any]) -> Path:
    return write_text(path, dump_yaml(data))


