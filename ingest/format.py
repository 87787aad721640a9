"""The shape of a raw log and :class:`LogFormat`, which maps a shop's columns and values onto it.

A shop's log is a CSV or Parquet file with one interaction per row:

| column | required | meaning |
|---|---|---|
| user_id | yes | any string or integer id |
| item_id | yes | any string or integer id; may be empty for a search |
| timestamp | yes | ISO 8601 text (``2024-05-01T12:30:00Z``, ``2024-05-01 12:30``), a number of |
|  |  | ``timestamp_unit`` since 1970-01-01 UTC, or a Parquet timestamp; text without a zone is UTC |
| behaviour | yes | a name (see :data:`DEFAULT_BEHAVIOURS`) or, with ``rating_threshold``, a rating |
| price | no | a non-negative number; empty is unknown |
| category | no | any string or integer id; empty is unknown |
| session_id | no | any id; without it sessions are cut at gaps over ``session_gap_minutes`` |
| position | no | slate position of an impression (0-based); empty is -1 |

:class:`LogFormat` renames columns and maps behaviour values (a YAML file holds one).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from driftrec.envs.config import Config, ConfigError, knob, read_yaml_mapping
from driftrec.envs.state import BEHAVIOURS

LOG_COLUMNS = ("user_id", "item_id", "timestamp", "behaviour", "price", "category", "session_id", "position")
"""The driftrec names of a raw log's columns (the first four are required)."""

REQUIRED_COLUMNS = LOG_COLUMNS[:4]

DROP = "drop"
"""A behaviour mapping's value that ignores the rows (counted in ``LoadReport.dropped``)."""

DEFAULT_BEHAVIOURS: dict[str, str] = {
    **{name: name for name in BEHAVIOURS},
    "pv": "view", "pageview": "view", "page_view": "view", "detail": "view", "view_item": "view",
    "impressions": "impression", "exposure": "impression", "show": "impression",
    "clicks": "click",
    "addtocart": "cart", "add_to_cart": "cart", "add-to-cart": "cart", "add to cart": "cart", "basket": "cart",
    "transaction": "purchase", "buy": "purchase", "order": "purchase", "purchased": "purchase", "sale": "purchase",
    "query": "search",
}
"""Behaviour values understood without a mapping (matched after trimming and lower-casing):
the six driftrec names and common aliases (RetailRocket's addtocart/transaction, Taobao's pv/buy)."""

TIMESTAMP_UNITS = ("s", "ms", "us", "ns")
TIMESTAMP_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
"""The units of numeric timestamps (``timestamp_unit``), and their names in messages."""


# ------------------------------------------------------------------ checks of the keys knobs can't express
def _norm_value(value: Any) -> str:
    return str(value).strip().lower()


def _check_columns(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"log format key 'columns' must map driftrec columns to file columns, got {value!r}")
    out: dict[str, str] = {}
    for name, column in value.items():
        if name not in LOG_COLUMNS:
            raise ConfigError(f"log format key 'columns.{name}': '{name}' is not a driftrec column; "
                              f"expected one of {', '.join(LOG_COLUMNS)}")
        if isinstance(column, bool) or not isinstance(column, (str, int)) or not str(column).strip():
            raise ConfigError(f"log format key 'columns.{name}' must be a column name, got {column!r}")
        out[str(name)] = str(column)
    seen: dict[str, str] = {}
    for name, column in out.items():
        if column in seen:
            raise ConfigError(f"log format key 'columns.{name}': column '{column}' is already columns.{seen[column]}")
        seen[column] = name
    return out


def _check_behaviours(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"log format key 'behaviours' must map log values to behaviours, got {value!r}")
    out: dict[str, str] = {}
    allowed = (*BEHAVIOURS, DROP)
    for raw, target in value.items():
        key = _norm_value(raw)
        if not key or raw is None:
            raise ConfigError(f"log format key 'behaviours' has an empty value {raw!r}")
        if not isinstance(target, str) or target.strip().lower() not in allowed:
            raise ConfigError(f"log format key 'behaviours.{raw}' must be one of {', '.join(allowed)}; got {target!r}")
        out[key] = target.strip().lower()
    return out


def _check_drop(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, (str, int, float)) else value
    if not isinstance(items, (list, tuple)) or any(item is None or not _norm_value(item) for item in items):
        raise ConfigError(f"log format key 'drop' must be a list of behaviour values, got {value!r}")
    return tuple(_norm_value(item) for item in items)


def _check_threshold(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"log format key 'rating_threshold' must be a number or null, got {value!r}") from None
    if not np.isfinite(number):
        raise ConfigError(f"log format key 'rating_threshold' must be finite, got {value!r}")
    return number


def _check_time_format(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or "%" not in value:
        raise ConfigError(f"log format key 'timestamp_format' must be a strptime format such as "
                          f"'%d/%m/%Y %H:%M', got {value!r}")
    return value


def _check_delimiter(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 1 or value in "\r\n\"":
        raise ConfigError(f"log format key 'delimiter' must be one character (not a quote or newline), got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class LogFormat(Config):
    """How a raw log's columns and values map onto the event schema.

    ``LogFormat.from_dict`` (and ``from_yaml``) validate every key, as every config does, and raise
    a one-line :class:`ConfigError` naming it. ``columns`` and ``behaviours`` are tables: a mapping
    given whole replaces the base's, and a dotted key sets one entry over it (the part after the
    first dot is the entry, dots and all): ``{"columns.user_id": "visitorid", "behaviours.wishlist": "cart"}``.
    """

    label = "log format"
    unknown_hint = "; see `driftrec load --help`"

    columns: Mapping[str, str] = knob(
        {}, "driftrec column -> the file's column name, for the columns named otherwise in the file",
        merge=False, parse=_check_columns)
    behaviours: Mapping[str, str] = knob(
        {}, "behaviour value -> driftrec behaviour or 'drop', on top of the defaults (values match trimmed, "
            "case-insensitively)", merge=False, parse=_check_behaviours)
    drop: tuple[str, ...] = knob((), "behaviour values whose rows are ignored", parse=_check_drop)
    rating_threshold: float | None = knob(
        None, "the behaviour column holds numbers (ratings): >= this -> rating_above, else rating_below; None: it "
              "holds behaviour names", parse=_check_threshold)
    rating_above: str = knob("purchase", "behaviour of a rating >= rating_threshold", choices=BEHAVIOURS)
    rating_below: str = knob("view", "behaviour of a rating < rating_threshold, or 'drop'",
                             choices=(*BEHAVIOURS, DROP))
    timestamp_unit: str = knob("s", "unit of numeric timestamps (since 1970-01-01 UTC)", choices=TIMESTAMP_UNITS)
    timestamp_format: str | None = knob(
        None, "strptime format of text timestamps (e.g. '%d/%m/%Y %H:%M'); None: ISO 8601",
        parse=_check_time_format)
    session_gap_minutes: float = knob(30.0, "a gap longer than this starts a new session (without a "
                                            "session_id column)", 0.0, 1e9)
    delimiter: str = knob(",", "CSV field separator (one character)", parse=_check_delimiter)

    @classmethod
    def subject(cls, key: str) -> str:
        """How a message names ``key``: "log format key 'x'"."""
        return f"log format key '{key}'"

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> LogFormat:
        """The format in a YAML file (a mapping of this class's keys)."""
        return cls.from_dict(read_yaml_mapping(path, "log format"))

    def column(self, name: str) -> str:
        """The file's column that holds driftrec column ``name``."""
        return self.columns.get(name, name)

    def behaviour_map(self) -> dict[str, str]:
        """Every understood behaviour value (normalised) -> driftrec behaviour or 'drop'."""
        mapping = dict(DEFAULT_BEHAVIOURS)
        mapping.update(self.behaviours)
        mapping.update({value: DROP for value in self.drop})
        return mapping
