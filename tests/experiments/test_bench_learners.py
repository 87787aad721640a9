"""``driftrec bench --learners``: the report covers every learner, its rates follow from the timed
runs, and the issue's figures follow from the rates. No timing assertions: test machines are noisy."""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from driftrec.experiments import bench, bench_learners
from driftrec.experiments.bench_learners import LearnerSettings

REPEATS = 2
RL_STEPS = (32, 96)
TINY_RL = {"ppo": {"n_envs": 4, "n_steps": 8, "batch_size": 32, "n_epochs": 1},
           "dqn": {"n_envs": 4, "learning_starts": 8, "buffer_size": 1000, "batch_size": 16}}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny in-process run of every learner (a few seconds)."""
    out = tmp_path_factory.mktemp("bench") / "bench_learners.json"
    settings = LearnerSettings(rl_steps=RL_STEPS, hyperparams=TINY_RL, supervised={"hidden": 8, "embedding_dim": 8},
                               log_users=10, epochs=1, serve_users=4, repeats=REPEATS, seconds=0.02, out=str(out),
                               isolate=False)
    result = bench_learners.run_learners(settings)
    result["_out"] = out
    return result


def _rate(x: Any) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def _is_median(summary: dict[str, Any]) -> None:
    assert len(summary["samples"]) == REPEATS
    assert all(_rate(x) for x in summary["samples"]), summary
    assert summary["median"] == pytest.approx(statistics.median(summary["samples"]), rel=1e-12)


def test_json_on_disk_is_the_report(report: dict[str, Any]) -> None:
    on_disk = json.loads(Path(report["_out"]).read_text())
    assert on_disk == json.loads(json.dumps({k: v for k, v in report.items() if k != "_out"}))
    assert on_disk["section"] == "learners" and on_disk["settings"]["rl_steps"] == list(RL_STEPS)
    for key in ("platform", "python", "torch", "stable_baselines3", "cpu_count"):
        assert on_disk["machine"][key]


def test_every_learner_has_a_row(report: dict[str, Any]) -> None:
    assert [r["algo"] for r in report["rl"]] == ["ppo", "dqn"]
    sup = report["supervised"]
    assert [r["model"] for r in sup["train"]] == ["mlp", "gru", "transformer"]
    assert [r["policy"] for r in sup["serve"]] == ["oracle-greedy", "mlp", "gru", "transformer"]
    assert sup["log"]["users"] == 10 and sup["log"]["examples"] > 0
    # the simulator is measured once per distinct n_envs of the agents (both 4 here)
    assert [(r["preset"], r["users"]) for r in report["simulator"]] == [("default", 4)]


def test_rl_rate_is_the_steps_between_the_runs_over_their_time_difference(report: dict[str, Any]) -> None:
    for row in report["rl"]:
        _is_median(row["rate"])
        assert row["n_envs"] == TINY_RL[row["algo"]]["n_envs"] and row["torch_threads"] >= 1
        assert len(row["runs"]) == REPEATS
        for pair, rate in zip(row["runs"], row["rate"]["samples"], strict=True):
            short, long = pair["short"], pair["long"]
            assert RL_STEPS[0] <= short["timesteps"] < RL_STEPS[1] <= long["timesteps"]
            assert 0 < short["learn_seconds"] <= short["seconds"] and 0 < long["learn_seconds"] <= long["seconds"]
            expected = (long["timesteps"] - short["timesteps"]) / (long["seconds"] - short["seconds"])
            assert rate == pytest.approx(expected, rel=1e-12)
        sim = report["simulator"][0]
        assert row["simulator_vec_env"] == sim["vec_env"]["median"] > 0
        assert row["simulator_share"] == pytest.approx(row["rate"]["median"] / sim["vec_env"]["median"], rel=1e-12)


def test_supervised_rates_count_examples_and_requests(report: dict[str, Any]) -> None:
    sup = report["supervised"]
    for row in sup["train"]:
        _is_median(row["rate"])
        assert row["examples"] == sup["log"]["examples"] and row["epochs"] == 1
        assert row["rate"]["samples"] == pytest.approx([row["examples"] / s for s in row["seconds"]], rel=1e-12)
    oracle = sup["serve"][0]
    assert oracle["ratio_to_reference"]["samples"] == [1.0] * REPEATS
    for row in sup["serve"]:
        _is_median(row["rate"])
        _is_median(row["ratio_to_reference"])
        assert row["users"] == 4 and all(r >= 4 for r in row["requests"])  # every user makes a request
        assert row["rate"]["samples"] == pytest.approx(
            [r / s for r, s in zip(row["requests"], row["seconds"]["samples"], strict=True)], rel=1e-12)
        assert row["ratio_to_reference"]["samples"] == pytest.approx(
            [s / o for s, o in zip(row["seconds"]["samples"], oracle["seconds"]["samples"], strict=True)], rel=1e-12)


def test_figures_follow_from_the_medians(report: dict[str, Any]) -> None:
    targets = report["targets"]
    assert targets["ppo_user_steps"]["value"] == report["rl"][0]["rate"]["median"]
    worst = max(r["ratio_to_reference"]["median"] for r in report["supervised"]["serve"][1:])
    assert targets["serve_ratio"]["value"] == worst
    assert (targets["ppo_user_steps"]["threshold"], targets["serve_ratio"]["threshold"]) == (5000, 4)
    assert targets["ppo_user_steps"]["passed"] is (targets["ppo_user_steps"]["value"] >= 5000)
    assert targets["serve_ratio"]["passed"] is (worst <= 4)


def _fake(ppo: float | None, ratios: dict[str, float]) -> dict[str, Any]:
    rl = [] if ppo is None else [{"algo": "ppo", "rate": {"median": ppo}}]
    serve = [{"policy": "oracle-greedy", "ratio_to_reference": {"median": 1.0}},
             *({"policy": p, "ratio_to_reference": {"median": r}} for p, r in ratios.items())]
    return {"settings": {"preset": "default"}, "rl": rl, "supervised": {"serve": serve} if ratios else {}}


def test_figures_pass_at_their_thresholds_and_are_none_when_not_measured() -> None:
    at = bench_learners.evaluate_targets(_fake(5000.0, {"mlp": 4.0, "gru": 2.0}))
    assert [t["passed"] for t in at.values()] == [True, True]
    missed = bench_learners.evaluate_targets(_fake(4999.0, {"mlp": 1.0, "gru": 4.01}))
    assert [t["passed"] for t in missed.values()] == [False, False]
    assert missed["serve_ratio"]["value"] == 4.01 and "gru" in missed["serve_ratio"]["description"]
    unmeasured = bench_learners.evaluate_targets(_fake(None, {}))
    assert all(t["value"] is None and t["passed"] is None for t in unmeasured.values())


def test_printed_tables_show_every_learner_and_the_figures(report: dict[str, Any]) -> None:
    console = Console(record=True, width=200)
    bench_learners.print_report(report, console)
    text = console.export_text()
    for name in ("ppo", "dqn", "mlp", "gru", "transformer", "oracle-greedy", "5,000", "4.00"):
        assert name in text
    row = next(line for line in text.splitlines() if "driftrec train ppo" in line)
    assert row.rstrip(" │").endswith("yes" if report["targets"]["ppo_user_steps"]["passed"] else "NO")


@pytest.mark.slow
def test_an_rl_child_runs_as_driftrec_train_does() -> None:
    task = {"kind": "rl", "algo": "ppo", "preset": "default", "steps": 32, "hyperparams": TINY_RL["ppo"],
            "torch_threads": 1}
    result = bench._in_child(task, None, module=bench_learners.MODULE, single_thread=False)
    assert result["timesteps"] == 32 and result["n_envs"] == 4 and result["torch_threads"] == 1
    assert 0 < result["learn_seconds"] <= result["seconds"]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="driftrec")
    bench.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


def test_cli_learners_quick_yields_to_explicit_flags_and_has_its_own_out() -> None:
    settings = bench_learners.settings_from_args(_parse(["--learners", "--quick", "--serve-users", "5",
                                                         "--torch-threads", "1", "--out", ""]))
    assert (settings.serve_users, settings.torch_threads, settings.out) == (5, 1, None)  # explicit flags win
    assert (settings.rl_steps, settings.repeats) == (bench_learners.QUICK["rl_steps"], 1)  # from --quick
    assert bench_learners.settings_from_args(_parse(["--learners"])) == LearnerSettings()
    assert LearnerSettings().out == "bench_learners.json" and bench.settings_from_args(_parse([])).out == "bench.json"
    assert bench_learners.settings_from_args(_parse(["--learners", "--out", "x.json"])).out == "x.json"


@pytest.mark.parametrize(("argv", "words"), [
    (["--learners", "--users", "4"], ("--users", "--learners")),
    (["--log-users", "5"], ("--log-users", "add --learners")),
    (["--learners", "--presets", "default,recsim-ie"], ("--presets", "one preset")),
    (["--learners", "--rl-steps", "64,64"], ("--rl-steps",)),
    (["--learners", "--models", "mlp,lstm"], ("--models", "lstm")),
])
def test_cli_rejects_bad_learner_options_in_one_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                     words: tuple[str, ...]) -> None:
    assert bench.run_cli(_parse([*argv, "--out", ""])) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


@pytest.mark.parametrize(("values", "message"), [
    ({"serve_user": 5}, "unknown bench --learners setting key 'serve_user'; did you mean 'serve_users'?"),
    ({"serve_users": 0}, "--serve-users must be >= 1, got 0"),
    ({"torch_threads": -1}, "--torch-threads must be >= 0, got -1"),
    ({"preset": "shop"}, "--presets must be one of "),
    ({"algos": ["ppo", "a2c"]}, "--algos must be one of ppo, dqn; got 'a2c'"),
    ({"algos": ["ppo", "ppo"]}, "--algos: distinct names from ppo, dqn, got ['ppo', 'ppo']"),
    ({"algos": [], "models": []}, "--algos and --models: nothing to time"),
    ({"algos": ["ppo"], "hyperparams": {"dqn": {}}}, "hyperparams: entries for ['dqn'], which are not timed"),
    ({"rl_steps": [64, 64]}, "--rl-steps: SHORT,LONG with 1 <= SHORT < LONG, got 64,64"),
    ({"seconds": 0}, "--seconds must be > 0, got 0.0"),
])
def test_settings_mistakes_are_one_line_naming_the_flag(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:  # a ConfigError, which callers catching ValueError still catch
        LearnerSettings.from_dict(values)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize(("ppo", "check", "code"), [(6000.0, True, 0), (4000.0, True, 1), (4000.0, False, 0)])
def test_check_exits_1_only_when_a_figure_is_missed(monkeypatch: pytest.MonkeyPatch, report: dict[str, Any],
                                                    ppo: float, check: bool, code: int) -> None:
    fake = {**report, "rl": [{**report["rl"][0], "rate": {"median": ppo, "samples": [ppo]}}]}
    fake["supervised"] = {**report["supervised"],
                          "serve": [{**r, "ratio_to_reference": {"median": 1.0, "samples": [1.0]}}
                                    for r in report["supervised"]["serve"]]}
    fake["targets"] = bench_learners.evaluate_targets(fake)
    monkeypatch.setattr(bench_learners, "run_learners", lambda settings, progress=None: fake)
    argv = ["--learners", "--out", "", *(["--check"] if check else [])]
    assert bench.run_cli(_parse(argv)) == code
