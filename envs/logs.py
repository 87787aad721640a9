"""Load real interaction logs into the event log schema (issue 6, "Bring your own logs").

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

:class:`LogFormat` renames columns and maps behaviour values (a YAML file holds one);
:func:`load_log` streams the file in chunks of ``chunk_rows`` rows, each parsed with vectorised
pyarrow / numpy calls (no per-row Python), factorises ids to dense ints in order of first
appearance, and sorts once by (user, timestamp), stably. A driftrec event log (``driftrec simulate``
or ``driftrec load`` output) is recognised and loaded as is.

Rows are numbered like a spreadsheet without its header: **data row 1 is the first row after the
header** (line 2 of a CSV file, row 0 of a Parquet file). Every error is one line naming the file,
the data row, the column and the value; ``skip_bad_rows=True`` skips bad rows instead and counts
them per reason in :class:`LoadReport`.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import gzip
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from driftrec.envs.config import ConfigError, SimConfig, knob, read_yaml_mapping, replace_checked
from driftrec.envs.events import EVENT_SCHEMA, LOG_CONFIG_KEY, EventLogError, EventWriter, load_events
from driftrec.envs.state import BEHAVIOURS, CART, CLICK, IMPRESSION, PURCHASE, SEARCH

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
_MS_PER_UNIT = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
_UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
_FALLBACK_TIME_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d")  # unambiguous; tried after ISO 8601
_CODE = {name: i + 1 for i, name in enumerate(BEHAVIOURS)}  # behaviour name -> code (envs/state.py)
_DROP_CODE, _UNKNOWN_CODE = 0, -1
_MISSING_TEXT = ("", "nan", "na", "n/a", "null", "none")  # an empty price, category or position
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_MAX_EXAMPLES = 10
_REASON_COLUMN = {  # why a row is bad -> the driftrec column at fault, in the order rows are judged
    "empty user_id": "user_id", "empty item_id": "item_id", "bad timestamp": "timestamp",
    "unknown behaviour": "behaviour", "bad rating": "behaviour", "negative price": "price",
    "non-numeric price": "price", "empty session_id": "session_id", "bad position": "position"}
DEFAULT_CHUNK_ROWS = 1_000_000


class LogLoadError(ConfigError):
    """A log cannot be loaded: a one-line message naming the file, and for a bad row its data row,
    column and value (``row``, 1-based, header excluded; None for file-level problems).

    A :class:`ConfigError` (so a ValueError): every CLI command that loads a log prints it as a
    one-line usage error without catching it.
    """

    def __init__(self, message: str, row: int | None = None):
        super().__init__(message)
        self.row = row


# ------------------------------------------------------------------------------------- format
def _mapping_knob(doc: str) -> Any:
    return dataclasses.field(default_factory=dict, metadata={"doc": doc, "lo": None, "hi": None, "choices": None})


@dataclasses.dataclass(frozen=True)
class LogFormat:
    """How a raw log's columns and values map onto the event schema.

    ``LogFormat.from_dict`` (and ``from_yaml``) validate every key, as ``SimConfig.from_dict`` does,
    and raise a one-line :class:`ConfigError` naming it. Dotted keys set one entry of a mapping:
    ``{"columns.user_id": "visitorid", "behaviours.wishlist": "cart"}``.
    """

    columns: Mapping[str, str] = _mapping_knob(
        "driftrec column -> the file's column name, for the columns named otherwise in the file")
    behaviours: Mapping[str, str] = _mapping_knob(
        "behaviour value -> driftrec behaviour or 'drop', on top of the defaults (values match trimmed, "
        "case-insensitively)")
    drop: tuple[str, ...] = dataclasses.field(
        default=(), metadata={"doc": "behaviour values whose rows are ignored", "lo": None, "hi": None,
                              "choices": None})
    rating_threshold: float | None = dataclasses.field(
        default=None, metadata={"doc": "the behaviour column holds numbers (ratings): >= this -> rating_above, "
                                       "else rating_below; None: it holds behaviour names",
                                "lo": None, "hi": None, "choices": None})
    rating_above: str = knob("purchase", "behaviour of a rating >= rating_threshold", choices=BEHAVIOURS)
    rating_below: str = knob("view", "behaviour of a rating < rating_threshold, or 'drop'",
                             choices=(*BEHAVIOURS, DROP))
    timestamp_unit: str = knob("s", "unit of numeric timestamps (since 1970-01-01 UTC)", choices=TIMESTAMP_UNITS)
    timestamp_format: str | None = dataclasses.field(
        default=None, metadata={"doc": "strptime format of text timestamps (e.g. '%d/%m/%Y %H:%M'); None: ISO 8601",
                                "lo": None, "hi": None, "choices": None})
    session_gap_minutes: float = knob(30.0, "a gap longer than this starts a new session (without a "
                                            "session_id column)", 0.0, 1e9)
    delimiter: str = dataclasses.field(
        default=",", metadata={"doc": "CSV field separator (one character)", "lo": None, "hi": None, "choices": None})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: LogFormat | None = None) -> LogFormat:
        """A format from ``values`` on top of ``base`` (defaults if None), validating every key."""
        base = base if base is not None else cls()
        if not isinstance(values, Mapping):
            raise ConfigError(f"a log format must be a mapping, got {type(values).__name__}")
        special: dict[str, Any] = {}
        plain: dict[str, Any] = {}
        # whole mappings first, so that dotted keys add to them whatever their order
        for key in sorted(values, key=lambda k: "." in str(k)):
            value = values[key]
            head, dot, sub = str(key).partition(".")
            if dot:
                if head not in ("columns", "behaviours"):
                    close = difflib.get_close_matches(head, ("columns", "behaviours"), n=1)
                    hint = (f"did you mean '{close[0]}.{sub}'?" if close
                            else "only columns.X and behaviours.X take a dot")
                    raise ConfigError(f"unknown log format key '{key}'; {hint}")
                merged = dict(special.get(head, getattr(base, head)))
                merged[sub] = value
                special[head] = _SPECIAL_CHECKS[head](merged)
            elif key in _SPECIAL_CHECKS:
                special[key] = _SPECIAL_CHECKS[key](value)
            else:
                plain[key] = value
        fmt = replace_checked(base, plain, label="log format", unknown_hint="; see `driftrec load --help`")
        return dataclasses.replace(fmt, **special)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> LogFormat:
        """The format in a YAML file (a mapping of this class's keys)."""
        return cls.from_dict(read_yaml_mapping(path, "log format"))

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping of every key (YAML-safe)."""
        out = dataclasses.asdict(self)
        out["columns"], out["behaviours"], out["drop"] = dict(self.columns), dict(self.behaviours), list(self.drop)
        return out

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(key, default, doc) of every key, for docs and help."""
        return [(f.name, repr(f.default) if f.default is not dataclasses.MISSING else "{}", f.metadata["doc"])
                for f in dataclasses.fields(cls)]

    def column(self, name: str) -> str:
        """The file's column that holds driftrec column ``name``."""
        return self.columns.get(name, name)

    def behaviour_map(self) -> dict[str, str]:
        """Every understood behaviour value (normalised) -> driftrec behaviour or 'drop'."""
        mapping = dict(DEFAULT_BEHAVIOURS)
        mapping.update(self.behaviours)
        mapping.update({value: DROP for value in self.drop})
        return mapping


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


_SPECIAL_CHECKS: dict[str, Callable[[Any], Any]] = {
    "columns": _check_columns, "behaviours": _check_behaviours, "drop": _check_drop,
    "rating_threshold": _check_threshold, "timestamp_format": _check_time_format, "delimiter": _check_delimiter,
}
"""Format keys whose values need more than :func:`replace_checked`'s scalar checks: key -> checker."""


# ------------------------------------------------------------------------------------- results
@dataclasses.dataclass
class LoadReport:
    """What :func:`load_log` did: rows read, kept, skipped per reason, dropped per value, timing."""

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

    ``events`` has exactly :data:`EVENT_SCHEMA`'s columns (the dtypes ``load_events`` gives), sorted
    stably by (user_id, timestamp); ``items`` is indexed by the dense item id.
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


# ------------------------------------------------------------------------------------- load
def load_log(path: str | os.PathLike[str], fmt: LogFormat | None = None, skip_bad_rows: bool = False,
             chunk_rows: int = DEFAULT_CHUNK_ROWS,
             progress: Callable[[int, float | None], None] | None = None) -> LoadedLog:
    """Load a CSV or Parquet log (or a driftrec event log) into the event schema.

    ``fmt`` maps the file's columns and values (default :class:`LogFormat`); ``skip_bad_rows``
    skips rows with an empty id, an unparseable timestamp, an unknown behaviour, a bad rating,
    price or position, or a malformed CSV line, counting them in ``report.skipped``; otherwise the
    first such row raises :class:`LogLoadError`. ``chunk_rows`` bounds the rows parsed at once
    (memory, not results: any chunk size gives the same log). ``progress(rows_read, fraction)`` is
    called after each chunk (fraction None when unknown).
    """
    start = time.perf_counter()
    fmt = fmt if fmt is not None else LogFormat()
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    path = Path(path)
    if not path.exists():
        raise LogLoadError(f"log file '{path}' does not exist")
    if path.is_dir():
        raise LogLoadError(f"log file '{path}' is a folder, not a CSV or Parquet file")
    if _is_parquet(path):
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as err:
            raise LogLoadError(f"log file '{path}': not a readable Parquet file ({_one_line(err)})") from None
        if all(name in schema.names for name in EVENT_SCHEMA.names):
            return _load_event_log(path, schema, start)
        source: _Source = _ParquetSource(path, schema, chunk_rows)
    else:
        source = _CsvSource(path, fmt, chunk_rows)
    return _Loader(path, fmt, source, skip_bad_rows, progress).run(start)


def items_path(events_path: str | os.PathLike[str]) -> Path:
    """The items sidecar of an events file: ``events.parquet`` -> ``events.items.parquet``."""
    path = Path(events_path)
    stem = path.name[:-len(".parquet")] if path.name.endswith(".parquet") else path.name
    return path.with_name(f"{stem}.items.parquet")


def write_loaded(loaded: LoadedLog, path: str | os.PathLike[str], batch_rows: int = 1_000_000) -> tuple[Path, Path]:
    """Write ``loaded``'s events to ``path`` (Parquet, :data:`EVENT_SCHEMA`, with the SimConfig of a
    simulated log in its metadata) and its items table to :func:`items_path` next to it.

    Both files appear only when both are complete (``EventWriter`` plus a temporary items file):
    an error leaves neither half-written. Returns (events path, items path).
    """
    path = Path(path)
    side = items_path(path)
    items = pa.Table.from_pandas(loaded.items.reset_index(), preserve_index=False)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{side.name}.", suffix=".tmp", dir=side.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        pq.write_table(items, tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        with EventWriter(path, loaded.sim_config) as writer:
            events = loaded.events
            for lo in range(0, len(events), batch_rows):
                writer.write(pa.Table.from_pandas(events.iloc[lo:lo + batch_rows], schema=EVENT_SCHEMA,
                                                  preserve_index=False))
            if not len(events):
                writer.write(EVENT_SCHEMA.empty_table())
        os.replace(tmp, side)
    finally:
        tmp.unlink(missing_ok=True)
    return path, side


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------------------------- sources
class _Source:
    """Yields record batches of at most ``chunk_rows`` rows, named by the file's columns."""

    columns: list[str]  # the file's column names
    total_rows: int | None = None

    def batches(self, wanted: list[str]) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def fraction(self) -> float | None:
        return None

    def bad_lines(self) -> list[tuple[str, str]]:
        """(text, what is wrong) of the malformed CSV lines met since the last call."""
        return []


class _ParquetSource(_Source):
    def __init__(self, path: Path, schema: pa.Schema, chunk_rows: int):
        self.path, self.chunk_rows = path, chunk_rows
        self.columns = list(schema.names)
        self._file = pq.ParquetFile(path)
        self.total_rows = self._file.metadata.num_rows
        self._done = 0

    def batches(self, wanted: list[str]) -> Iterator[pa.RecordBatch]:
        for batch in self._file.iter_batches(batch_size=self.chunk_rows, columns=wanted):
            self._done += batch.num_rows
            yield batch

    def fraction(self) -> float | None:
        return self._done / self.total_rows if self.total_rows else None


class _CsvSource(_Source):
    def __init__(self, path: Path, fmt: LogFormat, chunk_rows: int):
        self.path, self.fmt, self.chunk_rows = path, fmt, chunk_rows
        self._gzip = path.suffix == ".gz"
        opener = gzip.open if self._gzip else open
        try:
            with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:  # type: ignore[operator]
                header = next(csv.reader(handle, delimiter=fmt.delimiter), None)
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise LogLoadError(f"log file '{path}': cannot read the CSV header ({_one_line(err)})") from None
        if not header:
            raise LogLoadError(f"log file '{path}' is empty (no header row)")
        self.columns = list(header)
        self._raw: pa.NativeFile | None = None
        self._size = max(path.stat().st_size, 1)
        self._bad: list[tuple[str, str]] = []

    def _on_invalid(self, row: Any) -> str:
        # pyarrow calls this for a line with the wrong number of fields; its row number is unknown
        # while streaming, so the line is remembered, skipped, and located later by the loader
        self._bad.append((str(row.text), f"expected {row.expected_columns} fields, got {row.actual_columns}"))
        return "skip"

    def batches(self, wanted: list[str]) -> Iterator[pa.RecordBatch]:
        block = int(min(max(self.chunk_rows * 64, 1 << 20), 64 << 20))
        self._raw = pa.OSFile(str(self.path))
        stream: pa.NativeFile = pa.CompressedInputStream(self._raw, "gzip") if self._gzip else self._raw
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=block, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter=self.fmt.delimiter, invalid_row_handler=self._on_invalid),
            # every column as text: the loader parses (and reports) values itself, and type
            # inference on the first block would break on a later block's odd value
            convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in wanted},
                                                 include_columns=wanted, strings_can_be_null=False,
                                                 quoted_strings_can_be_null=False))
        try:
            for batch in reader:
                for lo in range(0, batch.num_rows, self.chunk_rows):
                    yield batch.slice(lo, self.chunk_rows)
        finally:
            reader.close()
            self._raw.close()

    def fraction(self) -> float | None:
        if self._raw is None or self._raw.closed:
            return None
        return min(self._raw.tell() / self._size, 1.0)

    def bad_lines(self) -> list[tuple[str, str]]:
        out, self._bad = self._bad, []
        return out

    def line_numbers(self, texts: set[str]) -> dict[str, list[int]]:
        """The 1-based numbers of the lines equal to each of ``texts`` (malformed rows), by one pass."""
        wanted = {text.rstrip("\r\n") for text in texts}
        found: dict[str, list[int]] = {}
        opener = gzip.open if self._gzip else open
        with opener(self.path, "rt", newline="", encoding="utf-8-sig", errors="replace") as handle:  # type: ignore[operator]
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if line in wanted:
                    found.setdefault(line, []).append(number)
        return found


def _is_parquet(path: Path) -> bool:
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    if path.suffix.lower() in (".csv", ".tsv", ".txt", ".gz"):
        return False
    with open(path, "rb") as handle:
        return handle.read(4) == b"PAR1"


# ------------------------------------------------------------------------------------- parsing
class _Factorizer:
    """Dense codes 0..n-1 for ids in order of first appearance, across chunks.

    Each chunk is dictionary-encoded by pyarrow (vectorised); only its distinct values meet the
    Python dict, so the cost is per distinct id per chunk, not per row.
    """

    def __init__(self) -> None:
        self.codes: dict[Any, int] = {}

    def __call__(self, values: pa.Array) -> np.ndarray:
        if len(values) == 0:
            return np.zeros(0, dtype=np.int64)
        encoded = pc.dictionary_encode(values)
        distinct = encoded.dictionary.to_pylist()
        table = self.codes
        lookup = np.fromiter((table.setdefault(v, len(table)) for v in distinct), dtype=np.int64,
                             count=len(distinct))
        return lookup[encoded.indices.to_numpy(zero_copy_only=False)]

    def originals(self) -> list[str]:
        return [str(v) for v in self.codes]


def _text(values: pa.Array) -> pa.Array:
    """Trimmed text of any array; null -> ''."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        values = pc.cast(values, pa.string())
    return pc.utf8_trim_whitespace(pc.fill_null(values, ""))


def _ids(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(ids ready to factorise, missing mask): integers stay integers, anything else is trimmed text."""
    if pa.types.is_integer(values.type):
        return values, values.is_null().to_numpy(zero_copy_only=False)
    text = _text(values)
    return text, pc.equal(text, "").to_numpy(zero_copy_only=False)


def _numbers(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float64 values with NaN where missing or bad, missing mask, not-a-number mask)."""
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_decimal(values.type):
        out = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        missing = np.isnan(out)
        return out, missing, np.zeros(len(out), dtype=bool)
    text = _text(values)
    missing = pc.is_in(pc.utf8_lower(text), value_set=pa.array(_MISSING_TEXT)).to_numpy(zero_copy_only=False)
    ok = pc.match_substring_regex(text, _NUMBER).to_numpy(zero_copy_only=False)
    out = pc.cast(pc.if_else(pa.array(ok), text, "0"), pa.float64()).to_numpy(zero_copy_only=False).copy()
    out[~ok] = np.nan
    return out, missing & ~ok, ~ok & ~missing


def _timestamps(values: pa.Array, fmt: LogFormat) -> tuple[np.ndarray, np.ndarray]:
    """(int64 milliseconds since 1970 UTC, bad mask)."""
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        ms = pc.cast(pc.cast(values, pa.timestamp("ms", tz=getattr(kind, "tz", None)), safe=False), pa.int64())
        bad = ms.is_null().to_numpy(zero_copy_only=False)
        return np.nan_to_num(ms.to_numpy(zero_copy_only=False).astype(np.float64)).astype(np.int64), bad
    if pa.types.is_integer(kind) and fmt.timestamp_unit in ("s", "ms"):
        # exact integer arithmetic (float64 would round nanosecond counts)
        raw = pc.cast(pc.fill_null(values, 0), pa.int64()).to_numpy(zero_copy_only=False)
        bad = values.is_null().to_numpy(zero_copy_only=False)
        return raw * (1000 if fmt.timestamp_unit == "s" else 1), bad
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        number, missing, _ = _numbers(values)
        return _number_ms(number, fmt.timestamp_unit), missing
    text = _text(values)
    number, _, not_number = _numbers(text)
    ms = _number_ms(number, fmt.timestamp_unit)
    bad = np.isnan(number) & ~not_number  # empty text
    dated = np.flatnonzero(not_number)
    if dated.size:
        strings = text.take(pa.array(dated)).to_numpy(zero_copy_only=False)
        parsed = _parse_dates(strings, fmt.timestamp_format)
        ms[dated] = np.where(np.isnat(parsed), 0, parsed.astype("datetime64[ms]").astype(np.int64))
        bad[dated] = np.isnat(parsed)
    return ms, bad


def _number_ms(number: np.ndarray, unit: str) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        ms = np.rint(number * _MS_PER_UNIT[unit])
    ms[~np.isfinite(ms)] = 0
    return ms.astype(np.int64)


def _parse_dates(strings: np.ndarray, time_format: str | None) -> np.ndarray:
    """Text -> datetime64[ms] UTC (NaT where unparseable). Text without a zone is UTC."""
    formats = (time_format,) if time_format else ("ISO8601", *_FALLBACK_TIME_FORMATS)
    out = np.full(strings.size, np.datetime64("NaT"), dtype="datetime64[ms]")
    todo = np.arange(strings.size)
    for form in formats:
        parsed = pd.to_datetime(pd.Series(strings[todo], dtype=object), format=form, utc=True, errors="coerce")
        values = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ms]")
        ok = ~np.isnat(values)
        out[todo[ok]] = values[ok]
        todo = todo[~ok]
        if not todo.size:
            break
    return out


@dataclasses.dataclass
class _Parsed:
    """One chunk's parsed columns (all rows) and the mask of each reason a row is bad."""

    n: int
    user: pa.Array
    item: pa.Array
    item_missing: np.ndarray
    ms: np.ndarray
    code: np.ndarray  # int8: behaviour code, 0 dropped, -1 unknown
    norm: pa.Array | None  # normalised behaviour text (names mode), for the dropped counts
    price: np.ndarray
    category: pa.Array | None
    category_missing: np.ndarray
    session: pa.Array | None
    position: np.ndarray | None
    bad: dict[str, np.ndarray]  # reason -> mask, in the order rows are judged


class _Loader:
    """Streams a source chunk by chunk into compact numpy columns, then sorts once."""

    def __init__(self, path: Path, fmt: LogFormat, source: _Source, skip: bool,
                 progress: Callable[[int, float | None], None] | None):
        self.path, self.fmt, self.source, self.skip, self.progress = path, fmt, source, skip, progress
        self.report = LoadReport()
        # a file column mapped to one driftrec column is not also read as the column of its own name
        claimed = {column: name for name, column in fmt.columns.items()}
        self.present = [name for name in LOG_COLUMNS if fmt.column(name) in source.columns
                        and claimed.get(fmt.column(name), name) == name]
        for name in REQUIRED_COLUMNS:
            if name not in self.present:
                column = fmt.column(name)
                how = (f"columns.{name} names it" if column != name else
                       f"it is columns.{claimed[column]}; set columns.{name}=NAME" if column in claimed else
                       f"set columns.{name}=NAME in the format if it is named otherwise")
                raise LogLoadError(f"log file '{path}': missing column '{column}' ({how}); the file has "
                                   f"columns: {', '.join(source.columns)}")
        self.users, self.items, self.cats, self.sessions = _Factorizer(), _Factorizer(), _Factorizer(), _Factorizer()
        self.item_category = np.full(0, -1, dtype=np.int64)
        self.chunks: dict[str, list[np.ndarray]] = {}
        self._examples: list[tuple[int, str, str]] = []  # (data row counted without malformed lines, reason, value)
        self._bad_lines: list[tuple[str, str]] = []  # malformed CSV lines skipped: (text, what is wrong)
        mapping = fmt.behaviour_map()
        self._keys = pa.array(list(mapping), type=pa.string())
        self._key_codes = np.array([_DROP_CODE if v == DROP else _CODE[v] for v in mapping.values()], dtype=np.int8)

    # -- one chunk ------------------------------------------------------------------------------
    def parse(self, batch: pa.RecordBatch) -> _Parsed:
        fmt, n = self.fmt, batch.num_rows

        def col(name: str) -> pa.Array:
            return batch.column(fmt.column(name))

        user, user_missing = _ids(col("user_id"))
        item, item_missing = _ids(col("item_id"))
        ms, bad_time = _timestamps(col("timestamp"), fmt)
        norm: pa.Array | None = None
        bad_rating = np.zeros(n, dtype=bool)
        if fmt.rating_threshold is None:
            norm = pc.utf8_lower(_text(col("behaviour")))
            index = pc.index_in(norm, value_set=self._keys)
            idx = pc.fill_null(index, -1).to_numpy(zero_copy_only=False)
            code = np.where(idx >= 0, self._key_codes[np.maximum(idx, 0)], _UNKNOWN_CODE).astype(np.int8)
        else:
            rating, rating_missing, rating_bad = _numbers(col("behaviour"))
            bad_rating = rating_missing | rating_bad
            below = _DROP_CODE if fmt.rating_below == DROP else _CODE[fmt.rating_below]
            with np.errstate(invalid="ignore"):
                code = np.where(rating >= fmt.rating_threshold, _CODE[fmt.rating_above], below).astype(np.int8)
        price = np.full(n, np.nan)
        negative = non_numeric = np.zeros(n, dtype=bool)
        if "price" in self.present:
            price, _, non_numeric = _numbers(col("price"))
            with np.errstate(invalid="ignore"):
                negative = price < 0
        category = None
        category_missing = np.ones(n, dtype=bool)
        if "category" in self.present:
            category, category_missing = _ids(col("category"))
        session, session_missing = None, np.zeros(n, dtype=bool)
        if "session_id" in self.present:
            session, session_missing = _ids(col("session_id"))
        position = None
        bad_position = np.zeros(n, dtype=bool)
        if "position" in self.present:
            number, missing, not_number = _numbers(col("position"))
            with np.errstate(invalid="ignore"):
                bad_position = not_number | (~missing & ((number < 0) | (number > 32767) | (number % 1 != 0)))
            position = np.where(missing | bad_position, -1, np.nan_to_num(number)).astype(np.int16)
        bad = {
            "empty user_id": user_missing,
            "empty item_id": item_missing & (code != SEARCH),
            "bad timestamp": bad_time,
            "unknown behaviour": code == _UNKNOWN_CODE,
            "bad rating": bad_rating,
            "negative price": negative,
            "non-numeric price": non_numeric,
            "empty session_id": session_missing,
            "bad position": bad_position,
        }
        return _Parsed(n, user, item, item_missing, ms, code, norm, price, category, category_missing, session,
                       position, bad)

    def shown(self, batch: pa.RecordBatch, j: int, reason: str) -> str:
        """The value that makes row ``j`` of ``batch`` bad for ``reason``, as shown in messages."""
        value = batch.column(self.fmt.column(_REASON_COLUMN[reason]))[j].as_py()
        return repr(value if not isinstance(value, str) or len(value) <= 60 else value[:57] + "...")

    def message(self, row: int, reason: str, shown: str) -> str:
        """The one-line message of data row ``row``, bad for ``reason`` with value ``shown``."""
        fmt = self.fmt
        name = _REASON_COLUMN[reason]
        column = fmt.column(name)
        where = f"log file '{self.path}', data row {row}, column '{column}'"
        if reason.startswith("empty"):
            return f"{where}: empty {name}"
        if reason == "bad timestamp":
            expected = (f"text in the format {fmt.timestamp_format!r}" if fmt.timestamp_format else
                        "ISO 8601 text such as 2024-05-01T12:30:00Z (or set timestamp_format)")
            return (f"{where}: unparseable timestamp {shown}; expected {expected} or a number of "
                    f"{_UNIT_NAMES[fmt.timestamp_unit]} since 1970")
        if reason == "unknown behaviour":
            return (f"{where}: unknown behaviour {shown}; map it with behaviours.VALUE=BEHAVIOUR "
                    f"(one of {', '.join(BEHAVIOURS)}) or list it in drop")
        if reason == "bad rating":
            return f"{where}: rating {shown} is not a number (rating_threshold is set)"
        if reason == "negative price":
            return f"{where}: negative price {shown}"
        if reason == "non-numeric price":
            return f"{where}: price {shown} is not a number"
        return f"{where}: position {shown} is not an integer in [0, 32767]"

    def add(self, batch: pa.RecordBatch, offset: int) -> None:
        """Parse, check and keep one chunk whose first row is data row ``offset + 1``."""
        p = self.parse(batch)
        reason = np.full(p.n, -1, dtype=np.int8)  # first reason a row is bad (-1: good)
        names = list(p.bad)
        for r, name in reversed(list(enumerate(names))):
            reason[p.bad[name]] = r
        bad_rows = np.flatnonzero(reason >= 0)
        if bad_rows.size:
            j = int(bad_rows[0])
            if not self.skip:
                row = offset + j + 1
                raise LogLoadError(self.message(row, names[reason[j]], self.shown(batch, j, names[reason[j]])),
                                   row=row)
            counts = np.bincount(reason[bad_rows], minlength=len(names))
            for r, count in enumerate(counts):
                if count:
                    self.report.skipped[names[r]] = self.report.skipped.get(names[r], 0) + int(count)
            for j in bad_rows[:_MAX_EXAMPLES - len(self._examples)]:
                name = names[reason[j]]
                self._examples.append((offset + int(j) + 1, name, self.shown(batch, int(j), name)))
        good = reason < 0
        dropped = good & (p.code == _DROP_CODE)
        if dropped.any():
            if p.norm is not None:
                values = pc.value_counts(p.norm.filter(pa.array(dropped)))
                pairs = zip(values.field("values").to_pylist(), values.field("counts").to_pylist(), strict=True)
            else:
                pairs = iter([(f"rating < {self.fmt.rating_threshold:g}", int(dropped.sum()))])
            for value, count in pairs:
                self.report.dropped[value] = self.report.dropped.get(value, 0) + int(count)
        keep = good & (p.code != _DROP_CODE)
        self._append(p, keep)

    def _append(self, p: _Parsed, keep: np.ndarray) -> None:
        mask = pa.array(keep)
        code = p.code[keep]
        user = self.users(p.user.filter(mask)).astype(np.int32)
        has_item = keep & ~p.item_missing  # only a search may have no item
        item = np.full(int(keep.sum()), -1, dtype=np.int32)
        item[has_item[keep]] = self.items(p.item.filter(pa.array(has_item)))
        category = np.full(item.size, -1, dtype=np.int32)
        if p.category is not None:
            known = keep & ~p.category_missing
            category[known[keep]] = self.cats(p.category.filter(pa.array(known)))
        self._assign_categories(item, category)
        cols = {"user": user, "item": item, "ms": p.ms[keep], "code": code, "price": p.price[keep],
                "category": category}
        if p.session is not None:
            cols["session"] = self.sessions(p.session.filter(mask)).astype(np.int64)
        if p.position is not None:
            cols["position"] = p.position[keep]
        for name, values in cols.items():
            self.chunks.setdefault(name, []).append(values)

    def _assign_categories(self, item: np.ndarray, category: np.ndarray) -> None:
        """An item's category is the first non-empty one the log gives it (file order)."""
        n_items = len(self.items.codes)
        if self.item_category.size < n_items:
            grown = np.full(max(n_items, 2 * self.item_category.size), -1, dtype=np.int64)
            grown[:self.item_category.size] = self.item_category
            self.item_category = grown
        rows = np.flatnonzero((item >= 0) & (category >= 0))
        if not rows.size:
            return
        first_items, first = np.unique(item[rows], return_index=True)
        unset = self.item_category[first_items] < 0
        self.item_category[first_items[unset]] = category[rows[first[unset]]]

    def run(self, start: float) -> LoadedLog:
        wanted = [self.fmt.column(name) for name in self.present]
        offset = 0
        csv_source = self.source if isinstance(self.source, _CsvSource) else None
        try:
            for batch in self.source.batches(wanted):
                self._malformed(csv_source, offset)
                malformed = self._first_malformed(csv_source)
                try:
                    self.add(batch, offset)
                except LogLoadError as err:
                    # rows counted before the first malformed line are true rows: the earlier error wins
                    if malformed is not None and (err.row is None or err.row >= malformed.row):  # type: ignore[operator]
                        raise malformed from None
                    raise
                offset += batch.num_rows
                if malformed is not None and offset >= malformed.row - 1:  # type: ignore[operator]
                    raise malformed
                if self.progress is not None:
                    self.progress(offset, self.source.fraction())
        except pa.ArrowException as err:
            raise LogLoadError(f"log file '{self.path}': cannot read ({_one_line(err)})") from None
        except OSError as err:
            raise LogLoadError(f"log file '{self.path}': cannot read ({err.strerror or _one_line(err)})") from None
        self._malformed(csv_source, offset)
        if (malformed := self._first_malformed(csv_source)) is not None:
            raise malformed
        self.report.rows_read = offset + len(self._bad_lines)
        self.report.first_errors = self._first_errors(csv_source)
        return self.finish(start)

    def _malformed(self, source: _CsvSource | None, offset: int) -> None:
        """Count the malformed CSV lines the reader skipped."""
        if source is None:
            return
        for text, what in source.bad_lines():
            self.report.skipped["malformed row"] = self.report.skipped.get("malformed row", 0) + 1
            self._bad_lines.append((text, what))

    def _first_malformed(self, source: _CsvSource | None) -> LogLoadError | None:
        """Without skip_bad_rows: the error of the first malformed CSV line met so far (None if none)."""
        if self.skip or source is None or not self._bad_lines:
            return None
        whats = dict(self._bad_lines)
        lines = source.line_numbers(set(whats))
        if not lines:  # e.g. a line with quoted newlines: its text is not one line of the file
            text, what = self._bad_lines[0]
            return LogLoadError(f"log file '{self.path}': malformed CSV row {text[:60]!r} ({what})", row=None)
        line, text = min((min(numbers), text) for text, numbers in lines.items())
        return LogLoadError(f"log file '{self.path}', data row {line - 1} (line {line}): malformed CSV row "
                            f"{text[:60]!r} ({whats[text]})", row=line - 1)

    def _first_errors(self, source: _CsvSource | None) -> list[str]:
        """The messages of the first skipped rows, in file order.

        The reader drops a malformed CSV line before the loader sees it, so the rows after it were
        counted without it: when there are any, one pass over the file finds their lines (this
        path costs only when a log has malformed lines) and shifts the later rows' numbers.
        """
        examples = [(row, self.message(row, reason, shown)) for row, reason, shown in self._examples]
        if source is not None and self._bad_lines:
            lines = source.line_numbers({text for text, _ in self._bad_lines})
            malformed = sorted(line - 1 for numbers in lines.values() for line in numbers)
            shifted = []
            for row, _ in examples:
                for bad in malformed:  # the true row: each malformed row at or before it pushes it on
                    if bad <= row:
                        row += 1
                shifted.append(row)
            examples = [(true, message.replace(f"data row {row},", f"data row {true},", 1))
                        for true, (row, message) in zip(shifted, examples, strict=True)]
            whats = dict(self._bad_lines)
            for text, numbers in lines.items():
                for line in numbers[:_MAX_EXAMPLES]:
                    examples.append((line - 1, f"log file '{self.path}', data row {line - 1} (line {line}): "
                                               f"malformed CSV row {text[:60]!r} ({whats[text]})"))
        return [message for _, message in sorted(examples, key=lambda e: e[0])[:_MAX_EXAMPLES]]

    # -- the whole log ----------------------------------------------------------------------------
    def finish(self, start: float) -> LoadedLog:
        cols = {name: np.concatenate(parts) for name, parts in self.chunks.items()}
        self.chunks.clear()
        n = len(cols["user"]) if cols else 0
        if not n:
            raise LogLoadError(f"log file '{self.path}' has no events to keep "
                               f"({self.report.rows_read} rows read)")
        order = np.lexsort((cols["ms"], cols["user"]))  # stable: file order breaks ties
        for name in list(cols):
            cols[name] = cols[name][order]
        del order
        user, item, code = cols["user"], cols["item"], cols["code"]

        # categories: an item's first category; rows without one (and items never given one) get
        # an extra "unknown" category, so every code indexes `categories`
        categories = self.cats.originals()
        n_items = len(self.items.codes)
        item_category = self.item_category[:n_items].copy()
        if "category" not in self.present:
            categories = ["0"]
            item_category[:] = 0
            row_category = np.zeros(n, dtype=np.int32)
        else:
            row_category = cols["category"]
            if (item_category < 0).any() or (row_category[item < 0] < 0).any():
                categories.append("")
                item_category[item_category < 0] = len(categories) - 1
                row_category = np.where(row_category < 0, len(categories) - 1, row_category)
            row_category = np.where(item >= 0, item_category[np.maximum(item, 0)], row_category).astype(np.int32)

        price = cols["price"]
        known = np.isfinite(price) & (item >= 0)
        item_price = (pd.Series(price[known]).groupby(item[known]).median()
                      .reindex(range(n_items)).to_numpy(dtype=np.float64))
        fill = ~np.isfinite(price) & (item >= 0)
        price[fill] = item_price[item[fill]]  # a row without a price gets its item's median price

        if "session" in cols:
            session = _sessions_from_ids(user, cols["session"])
        else:
            session = _sessions_from_gaps(user, cols["ms"], self.fmt.session_gap_minutes * 60_000.0)

        weights = SimConfig()
        reward = np.zeros(n)
        reward[code == CLICK] = weights.reward_click
        reward[code == CART] = weights.reward_cart
        buy = code == PURCHASE
        reward[buy] = weights.reward_purchase + weights.reward_revenue * np.nan_to_num(price[buy])
        position = cols.get("position", np.full(n, -1, dtype=np.int16))

        table = pa.Table.from_arrays([
            pa.array(user.astype(np.int64)),
            pa.array(session),
            pa.array(cols["ms"]).cast(pa.timestamp("ms")),
            pa.array(item.astype(np.int64)),
            pa.array(row_category),
            pa.array(position),
            pa.array(BEHAVIOURS, type=pa.string()).take(pa.array(code - 1)),
            pa.array(price),
            pa.array(reward),
            pa.array(np.full(n, np.nan)),
        ], schema=EVENT_SCHEMA)
        counts = np.bincount(code, minlength=len(BEHAVIOURS) + 1)
        cols.clear()
        del user, item, code, price, session, reward, position, row_category
        events = table.to_pandas(split_blocks=True, self_destruct=True)
        del table

        items = pd.DataFrame({"original": pd.array(self.items.originals(), dtype=str),
                              "category": item_category.astype(np.int32), "price": item_price},
                             index=pd.RangeIndex(n_items, name="item_id"))
        report = self.report
        report.rows_kept = n
        report.behaviours = {name: int(counts[i + 1]) for i, name in enumerate(BEHAVIOURS) if counts[i + 1]}
        report.seconds = time.perf_counter() - start
        return LoadedLog(events=events, items=items, n_items=n_items, n_categories=len(categories),
                         n_users=len(self.users.codes), has_impressions=bool(counts[IMPRESSION]),
                         sim_config=None, report=report, categories=categories,
                         users=pd.Index(self.users.originals(), dtype=str, name="user_id"))


def _user_starts(user: np.ndarray) -> np.ndarray:
    """Mask of each user's first row (``user`` sorted)."""
    start = np.ones(user.size, dtype=bool)
    start[1:] = user[1:] != user[:-1]
    return start


def _sessions_from_gaps(user: np.ndarray, ms: np.ndarray, gap_ms: float) -> np.ndarray:
    """Session index within each user: a new session at the user's first event and after a gap > gap_ms."""
    start = _user_starts(user)
    new = start.copy()
    new[1:] |= np.diff(ms) > gap_ms
    count = np.cumsum(new)
    return (count - np.maximum.accumulate(np.where(start, count, 0))).astype(np.int64)


def _sessions_from_ids(user: np.ndarray, session: np.ndarray) -> np.ndarray:
    """Session index within each user, numbering the user's session ids in order of first event."""
    pair = user.astype(np.int64) * (int(session.max()) + 1) + session
    _, first, inverse = np.unique(pair, return_index=True, return_inverse=True)
    is_first = np.zeros(user.size, dtype=bool)
    is_first[first] = True
    count = np.cumsum(is_first)
    start = _user_starts(user)
    index = count - np.maximum.accumulate(np.where(start, count, 0))  # at a first row: the session's index
    return index[first][inverse].astype(np.int64)


# ------------------------------------------------------------------------------------- event logs
def _load_event_log(path: Path, schema: pa.Schema, start: float) -> LoadedLog:
    """A driftrec event log, loaded as is (ids kept); items from its SimConfig's catalog, its items
    sidecar (``driftrec load`` output) or else the log itself."""
    try:
        events = load_events(path)
    except EventLogError as err:
        raise LogLoadError(str(err)) from None
    events = events[list(EVENT_SCHEMA.names)]
    meta = schema.metadata or {}
    cfg = None
    if LOG_CONFIG_KEY in meta:
        try:
            cfg = SimConfig.from_dict(json.loads(meta[LOG_CONFIG_KEY]))
        except (ValueError, ConfigError) as err:
            raise LogLoadError(f"log file '{path}': bad simulator config in its metadata ({_one_line(err)})") from None
    item = events["item_id"].to_numpy(np.int64)
    side = items_path(path)
    if cfg is not None:
        if cfg.model == "recsim-ie":
            from driftrec.envs.recsim_ie import build_recsim_world as build
        else:
            from driftrec.envs.world import build_world as build
        world = build(cfg)
        n_items, n_categories = cfg.n_items, cfg.n_categories
        items = pd.DataFrame({"original": pd.array([str(i) for i in range(n_items)], dtype=str),
                              "category": np.asarray(world.category, dtype=np.int32),
                              "price": np.asarray(world.price, dtype=np.float64)},
                             index=pd.RangeIndex(n_items, name="item_id"))
    elif side.is_file():
        try:
            items = pd.read_parquet(side).set_index("item_id")
        except (OSError, KeyError, pa.ArrowException) as err:
            raise LogLoadError(f"items file '{side}': not a driftrec items table ({_one_line(err)})") from None
        items["original"] = items["original"].astype(str)
        n_items = len(items)
        n_categories = int(max(items["category"].max(), events["category"].max(), -1)) + 1
    else:
        n_items = int(item.max()) + 1 if item.size and item.max() >= 0 else 0
        known = item >= 0
        cat = np.zeros(n_items, dtype=np.int32)
        seen, first = np.unique(item[known], return_index=True)
        cat[seen] = events["category"].to_numpy()[known][first]
        price = events["price"].to_numpy()
        ok = known & np.isfinite(price)
        med = pd.Series(price[ok]).groupby(item[ok]).median().reindex(range(n_items)).to_numpy(np.float64)
        items = pd.DataFrame({"original": pd.array([str(i) for i in range(n_items)], dtype=str),
                              "category": cat, "price": med}, index=pd.RangeIndex(n_items, name="item_id"))
        n_categories = int(max(events["category"].max(), 0)) + 1 if len(events) else 1
    behaviour = events["behaviour"].value_counts()
    report = LoadReport(rows_read=len(events), rows_kept=len(events),
                        behaviours={name: int(behaviour.get(name, 0)) for name in BEHAVIOURS if behaviour.get(name, 0)},
                        seconds=time.perf_counter() - start)
    return LoadedLog(events=events, items=items, n_items=n_items, n_categories=n_categories,
                     n_users=int(events["user_id"].nunique()), has_impressions=bool(behaviour.get("impression", 0)),
                     sim_config=cfg, report=report, categories=[str(c) for c in range(n_categories)], users=None)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())

