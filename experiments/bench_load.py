"""How fast and in how much memory ``load_log`` reads a big log (issue 6: "logs of at least 10
million rows load on a 24 GiB machine; measure peak memory in a benchmark").

``python -m driftrec.experiments.bench_load --rows 10000000 --out bench_load.json`` writes a
realistic synthetic shop log of N rows into a temporary folder in three forms:

- ``iso.csv``: ISO 8601 text timestamps (``2026-01-03T14:02:11Z``), string item ids;
- ``epoch.csv``: numeric timestamps in seconds (RetailRocket-like, parsed with ``timestamp_unit``);
- ``log.parquet``: int64 millisecond timestamps, string ids (``timestamp_unit: ms``).

About 100,000 users (N / 10 for small N), a few thousand items with Zipf popularity, 50
categories, a view / click / cart / purchase funnel, rows in time order as shops export them.
Generation is vectorised and streamed in blocks of a million rows, so it needs little memory.

Each file is loaded in a fresh child process (``load_log`` only), which reports its wall time and
its peak resident set (``resource.getrusage``'s ``ru_maxrss``; also the RSS right after imports, so
the load's own share is visible). The parent prints a table and writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

MIB = 2.0**20
BLOCK_ROWS = 1_000_000
N_ITEMS = 5_000
N_CATEGORIES = 50
SPAN_DAYS = 90
START = np.datetime64("2025-06-01T00:00:00", "s")
FUNNEL = (("view", 0.85), ("click", 0.08), ("addtocart", 0.05), ("transaction", 0.02))
FORMATS: dict[str, dict[str, Any]] = {  # file -> LogFormat of it
    "iso.csv": {},
    "epoch.csv": {"timestamp_unit": "s"},
    "log.parquet": {"timestamp_unit": "ms"},
}

_CHILD = """
import json, resource, sys, time
from driftrec.ingest import LogFormat, load_log
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path, fmt, chunk = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
loaded = load_log(path, LogFormat.from_dict(fmt), chunk_rows=chunk)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_rss_kib": peak, "import_rss_kib": base,
                  "events": len(loaded.events), "users": loaded.n_users, "items": loaded.n_items,
                  "categories": loaded.n_categories}))
"""


def generate(rows: int, folder: Path, seed: int = 0) -> dict[str, Path]:
    """Write the synthetic log of ``rows`` rows as iso.csv, epoch.csv and log.parquet in ``folder``."""
    rng = np.random.default_rng(seed)
    n_users = max(min(100_000, rows // 10), 1)
    item_category = rng.integers(0, N_CATEGORIES, N_ITEMS)
    item_price = np.round(np.exp(rng.normal(3.0, 0.7, N_ITEMS)), 2)
    popularity = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.9
    popularity /= popularity.sum()
    names = np.array([name for name, _ in FUNNEL])
    funnel = np.array([p for _, p in FUNNEL])
    paths = {name: folder / name for name in FORMATS}
    span = SPAN_DAYS * 86_400
    writers: dict[str, Any] = {}
    try:
        for lo in range(0, rows, BLOCK_ROWS):
            n = min(BLOCK_ROWS, rows - lo)
            # rows in time order: this block covers its share of the span
            t0, t1 = span * lo / rows, span * (lo + n) / rows
            seconds = np.sort(rng.uniform(t0, t1, n))
            stamp = START + seconds.astype(np.int64).astype("timedelta64[s]")
            item = rng.choice(N_ITEMS, n, p=popularity)
            columns = {
                "user_id": pa.array(rng.integers(0, n_users, n) + 1_000_000).cast(pa.string()),
                "item_id": pa.array(np.char.add("sku-", item.astype("U6"))),
                "behaviour": pa.array(names[rng.choice(len(names), n, p=funnel)]),
                "price": pa.array(item_price[item]),
                "category": pa.array(item_category[item]),
            }
            stamps = {
                "iso.csv": pa.array(np.char.add(np.datetime_as_string(stamp, unit="s"), "Z")),
                "epoch.csv": pa.array(stamp.astype(np.int64)),
                "log.parquet": pa.array(stamp.astype("datetime64[ms]").astype(np.int64)),
            }
            for name, path in paths.items():
                table = pa.table({"user_id": columns["user_id"], "item_id": columns["item_id"],
                                  "timestamp": stamps[name], "behaviour": columns["behaviour"],
                                  "price": columns["price"], "category": columns["category"]})
                if name not in writers:
                    writers[name] = (pq.ParquetWriter(path, table.schema) if name.endswith(".parquet")
                                     else pacsv.CSVWriter(path, table.schema))
                writers[name].write_table(table)
    finally:
        for writer in writers.values():
            writer.close()
    return paths


def measure(path: Path, fmt: dict[str, Any], chunk_rows: int) -> dict[str, Any]:
    """Load ``path`` in a fresh child process; its wall time, peak RSS and what it loaded."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), json.dumps(fmt), str(chunk_rows)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"loading {path} failed: {proc.stderr.strip().splitlines()[-1:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    scale = 1024.0 if sys.platform != "darwin" else 1.0  # ru_maxrss: KiB on Linux, bytes on macOS
    out["peak_rss_mib"] = out.pop("peak_rss_kib") * scale / MIB
    out["import_rss_mib"] = out.pop("import_rss_kib") * scale / MIB
    return out


def run(rows: int, out: Path | None, chunk_rows: int, folder: Path | None = None, repeats: int = 3) -> dict[str, Any]:
    """Generate, load each form ``repeats`` times, each in a fresh child, print the table of the
    medians (time, peak RSS; the shared machine is noisy); return (and write) the report with
    every sample."""
    with tempfile.TemporaryDirectory(prefix="driftrec-bench-load-", dir=folder) as tmp:
        start = time.perf_counter()
        paths = generate(rows, Path(tmp))
        generate_s = time.perf_counter() - start
        print(f"generated {rows:,} rows in 3 files in {generate_s:.1f} s", file=sys.stderr)
        results = []
        for name, path in paths.items():
            samples = [measure(path, FORMATS[name], chunk_rows) for _ in range(repeats)]
            res = dict(samples[0])
            for key in ("seconds", "peak_rss_mib", "import_rss_mib"):
                res[key] = float(statistics.median(sample[key] for sample in samples))
            res.update(file=name, rows=rows, file_mib=path.stat().st_size / MIB, repeats=repeats, samples=samples,
                       rows_per_s=rows / res["seconds"] if res["seconds"] else float("inf"))
            results.append(res)
            print(f"  {name}: median of {repeats}: {res['seconds']:.1f} s, peak RSS {res['peak_rss_mib']:.0f} MiB",
                  file=sys.stderr)
    report = {
        "rows": rows, "chunk_rows": chunk_rows, "generate_seconds": generate_s, "results": results,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count()},
    }
    _print_table(results)
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
    return report


def _print_table(results: list[dict[str, Any]]) -> None:
    head = f"{'file':<12} {'rows':>12} {'file MiB':>9} {'load s':>8} {'rows/s':>12} {'peak RSS MiB':>13} " \
           f"{'users':>8} {'items':>6}"
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r['file']:<12} {r['rows']:>12,} {r['file_mib']:>9.1f} {r['seconds']:>8.2f} {r['rows_per_s']:>12,.0f} "
              f"{r['peak_rss_mib']:>13.0f} {r['users']:>8,} {r['items']:>6,}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m driftrec.experiments.bench_load [--rows N] [--out FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m driftrec.experiments.bench_load",
                                     description="Time load_log and measure its peak memory on a synthetic log.")
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the synthetic log (default: 10,000,000)")
    parser.add_argument("--out", type=Path, default=Path("bench_load.json"),
                        help="JSON report (default: bench_load.json)")
    parser.add_argument("--chunk-rows", type=int, default=1_000_000, help="load_log's chunk_rows (default: 1,000,000)")
    parser.add_argument("--tmp", type=Path, default=None,
                        help="folder for the temporary log files (default: the system's; 10M rows need about 2 GB)")
    parser.add_argument("--repeats", type=int, default=3, help="loads of each file, each in a fresh process; "
                                                                   "the table shows medians (default: 3)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.chunk_rows < 1 or args.repeats < 1:
        parser.error("--rows, --chunk-rows and --repeats must be positive")
    run(args.rows, args.out, args.chunk_rows, args.tmp, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
