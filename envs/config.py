"""Typed, validated configuration: the :class:`Config` base every driftrec config is built on,
the one ``--set KEY=VALUE`` grammar (:func:`parse_sets`), and the simulator's :class:`SimConfig`.

A config is a frozen dataclass subclassing :class:`Config` whose fields are :func:`knob`\\ s: a
default, a one-line doc string and what is allowed (a range, choices), the type coming from the
field's annotation. ``Config.from_dict`` is the only way a user's mapping (a preset, YAML,
``gym.make`` keyword overrides, CLI ``--set``) becomes a config, so every mistake is caught in one
place and reported as one :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any, ClassVar, TypeVar, get_type_hints

ConfigT = TypeVar("ConfigT", bound="Config")
REQUIRED: Any = dataclasses.MISSING
"""The default of a :func:`knob` the user must always give (e.g. a run's output folder)."""


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type, or out of range.

    The message is one line that names the key and what is allowed; the CLI prints it as is.
    """


def knob(default: Any, doc: str, lo: float | None = None, hi: float | None = None,
         choices: tuple[str, ...] | None = None, *, distinct: bool = False, merge: bool = True,
         parse: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field carrying its doc string and what is allowed.

    ``lo`` and ``hi`` are inclusive bounds of a number (either may be None: unbounded on that
    side); ``choices`` the allowed strings; for a tuple field both apply to each item, and
    ``distinct`` asks for at least one item, each once. ``default`` may be :data:`REQUIRED`; a
    mapping default is copied for every instance.

    ``merge=False`` makes a mapping field a table of plain keys: a mapping given whole replaces the
    base's instead of merging into it, and a dotted key ``"field.k"`` sets entry ``k`` (split at
    its first dot only, so ``k`` may hold dots), over the base's table or over the one given whole
    in the same mapping, whatever their order. ``parse`` is for a rule that type, range and choices
    cannot express: ``parse(value)`` returns the field's value or raises a one-line ConfigError,
    in place of those checks.
    """
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": choices, "distinct": distinct, "merge": merge,
            "parse": parse}
    if isinstance(default, (dict, list, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Config:
    """Base of every config: a frozen dataclass of :func:`knob` fields (subclasses add
    ``@dataclasses.dataclass(frozen=True)``).

    A field's annotation is its type: ``bool``, ``int``, ``float`` (range from the knob), ``str``
    (the knob's choices, or free text), ``Path``, ``X | None``, ``tuple[X, ...]`` (a list or a
    comma-separated string), a mapping (free, e.g. hyperparameter overrides: a mapping value
    merges into the base's key by key, or replaces it for a ``merge=False`` knob) or another
    Config (a section: ``{"sim": {...}}`` or ``"sim.key"`` set its keys). Override :meth:`check`
    for rules across fields, :attr:`label`, :attr:`unknown_hint` and :meth:`subject` for the
    wording of messages.
    """

    label: ClassVar[str] = "config"
    """Names the kind of key in "unknown LABEL key 'x'"."""
    unknown_hint: ClassVar[str] = ""
    """Appended to an unknown key's message when no known key is close (e.g. where to look)."""

    @classmethod
    def subject(cls, key: str) -> str:
        """How a message names ``key`` ("config key 'x' must be ...")."""
        return f"config key '{key}'"

    @classmethod
    def from_dict(cls: type[ConfigT], values: Mapping[str, Any], base: ConfigT | None = None) -> ConfigT:
        """Build a config from ``values`` on top of ``base`` (defaults if None), validating each key.

        Keys may be dotted (``"sim.n_items"``) to reach into a section or a mapping field; a mapping
        value merges into the base's (see :func:`nest`). Raises ConfigError, one line naming the key.
        """
        return cls._build(values, base, "")

    def validate(self: ConfigT) -> ConfigT:
        """Raise ConfigError (one line naming the key) unless every field and :meth:`check` pass;
        for configs built directly (``RLTrainConfig(...)``) rather than by :meth:`from_dict`.
        Returns the config as :meth:`from_dict` builds it (``"3"`` given for an integer is ``3``)."""
        return type(self).from_dict({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def check(self) -> None:
        """Rules across fields, run by :meth:`from_dict` after each field's own check (none here)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of every field (YAML-safe: sections as mappings, tuples as lists, paths as text)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """(key, default, allowed, doc) for every knob, a section's as dotted keys; for docs and help."""
        rows = []
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            if _is_config(kind):
                rows += [(f"{f.name}.{key}", *rest) for key, *rest in kind.describe()]
                continue
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = repr(f.default_factory())
            else:
                default = "required"
            rows.append((f.name, default, _allowed(kind, f.metadata), f.metadata["doc"]))
        return rows

    @classmethod
    def _build(cls: type[ConfigT], values: Mapping[str, Any], base: ConfigT | None, prefix: str) -> ConfigT:
        """:meth:`from_dict` of a section at ``prefix`` ("" for the top, "sim." inside)."""
        if not isinstance(values, Mapping):
            what = cls.subject(prefix[:-1]) if prefix else f"a {cls.label}"
            raise ConfigError(f"{what} must be a mapping, got {values!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = _hints(cls)
        current = {name: getattr(base, name) if base is not None else _default(f) for name, f in fields.items()}
        for key, value in cls._nested(values, fields, hints, prefix, current).items():
            kind, path, meta = hints[key], prefix + key, fields[key].metadata
            if _is_config(kind):
                inside = current[key] if isinstance(current[key], kind) else None
                current[key] = value if isinstance(value, kind) else kind._build(value, inside, path + ".")
            elif (_is_mapping(kind) and meta.get("merge", True) and isinstance(value, Mapping)
                  and isinstance(current[key], Mapping)):
                current[key] = _merge(current[key], value)
            else:
                current[key] = _check(cls.subject(path), value, kind, meta)
        for name, value in current.items():
            if value is dataclasses.MISSING:
                raise ConfigError(f"{cls.subject(prefix + name)} is required")
        cfg = cls(**current)
        cfg.check()
        return cfg

    @classmethod
    def _nested(cls, values: Mapping[str, Any], fields: Mapping[str, dataclasses.Field[Any]],
                hints: Mapping[str, Any], prefix: str, current: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with dotted keys nested (:func:`nest`), once each key is known to this config;
        the dotted entries of a ``merge=False`` table laid over its whole value, else ``current``'s."""
        sections = [name for name in fields if _is_config(hints[name]) or _is_mapping(hints[name])]
        tables: dict[str, dict[str, Any]] = {name: {} for name in sections
                                             if not fields[name].metadata.get("merge", True)}
        rest: dict[str, Any] = {}
        for key, value in values.items():
            head, dot, sub = str(key).partition(".")
            if head not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1)
                near = difflib.get_close_matches(head, sections, n=1) if dot else []
                hint = (f"; did you mean '{prefix}{close[0]}'?" if close else
                        f"; did you mean '{prefix}{near[0]}.{sub}'?" if near else cls.unknown_hint)
                raise ConfigError(f"unknown {cls.label} key '{prefix}{key}'{hint}")
            if dot and head not in sections:
                only = f"only {', '.join(sections)} take dotted keys" if sections else "no key takes a dot"
                raise ConfigError(f"{cls.subject(prefix + str(key))}: {only}")
            if dot and head in tables:
                tables[head][sub] = value
            else:
                rest[key] = value
        out = nest(rest)
        for name, entries in tables.items():
            whole = out.get(name, current[name])  # a table given whole, else the base's
            if entries:
                out[name] = {**whole, **entries} if isinstance(whole, Mapping) else out.get(name, entries)
        return out


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys as nested mappings, in order, a later key winning: ``{"a.b": 1, "a.c": 2}`` ->
    ``{"a": {"b": 1, "c": 2}}``; a mapping value merges into what earlier keys set there.
    Setting a key to a value and to a mapping at once is a ConfigError."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        *path, last = str(key).split(".")
        node = out
        for depth, part in enumerate(path):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"key '{key}': '{'.'.join(path[:depth + 1])}' is set to a value and a mapping "
                                  "at once")
        both = isinstance(node.get(last), dict) and isinstance(value, Mapping)
        node[last] = _merge(node[last], value) if both else value
    return out


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """The one grammar of ``--set KEY=VALUE`` for every command: ``["key=value", ...]`` ->
    ``{key: value}``, each value parsed as YAML (numbers, booleans, strings, lists, mappings), the
    last of a key winning. Keys are kept as given; the command's config decides what they mean, a
    dotted one reaching into a section (``Config.from_dict`` reads ``{"sim.n_items": 30}`` as
    ``{"sim": {"n_items": 30}}``). A malformed item is one ConfigError naming it."""
    import yaml  # PyYAML: only the config readers need it

    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"bad --set '{item}': expected KEY=VALUE, e.g. --set drift_gradual=0.2")
        values.pop(key, None)  # the last of a key wins, in its place among the dotted keys too
        try:
            values[key] = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError:
            raise ConfigError(f"bad --set '{item}': the value is not valid YAML") from None
    return values


@dataclasses.dataclass(frozen=True)
class SimConfig(Config):
    """All ShopSim knobs. Units: time in days, utilities in logits."""

    unknown_hint = "; see `driftrec presets --keys`"

    # --- model and interface -------------------------------------------------------------
    model: str = knob("shop", "user model: 'shop' (ShopSim) or 'recsim-ie' (RecSim interest evolution)",
                      choices=("shop", "recsim-ie"))
    obs_mode: str = knob("features", "observation: flat 'features', 'history' Dict, or 'oracle' (adds hidden state)",
                         choices=("features", "history", "oracle"))
    action_mode: str = knob("catalog", "'catalog' (pick item ids) or 'candidates' (index M retrieved items)",
                            choices=("catalog", "candidates"))
    slate_size: int = knob(1, "items per recommendation (K)", 1, 20)
    n_candidates: int = knob(10, "retrieved candidates per request in candidates mode (M)", 1, 1000)
    choice_model: str = knob("mnl", "'mnl' (multinomial logit with no-click option) or 'cascade'",
                             choices=("mnl", "cascade"))
    history_len: int = knob(20, "events kept in the user's history (history obs, last interactions)", 1, 200)
    last_interactions: int = knob(3, "recent interactions one-hot encoded in the features obs", 0, 20)
    count_decay: float = knob(0.9, "per-request decay of the per-category counts in the features obs", 0.0, 0.999)
    horizon_days: float = knob(30.0, "length of a user's life (episode) in days", 0.1, 3650.0)

    # --- world: catalog and calendar -------------------------------------------------------
    world_seed: int = knob(0, "seed of the catalog and event calendar (shared by all users)", 0, 2**63 - 1)
    n_items: int = knob(500, "catalog size", 2, 1_000_000)
    n_categories: int = knob(10, "item categories", 1, 1000)
    topic_dim: int = knob(8, "dimension of interest and topic vectors", 1, 256)
    topic_noise: float = knob(0.3, "spread of an item's topic around its category centroid", 0.0, 10.0)
    appeal_scale: float = knob(1.0, "std of item appeal (hidden clickiness, logits)", 0.0, 10.0)
    quality_scale: float = knob(1.0, "std of item quality (hidden, what the user finds after a click)", 0.0, 10.0)
    appeal_quality_corr: float = knob(0.2, "correlation of appeal and quality (negative = clickbait)", -1.0, 1.0)
    price_mean: float = knob(30.0, "mean item price", 0.01, 1e6)
    price_spread: float = knob(0.6, "log-normal spread of prices", 0.0, 5.0)

    # --- population ----------------------------------------------------------------------------
    n_segments: int = knob(4, "hidden user segments (condition demographics and base interest)", 1, 100)
    segment_spread: float = knob(0.5, "spread of a user's base interest around the segment's", 0.0, 10.0)
    interest_scale: float = knob(1.5, "weight of interest . topic in utility", 0.0, 20.0)
    price_sensitivity: float = knob(0.5, "mean price sensitivity (utility per relative price)", 0.0, 20.0)
    patience_mean: float = knob(6.0, "mean requests a session lasts without quality effects", 0.5, 1e4)
    patience_quality: float = knob(1.0, "requests of patience gained per unit quality of a clicked item "
                                   "(at most patience_refund_max)", 0.0, 100.0)
    patience_refund_max: float = knob(0.5, "most of a request's patience a click can refund (below 1, so every "
                                      "session ends)", 0.0, 0.99)
    no_click_utility: float = knob(3.7, "utility of not clicking (MNL outside option, logits)", -20.0, 20.0)
    position_decay: float = knob(0.8, "attention at slate position k is position_decay**k", 0.0, 1.0)

    # --- funnel and reward -----------------------------------------------------------------------
    cart_bias: float = knob(-2.9, "logit of add-to-cart after a click, at zero quality and interest", -20.0, 20.0)
    cart_quality: float = knob(0.5, "add-to-cart logit per unit quality", 0.0, 20.0)
    cart_interest: float = knob(0.3, "add-to-cart logit per unit of interest . topic", 0.0, 20.0)
    purchase_bias: float = knob(-1.0, "logit of purchase after add-to-cart, at zero quality and interest", -20.0, 20.0)
    purchase_quality: float = knob(0.5, "purchase logit per unit quality", 0.0, 20.0)
    purchase_interest: float = knob(0.3, "purchase logit per unit of interest . topic", 0.0, 20.0)
    reward_click: float = knob(1.0, "reward per click", -1e6, 1e6)
    reward_cart: float = knob(0.0, "reward per add-to-cart", -1e6, 1e6)
    reward_purchase: float = knob(5.0, "reward per purchase", -1e6, 1e6)
    reward_revenue: float = knob(0.0, "reward per unit of revenue (price of purchases)", -1e6, 1e6)

    # --- sessions, return and churn ----------------------------------------------------------------
    satisfaction_rate: float = knob(0.2, "EMA rate of satisfaction toward the quality of clicked items", 0.0, 1.0)
    gap_mean_days: float = knob(4.0, "mean of the exponential part of the gap between sessions, at zero "
                                "satisfaction", 0.001, 365.0)
    gap_min_days: float = knob(0.5, "shortest gap between sessions, however satisfied the user", 0.0, 365.0)
    gap_satisfaction: float = knob(1.0, "a satisfied user returns sooner: gap *= exp(-this * satisfaction)",
                                   0.0, 20.0)
    churn_bias: float = knob(-4.0, "logit of churning at the end of a session, at zero satisfaction", -30.0, 30.0)
    churn_satisfaction: float = knob(2.0, "churn logit decrease per unit satisfaction", 0.0, 30.0)
    request_minutes: float = knob(1.0, "simulated time one request takes, in minutes", 0.0, 1440.0)

    # --- organic behaviour --------------------------------------------------------------------------
    search_prob: float = knob(0.3, "probability of an organic search before a request", 0.0, 1.0)
    view_prob: float = knob(0.7, "probability that a search leads to viewing an item", 0.0, 1.0)
    search_temperature: float = knob(0.5, "softmax temperature of the searched category over interest", 0.01, 100.0)

    # --- drift processes (strength 0 = off) ------------------------------------------------------
    drift_gradual: float = knob(0.0, "OU volatility of current interest around base (per sqrt day)", 0.0, 10.0)
    gradual_reversion: float = knob(0.1, "OU mean-reversion rate per day", 0.0001, 100.0)
    drift_migration: float = knob(0.0, "hazard per day of the base interest jumping to another segment's",
                                  0.0, 10.0)
    drift_seasonal: float = knob(0.0, "utility boost of categories during calendar events", 0.0, 20.0)
    events_visible: bool = knob(True, "calendar events appear in the observation")
    promo_rate: float = knob(0.1, "multi-day promotions starting per day", 0.0, 10.0)
    promo_days: float = knob(3.0, "mean promotion length in whole days (the calendar has daily resolution)",
                             1.0, 365.0)
    drift_bubble: float = knob(0.0, "turn of the interest's direction toward a clicked item's topic (its length "
                               "is kept)", 0.0, 1.0)
    bubble_reversion: float = knob(0.0, "rate per day at which current interest reverts toward base, on its own "
                                   "(undoes the bubble)", 0.0, 100.0)
    drift_fatigue: float = knob(0.0, "boredom (utility) added to a category per impression", 0.0, 20.0)
    fatigue_half_life_days: float = knob(0.05, "half-life of boredom, in days", 0.0001, 365.0)

    # --- satiation ---------------------------------------------------------------------------------
    satiation_purchase: float = knob(4.0, "utility a user loses for an item they buy (satiety, decays)", 0.0, 50.0)
    satiation_click: float = knob(0.5, "utility a user loses for an item they click (satiety, decays)", 0.0, 50.0)
    satiation_half_life_days: float = knob(14.0, "half-life of satiety, in days", 0.001, 3650.0)

    # --- recsim-ie -------------------------------------------------------------------------------------
    recsim_budget: float = knob(200.0, "recsim-ie: initial time budget in minutes", 1.0, 1e6)

    def refuse_unread(self, reads: frozenset[str]) -> None:
        """Raise ConfigError naming the first key set away from its default that the user model
        (``self.model``), which reads only the keys ``reads``, would silently ignore."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in reads and value != f.default:
                raise ConfigError(f"config key '{f.name}' is not read by model '{self.model}' (set to {value!r}, "
                                  f"default {f.default!r}); remove it or choose another model")


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (an empty file is an empty mapping). Every problem is
    one ConfigError: "<what> '<path>' does not exist | is a folder, not a YAML file | is not valid
    YAML (line N) | must hold a mapping"."""
    import yaml  # PyYAML: only the config readers need it

    where = f"{what} '{path}'"
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{where} is a folder, not a YAML file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(f"{where} is not valid YAML" + (f" (line {mark.line + 1})" if mark else "")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------------- field types
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The field types of config class ``cls`` (annotations evaluated once)."""
    return get_type_hints(cls)


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _union(kind: Any) -> tuple[Any, bool] | None:
    """(the type, whether None is allowed) of a union annotation, ``X | None`` or ``Path | str`` (a
    path, given as text or not); None when ``kind`` is no union."""
    if typing.get_origin(kind) not in (typing.Union, types.UnionType):
        return None
    args = typing.get_args(kind)
    rest = [arg for arg in args if arg is not type(None)]
    paths = [arg for arg in rest if _is_path(arg)]
    if len(rest) == 1:
        return rest[0], len(rest) < len(args)
    if paths and all(arg is str or _is_path(arg) for arg in rest):
        return paths[0], len(rest) + 1 == len(args)
    raise TypeError(f"config fields of type {kind} are not supported")


def _is_config(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, Config)


def _is_mapping(kind: Any) -> bool:
    return (typing.get_origin(kind) or kind) in (dict, Mapping)


def _is_path(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, PurePath)


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` laid over ``base``, mappings in both merging key by key (at any depth)."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = _merge(out[key], value) if both else value
    return out


def _plain(value: Any) -> Any:
    """``value`` as YAML-safe plain data."""
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def _allowed(kind: Any, meta: Mapping[str, Any]) -> str:
    """What ``describe`` says a field accepts."""
    union = _union(kind)
    if union is not None:
        return _allowed(union[0], meta) + " | null" * union[1]
    if typing.get_origin(kind) is tuple:
        return f"list of {_allowed(typing.get_args(kind)[0], meta)}"
    if meta.get("choices"):
        return " | ".join(meta["choices"])
    if kind is bool:
        return "true | false"
    if kind in (int, float):
        lo, hi = meta.get("lo"), meta.get("hi")
        return _range(lo, hi) or ("integer" if kind is int else "number")
    return "path" if _is_path(kind) else "mapping" if _is_mapping(kind) else "text" if kind is str else "any"


def _range(lo: float | None, hi: float | None) -> str:
    """'[lo, hi]', '>= lo', '<= hi' or '' (unbounded)."""
    if lo is not None and hi is not None:
        return f"[{lo:g}, {hi:g}]"
    return f">= {lo:g}" if lo is not None else f"<= {hi:g}" if hi is not None else ""


def _check(subject: str, value: Any, kind: Any, meta: Mapping[str, Any]) -> Any:
    """``value`` coerced to the field type ``kind`` and checked against its knob ``meta``;
    ConfigError ("<subject> must be ...") otherwise."""
    if meta.get("parse") is not None:
        return meta["parse"](value)
    union = _union(kind)
    if union is not None:
        core, optional = union
        return None if optional and value is None else _check(subject, value, core, meta)
    if kind is Any:
        return value
    if typing.get_origin(kind) is tuple:
        return _check_items(subject, value, typing.get_args(kind)[0], meta)
    if _is_mapping(kind):
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{subject} must be a mapping, got {value!r}")
        return dict(value)
    if _is_path(kind):
        if isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip()):
            return kind(value)
        raise ConfigError(f"{subject} must be a path, got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{subject} must be true or false, got {value!r}")
    if kind is str:
        if meta.get("choices"):
            if not isinstance(value, str) or value not in meta["choices"]:
                raise ConfigError(f"{subject} must be one of {', '.join(meta['choices'])}; got {value!r}")
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # --set preset=2024: YAML read a number
        if not isinstance(value, str):
            raise ConfigError(f"{subject} must be text, got {value!r}")
        return value
    if kind in (int, float):
        return _check_number(subject, value, kind, meta)
    raise TypeError(f"{subject}: config fields of type {kind} are not supported")


def _check_number(subject: str, value: Any, kind: type, meta: Mapping[str, Any]) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            number: float = int(value)
        else:
            number = float(value)
            if math.isnan(number):
                raise ValueError
    except (TypeError, ValueError, OverflowError):
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{subject} must be {what}, got {value!r}") from None
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and number < lo) or (hi is not None and number > hi):
        raise ConfigError(f"{subject} must be {'in ' if lo is not None and hi is not None else ''}"
                          f"{_range(lo, hi)}, got {value!r}")
    return number


def _check_items(subject: str, value: Any, item: Any, meta: Mapping[str, Any]) -> tuple[Any, ...]:
    """A tuple field: a list (or a comma-separated string) of items, each checked as ``item``."""
    if isinstance(value, str):
        value = [part for part in (p.strip() for p in value.split(",")) if part]
    noun = "name" if item is str else "value"
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{subject} must be a list of {noun}s, got {value!r}")
    items = tuple(_check(subject, v, item, meta) for v in value)
    if meta.get("distinct") and (not items or len(set(items)) != len(items)):
        raise ConfigError(f"{subject} must list at least one {noun}, each once; got {list(items)}")
    return items
