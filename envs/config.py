"""Typed, validated simulator configuration.

Every knob of ShopSim is one flat field of :class:`SimConfig`, with a one-line doc string and
an allowed range kept in the field's metadata. ``SimConfig.from_dict`` is the only way a user's
mapping (a preset, YAML, ``gym.make`` keyword overrides, CLI ``--set``) becomes a config, so every
mistake is caught in one place and reported as one :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_type_hints


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type, or out of range.

    The message is one line that names the key and what is allowed; the CLI prints it as is.
    """


def knob(default: Any, doc: str, lo: float | None = None, hi: float | None = None,
         choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field carrying its doc string and allowed range (inclusive bounds)."""
    return dataclasses.field(default=default,
                             metadata={"doc": doc, "lo": lo, "hi": hi, "choices": choices})


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """All ShopSim knobs. Units: time in days, utilities in logits."""

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

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: SimConfig | None = None) -> SimConfig:
        """Build a config from ``values`` on top of ``base`` (defaults if None), validating each key."""
        return replace_checked(base if base is not None else cls(), values,
                               unknown_hint="; see `driftrec presets --keys`")

    def refuse_unread(self, reads: frozenset[str]) -> None:
        """Raise ConfigError naming the first key set away from its default that the user model
        (``self.model``), which reads only the keys ``reads``, would silently ignore."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in reads and value != f.default:
                raise ConfigError(f"config key '{f.name}' is not read by model '{self.model}' (set to {value!r}, "
                                  f"default {f.default!r}); remove it or choose another model")

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of every field (YAML-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """(key, default, allowed, doc) for every knob, for docs and ``driftrec presets --keys``."""
        rows = []
        for f in dataclasses.fields(cls):
            rows.append((f.name, repr(f.default), _allowed(f.metadata), f.metadata["doc"]))
        return rows


def replace_checked(config: Any, values: Mapping[str, Any], *, label: str = "config",
                    unknown_hint: str = "") -> Any:
    """``dataclasses.replace(config, **values)`` for a dataclass of :func:`knob` fields, with each
    value coerced to its field's type and checked against its range or choices.

    An unknown key raises :class:`ConfigError` naming it and the closest known key (else
    ``unknown_hint``); ``label`` names the kind of key in that message ("unknown LABEL key ...").
    """
    fields = {f.name: f for f in dataclasses.fields(config)}
    hints = get_type_hints(type(config))
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else unknown_hint
            raise ConfigError(f"unknown {label} key '{key}'{hint}")
        clean[key] = _check(key, value, hints[key], fields[key].metadata)
    return dataclasses.replace(config, **clean)


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


def _allowed(meta: Mapping[str, Any]) -> str:
    if meta.get("choices"):
        return " | ".join(meta["choices"])
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is None and hi is None:
        return "true | false"
    return f"[{lo:g}, {hi:g}]"


def _check(key: str, value: Any, kind: Any, meta: Mapping[str, Any]) -> Any:
    """Coerce ``value`` to the field's type and check its range; raise ConfigError otherwise."""
    if kind in (bool, "bool"):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
    if kind in (str, "str"):
        if not isinstance(value, str) or value not in meta["choices"]:
            raise ConfigError(f"config key '{key}' must be one of {', '.join(meta['choices'])}; got {value!r}")
        return value
    try:
        if kind in (int, "int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number: float = int(value)
        else:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
    except (TypeError, ValueError):
        what = "an integer" if kind in (int, "int") else "a number"
        raise ConfigError(f"config key '{key}' must be {what}, got {value!r}") from None
    lo, hi = meta["lo"], meta["hi"]
    if not (lo <= number <= hi):  # also rejects NaN
        raise ConfigError(f"config key '{key}' must be in [{lo:g}, {hi:g}], got {value!r}")
    return number
