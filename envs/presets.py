"""Named, versioned presets: a paragraph of description and the knobs they set on SimConfig.

Besides the built-in :data:`PRESETS`, a preset can be a YAML file (``driftrec calibrate`` writes
one), accepted wherever a preset name is (``preset_config``, ``driftrec simulate --preset``,
``compare``'s ``presets``)::

    name: my-shop            # required: how tables and run folders name it
    version: 1
    summary: one line
    description: a paragraph
    base: default            # the built-in preset it starts from (default: default)
    overrides: {n_items: 800, no_click_utility: 2.1}   # SimConfig keys over the base
    source: {...}            # optional, free-form: where it came from (calibrate: the log)
    created: 2026-05-01      # optional
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from driftrec.envs.config import ConfigError, SimConfig, read_yaml_mapping


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named, versioned set of SimConfig overrides with a paragraph of description."""

    name: str
    version: int
    summary: str
    description: str
    overrides: Mapping[str, Any]  # over SimConfig's defaults (a file preset: its base's, then its own)
    base: str | None = None  # a file preset: the built-in preset it starts from
    path: str | None = None  # a file preset: the YAML file it was read from


LONG_TERM_OFF: dict[str, Any] = {
    "patience_quality": 0.0, "gap_satisfaction": 0.0, "churn_satisfaction": 0.0,
    "satiation_purchase": 0.0, "satiation_click": 0.0,
}
"""Overrides under which nothing a recommendation does outlives its request (the ``bandit`` preset)."""

PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("bandit", 1, "the control: no long-term effects, no drift (the myopic optimum is the optimum)",
           "Quality, satisfaction and satiety change nothing that lasts: patience, return gaps and churn "
           "do not depend on what was shown, no item sates, and no interest drifts. Every request is an "
           "independent contextual bandit round, so oracle-greedy (the best expected immediate reward) is "
           "the optimal policy and planning cannot help. It exists so that a comparison can show nothing is "
           "rigged: an RL agent that beats the best supervised recommender here beyond noise wins by "
           "something other than long-term reasoning.",
           LONG_TERM_OFF),
    Preset("stationary", 2, "no drift: interests never move",
           "Every drift process is off: users keep the interest they are born with, there are no "
           "calendar events, no filter bubble and no boredom. Sessions, churn, satiety and organic search "
           "still work, so what is shown now still matters later (the long-term effects that bandit "
           "removes). The control condition for drift: any method that needs drift to shine should not "
           "win here.",
           {}),
    Preset("gradual", 2, "interests wander slowly (Ornstein-Uhlenbeck)",
           "Current interest follows a mean-reverting random walk around each user's base "
           "interest (volatility 0.3 per sqrt(day), reversion 0.1 per day, so the walk forgets in "
           "about 10 days). A recommender must keep re-estimating what a user wants; organic "
           "searches reveal where the interest has moved.",
           {"drift_gradual": 0.3, "gradual_reversion": 0.1}),
    Preset("migration", 2, "life events: interests jump to another segment's",
           "With a hazard of 0.04 per day (about one jump per user over the 30-day horizon) a "
           "user's base and current interest move to another segment's, keeping their personal "
           "offset. Abrupt, rare, user-specific shifts that a model trained on old logs misses.",
           {"drift_migration": 0.04}),
    Preset("seasonal", 2, "weekends, promotions and holidays boost categories for everyone",
           "A calendar of weekends, multi-day promotions and holidays adds up to 2 logits of "
           "utility to some categories for every user in the window. The events are visible in the "
           "observation, so a policy can learn to follow the calendar.",
           {"drift_seasonal": 1.5, "promo_rate": 0.15}),
    Preset("bubble", 2, "consumption focuses interest on what was clicked (filter bubble)",
           "Each click turns the direction of the user's interest 30% of the way toward the clicked item's "
           "topic, keeping its strength, and interest reverts toward the user's base at 0.1 per day. What a "
           "recommender shows shapes what the user will want: a feedback loop that offline training on "
           "logs cannot see.",
           {"drift_bubble": 0.3, "bubble_reversion": 0.1}),
    Preset("clickbait", 2, "appealing items are often bad; long-term reward needs quality",
           "Appeal and quality are strongly anti-correlated (-0.7): the clickiest items disappoint. "
           "Bad clicks shorten sessions, lower satisfaction, lengthen return gaps and raise churn, "
           "and quality drives purchases. A click-chasing policy gets a high CTR and loses "
           "long-term reward to one that weighs quality.",
           {"appeal_quality_corr": -0.7, "appeal_scale": 1.5, "patience_quality": 3.0,
            "churn_satisfaction": 3.0, "reward_purchase": 5.0}),
    Preset("default", 2, "a realistic mix of every drift: the headline benchmark",
           "Gradual wandering, rare life-event migrations, a visible calendar of events, a mild "
           "filter bubble that fades, per-category boredom and satiety with what was bought, on a catalog "
           "where appeal and quality are mildly anti-correlated. Clicks are worth 1 and purchases 5, so a "
           "policy that weighs quality (longer sessions, fewer churns, more purchases) beats one that "
           "chases clicks.",
           {"drift_gradual": 0.15, "gradual_reversion": 0.1, "drift_migration": 0.02,
            "drift_seasonal": 1.0, "drift_bubble": 0.1, "bubble_reversion": 0.1, "drift_fatigue": 0.3,
            "appeal_quality_corr": -0.3, "patience_quality": 2.5, "churn_satisfaction": 2.5}),
    Preset("recsim-ie", 2, "Google RecSim's interest-evolution user model in driftrec's API",
           "20 topics; user interest uniform in [-1, 1]^20, observable; 10 distinct candidate documents per "
           "request from a fixed corpus of 1000 (RecSim creates fresh ones), slates of 2; click probability "
           "(u_c + 1) / (sum + 2); a click nudges the interest in the clicked topic; a time budget of 200 "
           "minutes: a click costs its watch time w minus 0.9/3.4 * w * quality, a step without a click 0.5 "
           "minutes; reward is watch time (Ie et al., 'RecSim', 2019).",
           {"model": "recsim-ie", "action_mode": "candidates", "slate_size": 2, "n_candidates": 10,
            "n_categories": 20, "topic_dim": 20, "n_items": 1000}),
]}


PRESET_FILE_KEYS = ("name", "version", "summary", "description", "base", "overrides", "source", "created")
"""Top-level keys of a preset YAML file."""


def is_preset_path(preset: str) -> bool:
    """Whether ``preset`` names a preset file rather than a built-in preset (it is not a built-in
    name and ends in .yaml/.yml, contains a path separator, or is an existing file)."""
    text = str(preset)
    if text in PRESETS:
        return False
    return text.endswith((".yaml", ".yml")) or "/" in text or os.sep in text or Path(text).is_file()


def load_preset_file(path: str | os.PathLike[str]) -> Preset:
    """The preset in the YAML file ``path`` (format in the module doc).

    Every problem is one ConfigError naming the file: missing, not YAML, an unknown top-level key,
    a missing name, an unknown base preset, or a bad SimConfig key or value in ``overrides``.
    """
    where = f"preset file '{path}'"
    data = read_yaml_mapping(path, "preset file")
    for key in data:
        if key not in PRESET_FILE_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}'; expected {', '.join(PRESET_FILE_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name or name in PRESETS:
        raise ConfigError(f"{where}: 'name' must be a non-empty name without '/' that is not a built-in "
                          f"preset, got {name!r}")
    base = data.get("base", "default")
    if base not in PRESETS:
        raise ConfigError(f"{where}: unknown base preset {base!r}; choose one of: {', '.join(PRESETS)}")
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"{where}: 'version' must be a positive integer, got {version!r}")
    own = data.get("overrides") or {}
    if not isinstance(own, Mapping):
        raise ConfigError(f"{where}: 'overrides' must be a mapping of SimConfig keys, got {own!r}")
    overrides = {**PRESETS[base].overrides, **own}
    try:
        SimConfig.from_dict(overrides)
    except ConfigError as err:
        raise ConfigError(f"{where}: overrides: {err}") from None
    for key in ("summary", "description"):
        if not isinstance(data.get(key, ""), str):
            raise ConfigError(f"{where}: '{key}' must be text, got {data[key]!r}")
    return Preset(name, version, data.get("summary", ""), data.get("description", ""), overrides,
                  base=base, path=str(path))


def resolve_preset(preset: str) -> Preset:
    """The :class:`Preset` of a built-in name or of a preset YAML file path (ConfigError otherwise)."""
    if preset in PRESETS:
        return PRESETS[preset]
    if is_preset_path(preset):
        return load_preset_file(preset)
    raise ConfigError(f"unknown preset '{preset}'; choose one of: {', '.join(PRESETS)}, or a preset YAML file")


def preset_config(preset: str = "default", overrides: Mapping[str, Any] | None = None) -> SimConfig:
    """SimConfig of a named preset (or a preset YAML file's path) with ``overrides`` on top; unknown
    names, bad files or bad keys raise ConfigError."""
    cfg = SimConfig.from_dict(resolve_preset(preset).overrides)
    return SimConfig.from_dict(overrides or {}, base=cfg)
