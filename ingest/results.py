"""What a load gives back: a :class:`LoadedLog` with its :class:`LoadReport`, or a one-line
:class:`LogLoadError`."""

from __future__ import annotations

import dataclasses

import pandas as pd

from driftrec.envs.config import ConfigError, SimConfig


class LogLoadError(ConfigError):
    """A log cannot be loaded: a one-line message naming the file, and for a bad row its data row,
    column and value (``row``, 1-based, header excluded; None for file-level problems).

    A :class:`ConfigError` (so a ValueError): every CLI command that loads a log prints it as a
    one-line usage error without catching it.
    """

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row


@dataclasses.dataclass
class LoadReport:
    """What :func:`~driftrec.ingest.load.load_log` did: rows read, kept, skipped per reason, dropped
    per value, timing."""

    rows_read: int = 0  # data rows in the file
    rows_kept: int = 0  # rows that became events
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> bad rows skipped
    first_errors: list[str] = dataclasses.field(default_factory=list)  # the first few skipped rows' messages
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)  # behaviour value -> rows ignored (drop)
    behaviours: dict[str, int] = dataclasses.field(default_factory=dict)  # behaviour -> events kept
    seconds: float = 0.0  # wall time of the load

    @property
    def rows_skipped(self) -> int:
        """Bad rows skipped (``skip_bad_rows=True``)."""
        return sum(self.skipped.values())

    @property
    def rows_dropped(self) -> int:
        """Rows ignored on purpose (their behaviour maps to 'drop')."""
        return sum(self.dropped.values())


@dataclasses.dataclass
class LoadedLog:
    """A log in driftrec's event schema.

    ``events`` has exactly :data:`~driftrec.envs.events.EVENT_SCHEMA`'s columns (the dtypes
    ``load_events`` gives), sorted stably by (user_id, timestamp); ``items`` is indexed by the dense
    item id.
    """

    events: pd.DataFrame
    items: pd.DataFrame  # index item_id 0..n_items-1; original (str), category (int32), price (float64)
    n_items: int
    n_categories: int
    n_users: int
    has_impressions: bool  # the log has impression rows (click AUC / CTR are measurable)
    sim_config: SimConfig | None  # set for a driftrec-simulated log: item ids are its catalog's
    report: LoadReport
    categories: list[str] = dataclasses.field(default_factory=list)  # category code -> original name
    users: pd.Index | None = None  # dense user id -> original id (str); None for a driftrec event log


def one_line(err: BaseException) -> str:
    """An exception's message on one line (a library's multi-line message inside a LogLoadError)."""
    return " ".join(str(err).split())
