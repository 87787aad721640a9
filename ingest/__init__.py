"""driftrec.ingest: load a shop's own interaction log (CSV or Parquet) into the event log schema
(issue 6, "Bring your own logs").

The simulator writes its logs in :data:`driftrec.envs.events.EVENT_SCHEMA`; this package brings
real logs into the same columns, so that ``driftrec offline``, ``driftrec calibrate`` and the
supervised models read either alike::

    from driftrec.ingest import LogFormat, load_log, write_loaded

    loaded = load_log("events.csv", LogFormat.from_yaml("retailrocket.yaml"), skip_bad_rows=True)
    write_loaded(loaded, "rr.parquet")   # + rr.items.parquet

Modules, each importing its siblings by full path (never this package):

- :mod:`~driftrec.ingest.format`: the raw log's columns and :class:`LogFormat` (column names,
  behaviour values, timestamp unit and format, session gap, CSV delimiter), validated key by key;
- :mod:`~driftrec.ingest.sources`: CSV (optionally gzipped) and Parquet files read in chunks;
- :mod:`~driftrec.ingest.parse`: vectorised parsing of ids, numbers and timestamps;
- :mod:`~driftrec.ingest.loader`: row checks with one-line messages, dense ids, the final sort,
  sessions, categories, prices and rewards;
- :mod:`~driftrec.ingest.load`: :func:`load_log` (and the driftrec event-log passthrough),
  :func:`write_loaded`, :func:`items_path`;
- :mod:`~driftrec.ingest.results`: :class:`LoadedLog`, :class:`LoadReport`, :class:`LogLoadError`.
"""

from __future__ import annotations

from driftrec.ingest.format import DEFAULT_BEHAVIOURS, DROP, LOG_COLUMNS, REQUIRED_COLUMNS, TIMESTAMP_UNITS, LogFormat
from driftrec.ingest.load import DEFAULT_CHUNK_ROWS, items_path, load_log, write_loaded
from driftrec.ingest.results import LoadedLog, LoadReport, LogLoadError

__all__ = ["DEFAULT_BEHAVIOURS", "DEFAULT_CHUNK_ROWS", "DROP", "LOG_COLUMNS", "REQUIRED_COLUMNS", "TIMESTAMP_UNITS",
           "LoadReport", "LoadedLog", "LogFormat", "LogLoadError", "items_path", "load_log", "write_loaded"]
