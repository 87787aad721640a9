"""``driftrec load`` (experiments/ingest.py): the report, the files it writes, one-line errors with
exit status 2 and nothing half-written; and the load benchmark script at a tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from driftrec.envs.events import load_events
from driftrec.experiments import bench_load
from driftrec.experiments.cli import main
from driftrec.ingest.load import load_log

MESSY = Path(__file__).resolve().parents[1] / "data" / "messy_shop.csv"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_load_writes_events_and_items_and_prints_a_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "events.parquet"
    code, stdout, stderr = run_cli(capsys, "load", "--logs", str(MESSY), "--out", str(out), "--skip-bad-rows")
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith(f"loaded {MESSY} -> {out} (+ events.items.parquet) in ")
    assert lines[1] == "rows: 14 read, 7 kept, 7 skipped, 0 dropped"
    assert lines[2] == ("skipped: malformed row 1, empty user_id 1, empty item_id 1, bad timestamp 1, "
                        "unknown behaviour 1, negative price 1, non-numeric price 1")
    assert "users 4, items 2, categories 2, sessions 5" in stdout
    assert "behaviours: search 1, view 2, click 1, cart 1, purchase 2" in stdout
    assert "time span: 2024-03-01 09:00:00 .. 2024-03-03 00:01:00 UTC (1.6 days)" in stdout
    events = load_events(out)  # a valid driftrec event log
    pd.testing.assert_frame_equal(events, load_log(MESSY, skip_bad_rows=True).events)
    items = pd.read_parquet(tmp_path / "events.items.parquet")
    assert items["original"].tolist() == ["sku-1", "sku-2"] and items["item_id"].tolist() == [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.items.parquet", "events.parquet"]


def test_format_yaml_and_set_overrides(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "ratings.csv"
    log.write_text("userId,movieId,rating,timestamp\n1,10,4.0,964982703\n1,20,3.5,964982224\n2,10,5,964982931\n")
    fmt = tmp_path / "ratings.yaml"
    fmt.write_text("columns: {user_id: userId, item_id: movieId, behaviour: rating}\nrating_threshold: 4\n")
    out = tmp_path / "events.parquet"
    code, stdout, stderr = run_cli(capsys, "load", "--logs", str(log), "--out", str(out), "--format", str(fmt),
                                   "--set", "rating_below=drop")
    assert code == 0, stderr
    assert "rows: 3 read, 2 kept, 0 skipped, 1 dropped" in stdout and "dropped: 'rating < 4' 1" in stdout
    assert load_events(out)["behaviour"].tolist() == ["purchase", "purchase"]


@pytest.mark.parametrize("args, message", [
    ([], f"log file '{MESSY}', data row 3, column 'user_id': empty user_id "
         "(--skip-bad-rows skips bad rows and counts them)"),
    (["--set", "timestamp_units=ms"], "unknown log format key 'timestamp_units'; did you mean 'timestamp_unit'?"),
    (["--set", "columns.timestamp=ts"],
     f"log file '{MESSY}': missing column 'ts' (columns.timestamp names it); "
     "the file has columns: user_id, item_id, timestamp, behaviour, price, category"),
    (["--set", "behaviours.wishlist=like"], "log format key 'behaviours.wishlist' must be one of search, view, "
                                            "impression, click, cart, purchase, drop; got 'like'"),
    (["--set", "oops"], "bad --set 'oops': expected KEY=VALUE, e.g. --set drift_gradual=0.2"),
    (["--format", "missing.yaml"], "log format 'missing.yaml' does not exist"),
])
def test_user_mistakes_are_one_line_and_leave_nothing(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                      args: list[str], message: str) -> None:
    out = tmp_path / "events.parquet"
    code, stdout, stderr = run_cli(capsys, "load", "--logs", str(MESSY), "--out", str(out), *args)
    assert code == 2
    assert stderr == f"driftrec: error: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_bad_paths_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, stderr = run_cli(capsys, "load", "--logs", str(tmp_path / "nope.csv"),
                              "--out", str(tmp_path / "e.parquet"))
    assert (code, stderr) == (2, f"driftrec: error: log file '{tmp_path / 'nope.csv'}' does not exist\n")
    code, _, stderr = run_cli(capsys, "load", "--logs", str(MESSY), "--out", str(tmp_path / "no" / "e.parquet"))
    assert code == 2 and "folder" in stderr and "does not exist" in stderr and stderr.count("\n") == 1
    code, _, stderr = run_cli(capsys, "load", "--logs", str(MESSY), "--out", str(MESSY))
    assert code == 2 and "is the input log" in stderr
    assert list(tmp_path.iterdir()) == []


def test_a_simulated_log_goes_through_unchanged(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sim = tmp_path / "sim.parquet"
    assert main(["simulate", "--users", "4", "--days", "1", "--set", "n_items=30", "--out", str(sim)]) == 0
    out = tmp_path / "copy.parquet"
    code, stdout, stderr = run_cli(capsys, "load", "--logs", str(sim), "--out", str(out))
    assert code == 0, stderr
    assert "a driftrec-simulated log" in stdout and "items 30," in stdout
    pd.testing.assert_frame_equal(load_events(out), load_events(sim))


@pytest.mark.slow
def test_bench_load_runs_at_a_tiny_size(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert bench_load.main(["--rows", "3000", "--out", str(out), "--chunk-rows", "1000", "--tmp", str(tmp_path),
                            "--repeats", "2"]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == 3000 and [r["file"] for r in report["results"]] == ["iso.csv", "epoch.csv", "log.parquet"]
    for result in report["results"]:
        assert result["events"] == 3000 and result["users"] == 300 and result["items"] <= bench_load.N_ITEMS
        assert result["peak_rss_mib"] >= result["import_rss_mib"] > 0 and result["seconds"] > 0
        assert len(result["samples"]) == 2 and result["repeats"] == 2
    assert "rows/s" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # the temporary logs are gone
