"""The settings of a ``driftrec tune`` study: the job (:class:`TuneConfig`), what every worker
derives from it (:class:`StudySetup`), and the check that a resumed study keeps its settings.

The settings that decide what a trial's value means (algorithm, preset and its version,
simulator keys, seed, objective, budget, users) are stored with the study: resuming it with other
settings is refused in one line, naming the setting.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftrec.envs.config import REQUIRED, Config, ConfigError, SimConfig, knob
from driftrec.envs.presets import PRESETS, preset_config
from driftrec.experiments.tune.space import RL, TUNABLE, SearchSpace, lay_over, load_search_space

if TYPE_CHECKING:  # optuna takes a second to import: `driftrec presets` should not wait
    import optuna

DEFAULT_OUT = Path("runs/tune")
DEFAULT_LOG_USERS = 1000  # supervised: users of the logging policy's event log (as compare's log_users)
DEFAULT_EVAL_USERS = 128  # RL: validation users of every trial (as compare's rl_eval_users)
DEFAULT_HEARTBEAT = 30  # seconds between a PostgreSQL worker's heartbeats
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _study_name(value: Any) -> str:
    if not isinstance(value, str) or not STUDY_NAME.fullmatch(value):
        raise ConfigError(f"study name {value!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
    return value


def _built_in_preset(value: Any) -> str:
    if not isinstance(value, str) or value not in PRESETS:
        # best.yml is keyed by preset and compare looks a file preset's hyperparameters up under its base
        raise ConfigError(f"tune takes a built-in preset, not '{value}'; to tune for a calibrated preset "
                          f"file, tune on its base preset with its overrides as --set keys")
    return value


@dataclasses.dataclass(frozen=True)
class TuneConfig(Config):
    """One tuning job: the CLI's ``driftrec tune`` flags, for tests and notebooks.

    :func:`study_setup` validates it (one-line ConfigErrors) before anything is started.
    """

    label = "tune"

    algo: str = knob(REQUIRED, "algorithm tuned", choices=TUNABLE)
    study: str = knob(REQUIRED, "study name: the folder under out and the name in the storage", parse=_study_name)
    trials: int = knob(REQUIRED, "the study's total trials (all workers, all runs)", 1)
    preset: str = knob("default", "simulator preset (a built-in one)", parse=_built_in_preset)
    overrides: Mapping[str, Any] = knob({}, "SimConfig keys over the preset")
    storage: str | None = knob(None, "postgresql://...; None: the journal file in the study folder")
    workers: int = knob(1, "worker processes started here", 1)
    seed: int = knob(0, "seeds the sampler, the agents and the users (training, validation, log)", 0)
    timesteps: int | None = knob(None, "RL: user-steps per trial; None: the preset's n_timesteps", 1)
    users: int | None = knob(None, "RL: users stepped together (n_envs; None: the hyperparameters'); supervised: "
                                   "log users", 1)
    eval_users: int = knob(DEFAULT_EVAL_USERS, "RL: validation users of every trial", 1)
    out: Path | str = knob(DEFAULT_OUT, "parent of the study folder")
    space: Path | str | None = knob(None, "search space YAML; None: experiments/search_spaces/<algo>.yml")
    heartbeat: int = knob(DEFAULT_HEARTBEAT, "PostgreSQL: seconds between heartbeats of a running trial", 1)
    quiet: bool = knob(False, "no line per trial on stdout")

    @property
    def study_dir(self) -> Path:
        """The study folder, ``out/study``."""
        return Path(self.out) / self.study

    def check(self) -> None:
        """A training budget is for RL agents only."""
        if self.timesteps is not None and self.algo not in RL:
            raise ConfigError(f"--timesteps is for RL agents (ppo, dqn), not the supervised model {self.algo}")


@dataclasses.dataclass(frozen=True)
class StudySetup:
    """What every process of a study derives from its TuneConfig, validated."""

    config: TuneConfig
    space: SearchSpace
    sim: SimConfig
    settings: dict[str, Any]  # stored with the study; a resume must match them
    base_hp: dict[str, Any]  # RL: the packaged hyperparameters of the preset, with budget and users

    @property
    def rl(self) -> bool:
        return self.config.algo in RL

    def trial_settings(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The hyperparameters (RL) or training keys (supervised) of a trial with ``values``."""
        if self.rl:
            return lay_over(lay_over(self.base_hp, self.space.fixed), values)
        return {**self.space.fixed, **values}


def study_setup(config: TuneConfig) -> StudySetup:
    """Validate ``config`` (user mistakes raise one-line ConfigErrors) before anything is started;
    the setup holds it as validated (values coerced to their types)."""
    config = config.validate()
    space = load_search_space(config.algo, config.space)
    sim = preset_config(config.preset, config.overrides)
    overrides = {k: _plain(getattr(sim, k)) for k in sorted(config.overrides)}
    settings: dict[str, Any] = {"algo": config.algo, "preset": config.preset,
                                "preset_version": PRESETS[config.preset].version, "overrides": overrides,
                                "seed": config.seed, "objective": space.objective}
    base_hp: dict[str, Any] = {}
    if config.algo in RL:
        from driftrec.agents.rl import DISCRETE_ONLY, load_hyperparams, resolved_hyperparams
        from driftrec.envs.user_model import build_user_model

        base_hp = load_hyperparams(config.algo, config.preset)
        if config.timesteps is not None:
            base_hp["n_timesteps"] = config.timesteps
        if config.users is not None:
            base_hp["n_envs"] = config.users
        base_hp.setdefault("n_envs", 64)
        base_hp = resolved_hyperparams(config.algo, base_hp)
        if "n_timesteps" not in base_hp:
            raise ConfigError(f"no training budget: give --timesteps or n_timesteps in the {config.algo} "
                              "hyperparameters")
        from gymnasium import spaces

        if config.algo in DISCRETE_ONLY and not isinstance(build_user_model(sim).action_space, spaces.Discrete):
            raise ConfigError(f"{config.algo} needs a single-item action but preset '{config.preset}' recommends "
                              "slates: tune ppo, or set slate_size=1")
        settings.update(timesteps=int(base_hp["n_timesteps"]), users=int(base_hp["n_envs"]),
                        eval_users=config.eval_users, evaluations=space.evaluations)
    else:
        if sim.model != "shop":
            raise ConfigError(f"supervised models need the ShopSim user model; preset '{config.preset}' uses "
                              f"'{sim.model}'")
        settings["log_users"] = config.users or DEFAULT_LOG_USERS
    return StudySetup(config, space, sim, _plain(settings), base_hp)


def _plain(value: Any) -> Any:
    """A JSON round trip: what the storage gives back, so stored and new settings compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


_SETTING_NAMES = {"algo": "algorithm", "preset": "preset", "preset_version": "preset version",
                  "overrides": "simulator keys (--set)", "seed": "--seed", "objective": "objective",
                  "timesteps": "--timesteps", "users": "--users", "eval_users": "--eval-users",
                  "evaluations": "validations per trial", "log_users": "--users (log users)"}


def check_settings(study: optuna.Study, setup: StudySetup, where: str) -> None:
    """Store the settings in a new study; refuse (one line) a study made with other settings."""
    stored = study.user_attrs.get("driftrec")
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise ConfigError(f"study '{study.study_name}' in {where} was not made by driftrec tune: "
                              "choose another --study")
        study.set_user_attr("driftrec", setup.settings)
        return
    for key, value in setup.settings.items():
        if stored.get(key) != value:
            raise ConfigError(f"study '{study.study_name}' in {where} was created with {_SETTING_NAMES.get(key, key)} "
                              f"{describe(stored.get(key))}, not {describe(value)}: resume it with its settings or "
                              "choose another --study")


def describe(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}" if value else "none"
    return repr(value)


