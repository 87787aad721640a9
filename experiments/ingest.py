"""``driftrec load``: convert a raw interaction log (CSV or Parquet) into a driftrec event log.

``driftrec load --logs shop.csv --out events.parquet [--format shop.yaml] [--set key=value ...]
[--skip-bad-rows]`` reads the log with :func:`driftrec.ingest.load.load_log` and writes the events
(Parquet, the event schema) and an items sidecar ``events.items.parquet`` (dense item id ->
original id, category, median price) next to it, then prints what it did: rows read, kept,
skipped per reason and dropped, users, items, categories, behaviour counts and the time span.

A bad row stops the load with one line naming the file, the data row (1-based, the header not
counted), the column and the value; ``--skip-bad-rows`` skips such rows and counts them instead.
Nothing is written unless the load succeeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from driftrec.envs.config import parse_sets
from driftrec.experiments.cliutil import CLIError, check_output, positive_int
from driftrec.ingest.format import LogFormat
from driftrec.ingest.load import DEFAULT_CHUNK_ROWS, load_log, write_loaded
from driftrec.ingest.results import LoadedLog, LogLoadError

PLAIN_PROGRESS_AFTER_S = 5.0  # without a terminal, progress lines start once a load takes this long


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``driftrec load``."""
    p = sub.add_parser(
        "load", help="convert a raw interaction log (CSV or Parquet) into a driftrec event log",
        description="Load a shop's interaction log (columns user_id, item_id, timestamp, behaviour and optionally "
                    "price, category, session_id, position) into the event log schema, and write it as Parquet "
                    "with an items sidecar (OUT with .items.parquet: dense item id -> original id, category, "
                    "price). Rows are numbered from 1 after the header in error messages.")
    add_log_arguments(p, "the raw log: a CSV (optionally .gz) or Parquet file")
    p.add_argument("--out", required=True, type=Path, help="output event log (Parquet), e.g. events.parquet")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a format key, over --format (repeatable; values parsed as YAML), e.g. "
                        "--set columns.user_id=visitorid --set timestamp_unit=ms --set behaviours.fav=cart")
    p.add_argument("--chunk-rows", type=positive_int, default=DEFAULT_CHUNK_ROWS,
                   help=f"rows parsed at once; bounds memory (default: {DEFAULT_CHUNK_ROWS:,})")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run_load)


def add_log_arguments(p: argparse.ArgumentParser, logs_help: str) -> None:
    """The arguments of every command that reads a log (load, offline, calibrate): ``--logs``,
    ``--format`` (``args.log_format``) and ``--skip-bad-rows``."""
    p.add_argument("--logs", required=True, type=Path, metavar="FILE", help=logs_help)
    p.add_argument("--format", dest="log_format", type=Path, default=None, metavar="FMT.yaml",
                   help="log format YAML: columns (renames), behaviours (value -> behaviour or drop), drop, "
                        "rating_threshold, timestamp_unit, timestamp_format, session_gap_minutes, delimiter "
                        "(see `driftrec load`)")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="skip rows with an empty id, bad timestamp, unknown behaviour, bad price or rating, or "
                        "a malformed line, and report how many per reason (default: stop at the first)")


def log_format(format_file: Path | None, overrides: list[str]) -> LogFormat:
    """The format of ``--format`` (defaults if None) with the ``--set`` overrides on top."""
    fmt = LogFormat.from_yaml(format_file) if format_file is not None else LogFormat()
    return LogFormat.from_dict(parse_sets(overrides), base=fmt) if overrides else fmt


def run_load(args: argparse.Namespace) -> int:
    """Load ``args.logs``, write the event log and its items sidecar, print the report."""
    fmt = log_format(args.log_format, args.overrides)
    check_output(args.out)
    if args.out.resolve() == args.logs.resolve():
        raise CLIError(f"--out '{args.out}' is the input log; choose another file")
    progress = None if args.quiet else _Progress(args.logs)
    try:
        loaded = load_log(args.logs, fmt, skip_bad_rows=args.skip_bad_rows, chunk_rows=args.chunk_rows,
                          progress=progress)
    except LogLoadError as err:
        # a LogLoadError is a ConfigError, which cli.main prints as one line anyway; a bad row gets the hint
        if err.row is None or args.skip_bad_rows:
            raise
        raise CLIError(f"{err} (--skip-bad-rows skips bad rows and counts them)") from None
    finally:
        if progress is not None:
            progress.close()
    events_path, items_file = write_loaded(loaded, args.out)
    print(report_text(loaded, args.logs, events_path, items_file))
    return 0


def report_text(loaded: LoadedLog, source: Path, events_path: Path, items_file: Path) -> str:
    """The short report ``driftrec load`` prints."""
    r = loaded.report
    lines = [f"loaded {source} -> {events_path} (+ {items_file.name}) in {r.seconds:.1f} s"]
    lines.append(f"rows: {r.rows_read:,} read, {r.rows_kept:,} kept, {r.rows_skipped:,} skipped, "
                 f"{r.rows_dropped:,} dropped")
    if r.skipped:
        lines.append("skipped: " + ", ".join(f"{reason} {count:,}" for reason, count in r.skipped.items()))
        lines.extend(f"  e.g. {message}" for message in r.first_errors[:3])
    if r.dropped:
        lines.append("dropped: " + ", ".join(f"{value!r} {count:,}" for value, count in r.dropped.items()))
    events = loaded.events
    sessions = int((events["session_id"].diff().ne(0) | events["user_id"].diff().ne(0)).sum())
    lines.append(f"users {loaded.n_users:,}, items {loaded.n_items:,}, categories {loaded.n_categories:,}, "
                 f"sessions {sessions:,}")
    lines.append("behaviours: " + ", ".join(f"{name} {count:,}" for name, count in r.behaviours.items()))
    first, last = events["timestamp"].min(), events["timestamp"].max()
    days = (last - first).total_seconds() / 86_400
    lines.append(f"time span: {first} .. {last} UTC ({days:.1f} days)")
    if loaded.sim_config is not None:
        lines.append("a driftrec-simulated log: ids and the simulator config kept as they are")
    return "\n".join(lines)


class _Progress:
    """Rows read so far, on stderr: a rich bar on a terminal, else a plain line per chunk once a
    load has taken a few seconds (so small logs print nothing)."""

    def __init__(self, path: Path):
        self.start = time.perf_counter()
        self.path = path
        self._bar: Any = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("loading {task.fields[rows]:,} rows"), BarColumn(),
                                 TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("load", total=1.0, rows=0)

    def __call__(self, rows: int, fraction: float | None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=fraction or 0.0, rows=rows)
        elif time.perf_counter() - self.start > PLAIN_PROGRESS_AFTER_S:
            done = f" ({fraction:.0%})" if fraction is not None else ""
            print(f"driftrec load: {rows:,} rows read{done}, {time.perf_counter() - self.start:.0f} s",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
