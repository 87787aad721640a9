"""The loader: streams a :class:`~driftrec.ingest.sources.Source` chunk by chunk, judges every row
(the first reason it is bad, in a fixed order), factorises ids to dense ints in order of first
appearance, keeps compact numpy columns, and at the end sorts once by (user, timestamp), stably,
and builds the event table: categories, median prices, sessions and the default rewards.

Rows are numbered like a spreadsheet without its header: **data row 1 is the first row after the
header** (line 2 of a CSV file, row 0 of a Parquet file). Every error is one line naming the file,
the data row, the column and the value; with ``skip`` bad rows are skipped instead and counted
per reason in the :class:`~driftrec.ingest.results.LoadReport`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from driftrec.envs.config import SimConfig
from driftrec.envs.events import EVENT_SCHEMA
from driftrec.envs.state import BEHAVIOURS, CART, CLICK, IMPRESSION, PURCHASE, SEARCH
from driftrec.ingest.format import DROP, LOG_COLUMNS, REQUIRED_COLUMNS, TIMESTAMP_UNIT_NAMES, LogFormat
from driftrec.ingest.parse import Factorizer, as_text, parse_ids, parse_numbers, parse_timestamps
from driftrec.ingest.results import LoadedLog, LoadReport, LogLoadError, one_line
from driftrec.ingest.sources import CsvSource, Source

_CODE = {name: i + 1 for i, name in enumerate(BEHAVIOURS)}  # behaviour name -> code (envs/state.py)
_DROP_CODE, _UNKNOWN_CODE = 0, -1
_MAX_EXAMPLES = 10
_REASON_COLUMN = {  # why a row is bad -> the driftrec column at fault, in the order rows are judged
    "empty user_id": "user_id", "empty item_id": "item_id", "bad timestamp": "timestamp",
    "unknown behaviour": "behaviour", "bad rating": "behaviour", "negative price": "price",
    "non-numeric price": "price", "empty session_id": "session_id", "bad position": "position"}


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


class Loader:
    """Streams a source chunk by chunk into compact numpy columns, then sorts once.

    ``source`` reads the file at ``path`` (named in messages); a required column missing from it
    raises :class:`LogLoadError` here. ``skip`` skips bad rows (counted in the report) instead of
    raising on the first; ``progress(rows_read, fraction)`` is called after each chunk.
    """

    def __init__(self, path: Path, fmt: LogFormat, source: Source, skip: bool,
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
        self.users, self.items, self.cats, self.sessions = Factorizer(), Factorizer(), Factorizer(), Factorizer()
        self.item_category = np.full(0, -1, dtype=np.int64)
        self.chunks: dict[str, list[np.ndarray]] = {}
        self._examples: list[tuple[int, str, str]] = []  # (data row counted without malformed lines, reason, value)
        self._bad_lines: list[tuple[str, str]] = []  # malformed CSV lines skipped: (text, what is wrong)
        mapping = fmt.behaviour_map()
        self._keys = pa.array(list(mapping), type=pa.string())
        self._key_codes = np.array([_DROP_CODE if v == DROP else _CODE[v] for v in mapping.values()], dtype=np.int8)

    # -- one chunk ------------------------------------------------------------------------------
    def parse(self, batch: pa.RecordBatch) -> _Parsed:
        """One chunk's columns parsed, with the mask of each reason a row is bad."""
        fmt, n = self.fmt, batch.num_rows

        def col(name: str) -> pa.Array:
            return batch.column(fmt.column(name))

        user, user_missing = parse_ids(col("user_id"))
        item, item_missing = parse_ids(col("item_id"))
        ms, bad_time = parse_timestamps(col("timestamp"), fmt)
        norm: pa.Array | None = None
        bad_rating = np.zeros(n, dtype=bool)
        if fmt.rating_threshold is None:
            norm = pc.utf8_lower(as_text(col("behaviour")))
            index = pc.index_in(norm, value_set=self._keys)
            idx = pc.fill_null(index, -1).to_numpy(zero_copy_only=False)
            code = np.where(idx >= 0, self._key_codes[np.maximum(idx, 0)], _UNKNOWN_CODE).astype(np.int8)
        else:
            rating, rating_missing, rating_bad = parse_numbers(col("behaviour"))
            bad_rating = rating_missing | rating_bad
            below = _DROP_CODE if fmt.rating_below == DROP else _CODE[fmt.rating_below]
            with np.errstate(invalid="ignore"):
                code = np.where(rating >= fmt.rating_threshold, _CODE[fmt.rating_above], below).astype(np.int8)
        price = np.full(n, np.nan)
        negative = non_numeric = np.zeros(n, dtype=bool)
        if "price" in self.present:
            price, _, non_numeric = parse_numbers(col("price"))
            with np.errstate(invalid="ignore"):
                negative = price < 0
        category = None
        category_missing = np.ones(n, dtype=bool)
        if "category" in self.present:
            category, category_missing = parse_ids(col("category"))
        session, session_missing = None, np.zeros(n, dtype=bool)
        if "session_id" in self.present:
            session, session_missing = parse_ids(col("session_id"))
        position = None
        bad_position = np.zeros(n, dtype=bool)
        if "position" in self.present:
            number, missing, not_number = parse_numbers(col("position"))
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
                    f"{TIMESTAMP_UNIT_NAMES[fmt.timestamp_unit]} since 1970")
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
        """Load the whole source (``start``: ``time.perf_counter()`` when the load began, for the report)."""
        wanted = [self.fmt.column(name) for name in self.present]
        offset = 0
        csv_source = self.source if isinstance(self.source, CsvSource) else None
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
            raise LogLoadError(f"log file '{self.path}': cannot read ({one_line(err)})") from None
        except OSError as err:
            raise LogLoadError(f"log file '{self.path}': cannot read ({err.strerror or one_line(err)})") from None
        self._malformed(csv_source, offset)
        if (malformed := self._first_malformed(csv_source)) is not None:
            raise malformed
        self.report.rows_read = offset + len(self._bad_lines)
        self.report.first_errors = self._first_errors(csv_source)
        return self.finish(start)

    def _malformed(self, source: CsvSource | None, offset: int) -> None:
        """Count the malformed CSV lines the reader skipped."""
        if source is None:
            return
        for text, what in source.bad_lines():
            self.report.skipped["malformed row"] = self.report.skipped.get("malformed row", 0) + 1
            self._bad_lines.append((text, what))

    def _first_malformed(self, source: CsvSource | None) -> LogLoadError | None:
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

    def _first_errors(self, source: CsvSource | None) -> list[str]:
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
        """Sort the kept rows once and build the events, the items table and the report."""
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
