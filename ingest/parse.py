"""Vectorised parsing of a chunk's columns (pyarrow / numpy calls, no per-row Python): ids to dense
codes, numbers with their missing and bad masks, timestamps to milliseconds since 1970 UTC."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from driftrec.ingest.format import LogFormat

_MS_PER_UNIT = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
_FALLBACK_TIME_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d")  # unambiguous; tried after ISO 8601
_MISSING_TEXT = ("", "nan", "na", "n/a", "null", "none")  # an empty price, category or position
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


class Factorizer:
    """Dense codes 0..n-1 for ids in order of first appearance, across chunks.

    Each chunk is dictionary-encoded by pyarrow (vectorised); only its distinct values meet the
    Python dict, so the cost is per distinct id per chunk, not per row.
    """

    def __init__(self) -> None:
        self.codes: dict[Any, int] = {}  # id -> code, in order of first appearance

    def __call__(self, values: pa.Array) -> np.ndarray:
        """The codes of ``values`` (int64), giving each id not seen before the next code."""
        if len(values) == 0:
            return np.zeros(0, dtype=np.int64)
        encoded = pc.dictionary_encode(values)
        distinct = encoded.dictionary.to_pylist()
        table = self.codes
        lookup = np.fromiter((table.setdefault(v, len(table)) for v in distinct), dtype=np.int64,
                             count=len(distinct))
        return lookup[encoded.indices.to_numpy(zero_copy_only=False)]

    def originals(self) -> list[str]:
        """Code -> original id as text."""
        return [str(v) for v in self.codes]


def as_text(values: pa.Array) -> pa.Array:
    """Trimmed text of any array; null -> ''."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        values = pc.cast(values, pa.string())
    return pc.utf8_trim_whitespace(pc.fill_null(values, ""))


def parse_ids(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(ids ready to factorise, missing mask): integers stay integers, anything else is trimmed text."""
    if pa.types.is_integer(values.type):
        return values, values.is_null().to_numpy(zero_copy_only=False)
    text = as_text(values)
    return text, pc.equal(text, "").to_numpy(zero_copy_only=False)


def parse_numbers(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float64 values with NaN where missing or bad, missing mask, not-a-number mask)."""
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_decimal(values.type):
        out = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
        missing = np.isnan(out)
        return out, missing, np.zeros(len(out), dtype=bool)
    text = as_text(values)
    missing = pc.is_in(pc.utf8_lower(text), value_set=pa.array(_MISSING_TEXT)).to_numpy(zero_copy_only=False)
    ok = pc.match_substring_regex(text, _NUMBER).to_numpy(zero_copy_only=False)
    out = pc.cast(pc.if_else(pa.array(ok), text, "0"), pa.float64()).to_numpy(zero_copy_only=False).copy()
    out[~ok] = np.nan
    return out, missing & ~ok, ~ok & ~missing


def parse_timestamps(values: pa.Array, fmt: LogFormat) -> tuple[np.ndarray, np.ndarray]:
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
        number, missing, _ = parse_numbers(values)
        return _number_ms(number, fmt.timestamp_unit), missing
    text = as_text(values)
    number, _, not_number = parse_numbers(text)
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
