"""The search-space language of ``driftrec tune``: YAML files of searched and fixed hyperparameters.

A search space (``experiments/search_spaces/<algo>.yml``, or ``--space FILE``) names the
objective, the sampler's and pruner's start-up, the hyperparameters every trial uses (``fixed``)
and the searched ones (``params``): a numeric range ``{low, high[, log][, step][, type]}`` or a
list (or a mapping label -> value) of choices. :func:`load_search_space` validates a file against
the trainer it feeds (rl-zoo3 keys for RL, :class:`~driftrec.agents.supervised.SupervisedConfig`
keys for supervised models); every mistake is one ConfigError naming the key and the file.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftrec.envs.config import ConfigError, read_yaml_mapping

if TYPE_CHECKING:  # optuna takes a second to import: `driftrec presets` should not wait
    from optuna.trial import Trial

RL = ("ppo", "dqn")
SUPERVISED = ("mlp", "gru", "transformer")
TUNABLE = (*RL, *SUPERVISED)
SUPERVISED_METRICS = ("click_auc", "click_logloss", "click_f1", "purchase_auc", "purchase_logloss")
SPACE_KEYS = ("objective", "evaluations", "sampler", "pruner", "fixed", "params")
PARAM_KEYS = ("low", "high", "log", "step", "choices", "type")
PARAM_TYPES = ("int", "float", "categorical")


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a numeric range or a list of choices.

    A choice that is not a plain number, string or boolean (a network shape) has a label: the
    study records the label, :meth:`value` gives what it stands for.
    """

    name: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    integer: bool = False
    choices: tuple[Any, ...] = ()  # what the study records
    values: tuple[Any, ...] = ()  # what each choice stands for

    def suggest(self, trial: Trial) -> Any:
        """Sample (or, for a re-queued trial, read back) this parameter's value in ``trial``."""
        if self.choices:
            return self.value(trial.suggest_categorical(self.name, list(self.choices)))
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high),  # type: ignore[arg-type]
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high),  # type: ignore[arg-type]
                                   step=self.step, log=self.log)

    def value(self, recorded: Any) -> Any:
        """The value a recorded parameter stands for (a fresh copy: trials never share lists)."""
        if not self.choices:
            return recorded
        for choice, value in zip(self.choices, self.values, strict=True):
            if choice == recorded and type(choice) is type(recorded):  # True == 1, but they are other choices
                return copy.deepcopy(value)
        raise ConfigError(f"parameter '{self.name}': {recorded!r} is not one of its choices {list(self.choices)}")

    def extremes(self) -> list[Any]:
        """The values to validate: both bounds, or every choice."""
        return list(self.values) if self.choices else [self.low, self.high]


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A validated search space file (see ``experiments/search_spaces/ppo.yml`` for the format)."""

    algo: str
    path: Path
    params: tuple[Param, ...]
    fixed: Mapping[str, Any]  # hyperparameters every trial uses
    metric: str  # RL: 'reward' (validation reward per user); supervised: a train_supervised summary key
    direction: str  # maximize | minimize
    evaluations: int  # RL: validations per trial (intermediate values); supervised: 0
    startup_trials: int  # random trials before TPE
    pruner_startup_trials: int
    pruner_warmup_steps: int  # the first validations of a trial, which never prune it

    def sample(self, trial: Trial) -> dict[str, Any]:
        """Every parameter's value in ``trial`` (labels resolved)."""
        return {p.name: p.suggest(trial) for p in self.params}

    def values(self, recorded: Mapping[str, Any]) -> dict[str, Any]:
        """A trial's recorded parameters -> the values they stand for (unknown names kept as they are)."""
        by_name = {p.name: p for p in self.params}
        return {k: by_name[k].value(v) if k in by_name else v for k, v in recorded.items()}

    @property
    def objective(self) -> str:
        """The objective as the study records it, e.g. ``reward (maximize)``."""
        return f"{self.metric} ({self.direction})"


def search_space_file(algo: str) -> Path:
    """The packaged search space of ``algo`` (``experiments/search_spaces/<algo>.yml``)."""
    check_algo(algo)
    return Path(str(resources.files("driftrec.experiments") / "search_spaces" / f"{algo}.yml"))


def load_search_space(algo: str, path: str | Path | None = None) -> SearchSpace:
    """Read and validate a search space; every mistake is one ConfigError naming the key and the file."""
    check_algo(algo)
    path = Path(path) if path is not None else search_space_file(algo)
    where = f"search space '{path}'"
    data = read_yaml_mapping(path, "search space")
    for key in data:
        if key not in SPACE_KEYS:
            raise ConfigError(f"unknown key '{key}' in {where}; expected: {', '.join(SPACE_KEYS)}")
    rl = algo in RL
    params_data = data.get("params")
    if not isinstance(params_data, dict) or not params_data:
        raise ConfigError(f"{where} needs 'params', a mapping of parameter name -> {{low, high}} or {{choices}}")
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"'fixed' in {where} must be a mapping of hyperparameters")
    for name in fixed:
        _check_name(algo, str(name), where)
        if name in params_data:
            raise ConfigError(f"parameter '{name}' is both fixed and searched in {where}")
    params = tuple(_param(algo, str(name), spec, where) for name, spec in params_data.items())
    _check_values(algo, params, dict(fixed), where)

    if not rl:
        for key in ("evaluations", "pruner"):
            if key in data:
                raise ConfigError(f"'{key}' in {where}: supervised trials are not pruned (train_supervised reports "
                                  "its held-out metrics once, at the end)")
    objective = data.get("objective") or ({"metric": "reward", "direction": "maximize"} if rl else
                                          {"metric": "click_logloss", "direction": "minimize"})
    if not isinstance(objective, dict) or set(objective) - {"metric", "direction"}:
        raise ConfigError(f"'objective' in {where} must be {{metric: NAME, direction: maximize|minimize}}")
    top_k = int(fixed.get("top_k", 10))
    metrics = ("reward",) if rl else (*SUPERVISED_METRICS, f"hr@{top_k}", f"ndcg@{top_k}")
    metric = objective.get("metric")
    if metric not in metrics:
        raise ConfigError(f"objective metric {metric!r} in {where} is not one of: {', '.join(metrics)}")
    direction = objective.get("direction", "maximize" if rl else None)
    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"objective direction in {where} must be maximize or minimize, got {direction!r}")
    evaluations = _count(data, "evaluations", 5 if rl else 0, 1 if rl else 0, where)
    sampler = _section(data, "sampler", ("n_startup_trials",), where)
    pruner = _section(data, "pruner", ("n_startup_trials", "n_warmup_steps"), where)
    return SearchSpace(
        algo=algo, path=path, params=params, fixed=dict(fixed), metric=str(metric), direction=str(direction),
        evaluations=evaluations, startup_trials=_count(sampler, "n_startup_trials", 10, 0, f"'sampler' in {where}"),
        pruner_startup_trials=_count(pruner, "n_startup_trials", 5, 0, f"'pruner' in {where}"),
        pruner_warmup_steps=_count(pruner, "n_warmup_steps", 1, 0, f"'pruner' in {where}"))


def check_algo(algo: str) -> None:
    if algo not in TUNABLE:
        raise ConfigError(f"cannot tune '{algo}'; choose one of: {', '.join(TUNABLE)}")


def _section(data: Mapping[str, Any], key: str, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"'{key}' in {where} must be a mapping with {', '.join(keys)}")
    for sub in value:
        if sub not in keys:
            raise ConfigError(f"unknown key '{key}.{sub}' in {where}; expected: {', '.join(keys)}")
    return value


def _count(data: Mapping[str, Any], key: str, default: int, lo: int, where: str) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"'{key}' in {where} must be an integer >= {lo}, got {value!r}")
    return value


def _check_name(algo: str, name: str, where: str) -> None:
    """A parameter name must be something the trainer takes: an rl-zoo3 key (or ``policy_kwargs.KEY``)
    for RL, a SupervisedConfig key for supervised models."""
    if algo in SUPERVISED:
        from driftrec.agents.supervised.config import SupervisedConfig

        keys = {f.name for f in dataclasses.fields(SupervisedConfig)} - {"preset"}
        if name == "preset":
            raise ConfigError(f"parameter 'preset' in {where}: the study's preset is --preset")
        if name not in keys:
            raise ConfigError(f"unknown parameter '{name}' in {where}: not a SupervisedConfig key{_close(name, keys)}")
        return
    from driftrec.agents.rl import algorithm, hyperparam_keys

    if name in ("n_timesteps", "n_envs", "policy"):
        flag = {"n_timesteps": "--timesteps", "n_envs": "--users", "policy": "the observation mode"}[name]
        raise ConfigError(f"parameter '{name}' in {where} is the study's, set by {flag}: "
                          "trials with different budgets do not compare")
    head, dot, sub = name.partition(".")
    if dot:
        if head != "policy_kwargs":
            raise ConfigError(f"unknown parameter '{name}' in {where}: only policy_kwargs.KEY may have a dot")
        import inspect

        policy = algorithm(algo).policy_aliases["MlpPolicy"]
        keys = set(inspect.signature(policy.__init__).parameters) - {"self", "observation_space", "action_space",
                                                                       "lr_schedule"}
        if sub not in keys:
            raise ConfigError(f"unknown parameter '{name}' in {where}: '{sub}' is not a policy_kwargs key of "
                              f"{algo}{_close(sub, keys)}")
        return
    keys = set(hyperparam_keys(algo))
    if name not in keys:
        raise ConfigError(f"unknown parameter '{name}' in {where}: not a {algo} hyperparameter{_close(name, keys)}")


def _close(name: str, keys: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(keys), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _param(algo: str, name: str, spec: Any, where: str) -> Param:
    """One ``params`` entry -> a Param, validated."""
    _check_name(algo, name, where)
    at = f"parameter '{name}' in {where}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{at} must be {{low: L, high: H}} or {{choices: [...]}}, got {spec!r}")
    for key in spec:
        if key not in PARAM_KEYS:
            raise ConfigError(f"unknown key '{key}' of {at}; expected: {', '.join(PARAM_KEYS)}")
    kind = spec.get("type")
    if kind is not None and kind not in PARAM_TYPES:
        raise ConfigError(f"{at}: type must be one of {', '.join(PARAM_TYPES)}, got {kind!r}")
    if "choices" in spec:
        if kind not in (None, "categorical") or set(spec) - {"choices", "type"}:
            raise ConfigError(f"{at}: choices take no low, high, log or step")
        choices = spec["choices"]
        if isinstance(choices, dict):
            labels, values = tuple(str(k) for k in choices), tuple(choices.values())
        elif isinstance(choices, list):
            for choice in choices:
                if choice is not None and not isinstance(choice, (bool, int, float, str)):
                    raise ConfigError(f"{at}: choice {choice!r} is not a number, string or boolean; "
                                      "give the choices as a mapping of label -> value")
            labels = values = tuple(choices)
        else:
            raise ConfigError(f"{at}: choices must be a list or a mapping of label -> value")
        if not labels:
            raise ConfigError(f"{at}: choices is empty")
        if len({(type(c), c) for c in labels}) < len(labels):
            raise ConfigError(f"{at}: choices repeat a value")
        return Param(name, choices=labels, values=values)
    if kind == "categorical":
        raise ConfigError(f"{at}: a categorical parameter needs choices")
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{at} needs low and high (or choices)")
    low, high = _number(spec["low"], f"{at}: low"), _number(spec["high"], f"{at}: high")
    step = _number(spec["step"], f"{at}: step") if spec.get("step") is not None else None
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{at}: log must be true or false, got {log!r}")
    integer = kind == "int" or (kind is None and all(isinstance(v, int) for v in (low, high, step) if v is not None))
    if integer and not all(float(v).is_integer() for v in (low, high, step) if v is not None):
        raise ConfigError(f"{at}: an int parameter needs integer bounds and step")
    if not low < high:
        raise ConfigError(f"{at}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{at}: a log scale needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise ConfigError(f"{at}: step must be > 0 and cannot go with log")
    if integer:
        return Param(name, int(low), int(high), log, int(step) if step else None, integer=True)
    return Param(name, float(low), float(high), log, float(step) if step else None)


def _number(value: Any, what: str) -> float | int:
    """YAML 1.1 reads ``1e-5`` as a string: accept numbers written that way."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ConfigError(f"{what} must be finite, got {value!r}")
        return value
    try:
        number = float(str(value))
    except ValueError:
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{what} must be finite, got {value!r}")
    return number


def _check_values(algo: str, params: tuple[Param, ...], fixed: dict[str, Any], where: str) -> None:
    """Every bound and choice must be a value the trainer accepts (checked one at a time)."""
    if algo in SUPERVISED:
        from driftrec.agents.supervised.config import SupervisedConfig

        def check(name: str, value: Any) -> None:
            # heads must divide embedding_dim: checked for every pair below, so one value at a time here
            pair = {"embedding_dim": 2 * value} if name == "heads" and isinstance(value, int) else {"heads": 1}
            SupervisedConfig.from_dict({**pair, name: value})
    else:
        from driftrec.agents.rl import resolved_hyperparams

        def check(name: str, value: Any) -> None:
            if "." not in name:
                resolved_hyperparams(algo, {name: value})
    for name, values in [*((p.name, p.extremes()) for p in params), *((k, [v]) for k, v in fixed.items())]:
        for value in values:
            try:
                check(name, value)
            except ConfigError as err:
                raise ConfigError(f"parameter '{name}' in {where}: {err}") from None
    if algo == "transformer":  # attention heads must divide the embedding width in every trial
        options = {p.name: p.extremes() if p.choices else list(range(int(p.low), int(p.high) + 1))
                   for p in params if p.name in ("heads", "embedding_dim")}
        from driftrec.agents.supervised.config import SupervisedConfig

        heads = options.get("heads", [fixed.get("heads", SupervisedConfig.heads)])
        dims = options.get("embedding_dim", [fixed.get("embedding_dim", SupervisedConfig.embedding_dim)])
        for h in heads:
            for d in dims:
                if int(d) % int(h):
                    raise ConfigError(f"heads {h} does not divide embedding_dim {d} in {where}: "
                                      "every heads value must divide every embedding_dim value")


def lay_over(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``values`` on top; ``policy_kwargs.KEY`` sets one key of ``policy_kwargs``
    (whose string form ``"dict(...)"`` is parsed first)."""
    out = dict(base)
    for key, value in values.items():
        head, dot, sub = key.partition(".")
        if not dot:
            out[key] = value
            continue
        from driftrec.agents.rl import parse_policy_kwargs

        inner = parse_policy_kwargs(out.get(head))
        inner[sub] = value
        out[head] = inner
    return out


