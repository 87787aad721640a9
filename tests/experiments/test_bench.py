"""``driftrec bench``: the report covers every cell, its numbers are consistent, and the target
flags follow from the numbers. No timing assertions: the machines that run tests are noisy."""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from driftrec.experiments import bench
from driftrec.experiments.bench import BenchSettings

PRESETS = ("default", "recsim-ie")
USERS = (1, 8)
REPEATS = 2


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny in-process run; the targets are judged at N=8 so their logic is exercised."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    settings = BenchSettings(presets=PRESETS, users=USERS, seconds=0.02, repeats=REPEATS, memory_users=1000,
                             out=str(out), target_users=8, isolate=False)
    result = bench.run(settings)
    result["_out"] = out
    return result


def _positive_rate(x: float) -> bool:
    return math.isfinite(x) and x > 0


def test_json_on_disk_is_the_report(report: dict[str, Any]) -> None:
    on_disk = json.loads(Path(report["_out"]).read_text())
    assert on_disk == json.loads(json.dumps({k: v for k, v in report.items() if k != "_out"}))
    assert on_disk["settings"]["users"] == list(USERS)
    for key in ("platform", "python", "numpy", "gymnasium", "cpu_count"):
        assert on_disk["machine"][key]


def test_every_preset_and_batch_size_has_a_cell(report: dict[str, Any]) -> None:
    cells = [(row["preset"], row["users"]) for row in report["batched"]]
    assert sorted(cells) == sorted((p, n) for p in PRESETS for n in USERS)


def test_rates_are_positive_medians_of_their_samples(report: dict[str, Any]) -> None:
    summaries = [row[k] for row in report["batched"] for k in ("vec_env", "core", "cartpole")]
    summaries += [row[k] for row in report["single_env"] for k in ("raw_env", "gym_make")]
    assert len(summaries) == 3 * len(PRESETS) * len(USERS) + 2 * len(PRESETS)
    for s in summaries:
        assert len(s["samples"]) == REPEATS
        assert all(_positive_rate(x) for x in s["samples"])
        assert s["median"] == pytest.approx(statistics.median(s["samples"]), rel=1e-12)


def test_ratio_is_ours_over_cartpole_of_the_same_n(report: dict[str, Any]) -> None:
    cartpole_by_n: dict[int, float] = {}
    for row in report["batched"]:
        # one CartPole measurement per N serves every preset: the same number in each row
        assert cartpole_by_n.setdefault(row["users"], row["cartpole"]["median"]) == row["cartpole"]["median"]
        assert row["ratio_vec_env"] == pytest.approx(row["vec_env"]["median"] / row["cartpole"]["median"], rel=1e-12)
        assert row["ratio_core"] == pytest.approx(row["core"]["median"] / row["cartpole"]["median"], rel=1e-12)


def test_target_flags_agree_with_the_numbers(report: dict[str, Any]) -> None:
    targets = report["targets"]
    cell = next(r for r in report["batched"] if r["preset"] == "default" and r["users"] == 8)
    single = next(r for r in report["single_env"] if r["preset"] == "default")
    assert targets["batched_user_steps"]["value"] == cell["vec_env"]["median"]
    assert targets["cartpole_ratio"]["value"] == cell["ratio_vec_env"]
    assert targets["single_env_steps"]["value"] == single["gym_make"]["median"]
    assert targets["batched_user_steps"]["threshold"] == 1_000_000
    assert targets["cartpole_ratio"]["threshold"] == 0.15
    assert targets["single_env_steps"]["threshold"] == 20_000
    for t in targets.values():
        assert t["passed"] is (t["value"] >= t["threshold"])


def test_memory_accounts_for_the_state_arrays(report: dict[str, Any]) -> None:
    assert [m["preset"] for m in report["memory"]] == list(PRESETS)
    for m in report["memory"]:
        assert m["users"] == 1000
        assert m["state_mib"] > 0 and m["obs_mib"] > 0
        assert m["state_bytes_per_user"] * 1000 == pytest.approx(m["state_mib"] * bench.MIB, rel=1e-12)
        if m["rss_peak_mib"] is not None:  # resource is missing on Windows
            assert m["rss_peak_mib"] >= m["rss_before_mib"] > 0


def test_unmeasured_targets_are_none_and_the_boundary_passes() -> None:
    def cell(vec: float, cart: float) -> dict[str, Any]:
        return {"preset": "default", "users": 4096, "vec_env": {"median": vec}, "ratio_vec_env": vec / cart}

    single = [{"preset": "default", "gym_make": {"median": 20_000.0}}]
    at = bench.evaluate_targets({"batched": [cell(1_000_000.0, 1_000_000.0 / 0.15)], "single_env": single})
    assert [t["passed"] for t in at.values()] == [True, True, True]
    below = bench.evaluate_targets({"batched": [cell(999_999.0, 1e7)],
                                    "single_env": [{"preset": "default", "gym_make": {"median": 19_999.0}}]})
    assert [t["passed"] for t in below.values()] == [False, False, False]
    assert below["cartpole_ratio"]["value"] == pytest.approx(0.0999999, rel=1e-9)
    missing = bench.evaluate_targets({"batched": [cell(2e6, 1e6)], "single_env": []}, target_users=64)
    assert all(t["value"] is None and t["passed"] is None for t in missing.values())


@pytest.mark.slow
def test_a_child_group_runs_pinned_to_one_cpu() -> None:
    cpu = bench._choose_cpu(None)
    result = bench._in_child({"kind": "memory", "preset": "default", "users": 2000}, cpu)
    if hasattr(os, "sched_getaffinity"):
        assert result["cpus_used"] == 1
    assert result["users"] == 2000 and result["state_mib"] > 0
    if result["rss_peak_mib"] is not None:
        assert result["rss_peak_mib"] >= result["rss_before_mib"] > 0


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="driftrec")
    bench.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


def test_cli_registers_bench_and_quick_yields_to_explicit_flags() -> None:
    args = _parse(["--quick", "--users", "2,16", "--out", ""])
    assert args.func is bench.run_cli
    settings = bench.settings_from_args(args)
    assert settings.users == (2, 16)  # explicit flag wins
    assert (settings.seconds, settings.repeats, settings.memory_users) == (0.05, 1, 1000)  # from --quick
    assert settings.out is None
    defaults = bench.settings_from_args(_parse([]))
    assert defaults == BenchSettings()


def test_cli_rejects_bad_options_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.run_cli(_parse(["--presets", "default,nope", "--out", ""])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'nope'" in err and "--presets" in err
    assert bench.run_cli(_parse(["--repeats", "0", "--out", ""])) == 2
    assert "--repeats" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse(["--users", "1,x"])


def _fake_report(vec: float) -> dict[str, Any]:
    settings = BenchSettings(presets=("default",), users=(4096,), seconds=1.0, repeats=1, memory_users=10)
    row = {"preset": "default", "users": 4096, "vec_env": {"median": vec, "samples": [vec]},
           "core": {"median": 2e6, "samples": [2e6]}, "cartpole": {"median": 4e6, "samples": [4e6]},
           "ratio_vec_env": vec / 4e6, "ratio_core": 0.5, "cpus_used": 1}
    report: dict[str, Any] = {
        "settings": {**bench.dataclasses.asdict(settings), "presets": ["default"], "users": [4096]},
        "machine": {"cpu_model": "test", "cpu_count": 1, "pinned_cpu": 0, "loadavg_before": None,
                    "loadavg_after": None, "python": "3", "numpy": "2", "gymnasium": "1"},
        "batched": [row],
        "single_env": [{"preset": "default", "raw_env": {"median": 3e4, "samples": [3e4]},
                        "gym_make": {"median": 2.5e4, "samples": [2.5e4]}, "cpus_used": 1}],
        "memory": [{"preset": "default", "users": 10, "steps": 3, "rss_before_mib": 1.0, "rss_peak_mib": 2.0,
                    "rss_growth_mib": 1.0, "state_mib": 0.01, "obs_mib": 0.01, "state_bytes_per_user": 1000.0}],
    }
    report["targets"] = bench.evaluate_targets(report, 4096)
    return report


@pytest.mark.parametrize(("vec", "check", "code"), [(2e6, True, 0), (5e5, True, 1), (5e5, False, 0)])
def test_check_exits_1_only_when_a_target_is_missed(monkeypatch: pytest.MonkeyPatch, vec: float, check: bool,
                                                    code: int) -> None:
    monkeypatch.setattr(bench, "run", lambda settings, progress=None: _fake_report(vec))
    argv = ["--out", "", *(["--check"] if check else [])]
    assert bench.run_cli(_parse(argv)) == code


def test_printed_table_says_whether_targets_are_met() -> None:
    console = Console(record=True, width=160)
    bench.print_report(_fake_report(5e5), console)
    text = console.export_text()
    assert "500,000" in text and "4,000,000" in text and "0.125" in text
    row = next(line for line in text.splitlines() if "4,096" in line)
    assert row.rstrip(" │").endswith("no")


def test_cpu_clock_times_by_process_time_and_bad_clock_is_rejected() -> None:
    settings = BenchSettings(presets=("default",), users=(4,), seconds=0.02, repeats=1, memory_users=0,
                             out=None, target_users=4, isolate=False, clock="cpu")
    result = bench.run(settings)
    assert result["settings"]["clock"] == "cpu"
    (row,) = result["batched"]
    assert _positive_rate(row["vec_env"]["median"]) and _positive_rate(row["cartpole"]["median"])
    with pytest.raises(ValueError, match="--clock"):
        BenchSettings(clock="sundial").validate()
