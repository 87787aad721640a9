"""Load a log file into the event schema, and write what was loaded (issue 6, "Bring your own logs").

:func:`load_log` reads a CSV or Parquet log (columns and values mapped by a
:class:`~driftrec.ingest.format.LogFormat`) in chunks of ``chunk_rows`` rows through the
:class:`~driftrec.ingest.loader.Loader`; a driftrec event log (``driftrec simulate`` or
``driftrec load`` output) is recognised and loaded as is. :func:`write_loaded` writes the events
and an items sidecar (:func:`items_path`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.events import EVENT_SCHEMA, LOG_CONFIG_KEY, EventLogError, EventWriter, load_events
from driftrec.envs.state import BEHAVIOURS
from driftrec.envs.world import build_world
from driftrec.ingest.format import LogFormat
from driftrec.ingest.loader import Loader
from driftrec.ingest.results import LoadedLog, LoadReport, LogLoadError, one_line
from driftrec.ingest.sources import CsvSource, ParquetSource, Source, is_parquet

DEFAULT_CHUNK_ROWS = 1_000_000


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
    if is_parquet(path):
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as err:
            raise LogLoadError(f"log file '{path}': not a readable Parquet file ({one_line(err)})") from None
        if all(name in schema.names for name in EVENT_SCHEMA.names):
            return _load_event_log(path, schema, start)
        source: Source = ParquetSource(path, schema, chunk_rows)
    else:
        source = CsvSource(path, fmt, chunk_rows)
    return Loader(path, fmt, source, skip_bad_rows, progress).run(start)


def items_path(events_path: str | os.PathLike[str]) -> Path:
    """The items sidecar of an events file: ``events.parquet`` -> ``events.items.parquet``."""
    path = Path(events_path)
    stem = path.name[:-len(".parquet")] if path.name.endswith(".parquet") else path.name
    return path.with_name(f"{stem}.items.parquet")


def write_loaded(loaded: LoadedLog, path: str | os.PathLike[str], batch_rows: int = 1_000_000) -> tuple[Path, Path]:
    """Write ``loaded``'s events to ``path`` (Parquet, :data:`~driftrec.envs.events.EVENT_SCHEMA`,
    with the SimConfig of a simulated log in its metadata) and its items table to :func:`items_path`
    next to it.

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
    """The process's file-creation mask (read by setting it and setting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
            raise LogLoadError(f"log file '{path}': bad simulator config in its metadata ({one_line(err)})") from None
    item = events["item_id"].to_numpy(np.int64)
    side = items_path(path)
    if cfg is not None:
        if cfg.model == "recsim-ie":
            # imported only for a RecSim log, as build_user_model does (`driftrec --help` imports this module)
            from driftrec.envs.recsim_ie import build_recsim_world

            world = build_recsim_world(cfg)
        else:
            world = build_world(cfg)
        n_items, n_categories = cfg.n_items, cfg.n_categories
        items = pd.DataFrame({"original": pd.array([str(i) for i in range(n_items)], dtype=str),
                              "category": np.asarray(world.category, dtype=np.int32),
                              "price": np.asarray(world.price, dtype=np.float64)},
                             index=pd.RangeIndex(n_items, name="item_id"))
    elif side.is_file():
        try:
            items = pd.read_parquet(side).set_index("item_id")
        except (OSError, KeyError, pa.ArrowException) as err:
            raise LogLoadError(f"items file '{side}': not a driftrec items table ({one_line(err)})") from None
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
