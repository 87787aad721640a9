"""driftrec calibrate: log statistics, the fit (a round trip), the preset file and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from driftrec.envs.config import ConfigError
from driftrec.envs.events import EPOCH, EVENT_SCHEMA, MS_PER_DAY
from driftrec.envs.presets import PRESETS, load_preset_file, preset_config
from driftrec.experiments.calibrate import calibrate, simulate_log, write_calibration
from driftrec.experiments.cli import main
from driftrec.experiments.logstats import drift_divergence, gini, log_stats, top_share


def make_log(rows: list[tuple]) -> pd.DataFrame:
    """An event-schema DataFrame from (user, session, day, item, category, behaviour[, price]) tuples."""
    cols = {f.name: [] for f in EVENT_SCHEMA}
    for row in rows:
        user, session, day, item, cat, beh = row[:6]
        cols["user_id"].append(user)
        cols["session_id"].append(session)
        cols["timestamp"].append(EPOCH + np.timedelta64(int(round(day * MS_PER_DAY)), "ms"))
        cols["item_id"].append(item)
        cols["category"].append(cat)
        cols["position"].append(0 if beh == "impression" else -1)
        cols["behaviour"].append(beh)
        cols["price"].append(row[6] if len(row) > 6 else np.nan)
        cols["reward"].append(0.0)
        cols["propensity"].append(np.nan)
    return pd.DataFrame(cols)


TINY = make_log([
    # user 0: two sessions; 4 impressions, 2 clicks, 1 cart, 1 purchase
    (0, 0, 0.00, 1, 0, "impression", 10.0), (0, 0, 0.00, 1, 0, "click", 10.0), (0, 0, 0.00, 1, 0, "cart", 10.0),
    (0, 0, 0.01, 2, 1, "impression", 40.0), (0, 1, 2.01, 3, 1, "impression", 20.0),
    (0, 1, 2.02, 3, 1, "click", 20.0), (0, 1, 2.02, 3, 1, "purchase", 20.0),
    (0, 1, 2.03, 1, 0, "impression", 10.0),
    # user 1: one session, 1 impression, no click
    (1, 0, 5.00, 2, 1, "impression", 40.0),
])


def test_funnel_sessions_and_gaps_are_exact_on_a_tiny_log() -> None:
    s = log_stats(TINY)
    assert s.n_users == 2 and s.n_events == 9 and s.n_items == 3 and s.n_categories == 2
    assert s.ctr == pytest.approx(2 / 5)
    assert s.cart_rate == pytest.approx(1 / 2)
    assert s.conversion == pytest.approx(1 / 2)
    assert s.session_events == pytest.approx(9 / 3)  # sessions: (0, 0) 4 events, (0, 1) 4, (1, 0) 1
    assert s.sessions_per_user == pytest.approx(3 / 2)
    assert s.gap_days == pytest.approx(2.01 - 0.01)  # user 0: last event of session 0 to first of session 1
    assert s.span_days == pytest.approx(5.0)
    assert s.price_median == pytest.approx(20.0)  # items 1, 2, 3 cost 10, 40, 20
    assert s.price_log_std == pytest.approx(np.log([10.0, 40.0, 20.0]).std())
    # interest events (not impressions): item 1 twice (click, cart), item 3 twice -> shares 2:0:2 of 4
    assert s.top10_share == pytest.approx(0.5)
    assert s.category_entropy == pytest.approx(1.0)  # categories 0 and 1 get two events each
    assert s.drift_excess is None and s.drift_users == 0  # no user has 20 interest events


def test_statistics_a_log_cannot_measure_are_none() -> None:
    no_impressions = TINY[TINY["behaviour"] != "impression"]
    s = log_stats(no_impressions)
    assert s.ctr is None and s.cart_rate == pytest.approx(0.5) and "impression" not in s.behaviours
    no_cats = TINY.assign(category=0, price=np.nan)
    s = log_stats(no_cats)
    assert s.n_categories is None and s.category_entropy is None and s.drift_excess is None
    assert s.price_median is None and s.price_log_std is None
    clicks_only = TINY[TINY["behaviour"].isin(["impression", "click"])]
    s = log_stats(clicks_only)
    assert s.conversion is None and s.cart_rate is None and s.ctr == pytest.approx(2 / 5)
    one_session = TINY[TINY["user_id"] == 1]
    assert log_stats(one_session).gap_days is None  # nobody comes back


def test_gini_and_top_share_known_values() -> None:
    assert gini(np.ones(10)) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 1.0])) == pytest.approx(3 / 4)
    assert top_share(np.array([5.0] + [1.0] * 9), 0.1) == pytest.approx(5 / 14)


def _interest_log(n_users: int, n_events: int, migrate: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Users whose categories are iid from a personal distribution over 5 categories; with ``migrate``
    the late half draws from another user's distribution."""
    rng = np.random.default_rng(seed)
    users, cats = [], []
    for u in range(n_users):
        p_early, p_late = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
        half = n_events // 2
        late = p_late if migrate else p_early
        cats.append(np.r_[rng.choice(5, half, p=p_early), rng.choice(5, n_events - half, p=late)])
        users.append(np.full(n_events, u))
    return np.concatenate(users), np.concatenate(cats)


def test_drift_excess_is_zero_without_drift_and_large_when_interests_migrate() -> None:
    user, cat = _interest_log(200, 40, migrate=False, seed=1)
    observed, null, excess, n = drift_divergence(user, cat, seed=0)
    assert n == 200 and null > 0.05  # 20 events per half: a clear finite-sample floor ...
    assert abs(excess) < 0.01  # ... that the shuffled null removes
    user, cat = _interest_log(200, 40, migrate=True, seed=1)
    observed, null, excess, n = drift_divergence(user, cat, seed=0)
    assert excess > 0.15
    again = drift_divergence(user, cat, seed=0)
    assert again == (observed, null, excess, n)  # seeded
    assert drift_divergence(user, cat, min_user_events=41) == (None, None, None, 0)


def test_simulated_drift_raises_the_excess() -> None:
    # At a shop's volumes (~1.5 sessions a week) a user needs weeks for the 20 interest events the
    # statistic asks of them, so a month of 300 users (~200 of them measured), with about 3
    # migrations in a life (0.1 a day; at 0.3 a day ~9 would mix both halves alike and hide the drift).
    calm = log_stats(simulate_log(preset_config("stationary", {"horizon_days": 30}), 300, 0))
    moving = log_stats(simulate_log(preset_config("stationary", {"horizon_days": 30, "drift_migration": 0.1}), 300, 0))
    assert abs(calm.drift_excess) < 0.02
    assert moving.drift_excess > calm.drift_excess + 0.03


# ------------------------------------------------------------------------------------- round trip
TRUE_KNOBS = {"no_click_utility": 2.0, "cart_bias": -0.5, "purchase_bias": -0.5, "patience_mean": 10.0,
              "gap_mean_days": 2.0, "appeal_scale": 1.5, "drift_gradual": 0.3, "drift_migration": 0.04}
# Tolerances of the recovered knobs (logits absolute, the rest relative). The simulated statistics
# move in jumps when a logging policy's burn-in crowns another top item, so the fit is only as
# sharp as 300 users pooled over 4 burn-ins allow.
TOLERANCE = {"no_click_utility": ("abs", 0.4), "cart_bias": ("abs", 0.6), "purchase_bias": ("abs", 0.9),
             "patience_mean": ("rel", 0.35), "gap_mean_days": ("rel", 0.35), "appeal_scale": ("rel", 0.4),
             "drift_gradual": ("rel", 0.5), "drift_migration": ("rel", 0.5)}
# Where the fit starts: every knob beyond its tolerance from the truth (several truths lie within
# tolerance of the default preset), so recovering a knob means the fit moved it. The fit scales the
# start's drift pair by one strength, so that pair is a multiple (1/5) of the true one.
START_KNOBS = {"no_click_utility": 3.7, "cart_bias": -2.9, "purchase_bias": -2.5, "patience_mean": 20.0,
               "gap_mean_days": 4.0, "appeal_scale": 0.5, "drift_gradual": 0.06, "drift_migration": 0.008}


def knob_error(key: str, value: float) -> float:
    """The error of ``value`` against the true ``key`` in the units of its tolerance (absolute or relative)."""
    kind, _ = TOLERANCE[key]
    return abs(value - TRUE_KNOBS[key]) if kind == "abs" else abs(value / TRUE_KNOBS[key] - 1)


@pytest.mark.slow
def test_round_trip_recovers_the_knobs() -> None:
    far = {key: knob_error(key, START_KNOBS[key]) for key in TOLERANCE}
    assert all(far[key] > tol for key, (_, tol) in TOLERANCE.items()), far
    # a month of log: at a shop's volumes (~1.5 sessions a week) 20 days gave too few clicks per user
    truth = preset_config("default", {**TRUE_KNOBS, "horizon_days": 30})
    real = simulate_log(truth, 300, seed=10**6, groups=4)  # other users and burn-ins than the fit's
    # 20 rounds: from this far the averaged later half needs ~6 more rounds than from the default preset
    # (CTR and the popularity skew trade no_click_utility against appeal_scale while both move)
    cal = calibrate(real, users=300, groups=4, rounds=20, budget_s=600, seed=0, start=START_KNOBS)
    got = cal.overrides
    assert got["n_items"] == 500 and got["n_categories"] == 10 and got["horizon_days"] == pytest.approx(30.0)
    assert got["price_mean"] == pytest.approx(30.0, rel=1e-6) and got["price_spread"] == pytest.approx(0.6, rel=1e-6)
    assert cal.rounds[0]["keys"] == {**{k: v for k, v in got.items() if k not in cal.fitted_keys}, **START_KNOBS}
    misses = []
    for key, (kind, tol) in TOLERANCE.items():
        err = knob_error(key, got[key])
        if err > tol or err >= far[key]:
            misses.append(f"{key}: {got[key]:.3g} vs {TRUE_KNOBS[key]} from {START_KNOBS[key]} "
                          f"({kind} error {err:.2f}, tolerance {tol}, at the start {far[key]:.2f})")
    assert not misses, misses


def test_calibrate_refuses_a_start_it_does_not_fit() -> None:
    with pytest.raises(ConfigError, match="start key 'n_items' is not a fitted knob; choose among: no_click_utility"):
        calibrate(TINY, rounds=1, start={"n_items": 50})
    with pytest.raises(ConfigError, match="start key 'cart_bias' is also a fixed override"):
        calibrate(TINY, rounds=1, overrides={"cart_bias": 0.0}, start={"cart_bias": 1.0})
    with pytest.raises(ConfigError, match="'patience_mean' must be in"):
        calibrate(TINY, rounds=1, start={"patience_mean": -1.0})


# ------------------------------------------------------------------------------------- preset files
@pytest.fixture(scope="module")
def small_calibration():
    real = simulate_log(preset_config("default", {"horizon_days": 5, "no_click_utility": 2.5}), 40, seed=99)
    return calibrate(real, users=40, groups=2, rounds=3, seed=0)


def test_calibrated_preset_file_works_in_preset_config(tmp_path, small_calibration) -> None:
    out = tmp_path / "shop.yaml"
    paths = write_calibration(small_calibration, out, "my-shop", "logs/shop.csv")
    assert [p.name for p in paths] == ["shop.yaml", "shop.report.md", "shop.report.json"]
    doc = yaml.safe_load(out.read_text())
    assert doc["name"] == "my-shop" and doc["base"] == "default" and "logs/shop.csv" in doc["description"]
    preset = load_preset_file(out)
    assert preset.base == "default" and preset.name == "my-shop"
    cfg = preset_config(str(out), {"n_items": 50})
    assert cfg.n_items == 50  # overrides on top of the file
    cfg = preset_config(str(out))
    assert cfg.no_click_utility == pytest.approx(doc["overrides"]["no_click_utility"])
    assert cfg.drift_seasonal == PRESETS["default"].overrides["drift_seasonal"]  # from the base preset
    report = json.loads(out.with_name("shop.report.json").read_text())
    rows = {r["statistic"]: r for r in report["table"]}
    assert rows["ctr"]["real"] == pytest.approx(small_calibration.real.ctr)
    assert "| click-through" in out.with_name("shop.report.md").read_text()


@pytest.mark.parametrize("text, message", [
    (None, "does not exist"),
    ("name: [unclosed", "is not valid YAML"),
    ("name: x\noverides: {}\n", "unknown key 'overides'"),
    ("overrides: {}\n", "'name' must be"),
    ("name: default\n", "'name' must be"),
    ("name: x\nbase: nope\n", "unknown base preset 'nope'"),
    ("name: x\noverrides: {n_itemz: 3}\n", "unknown config key 'n_itemz'"),
    ("name: x\noverrides: {n_items: -3}\n", "'n_items' must be in"),
])
def test_bad_preset_files_raise_one_line_naming_the_file(tmp_path, text, message) -> None:
    path = tmp_path / "p.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        preset_config(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_compare_config_accepts_a_preset_file(tmp_path, small_calibration) -> None:
    from driftrec.experiments.compare import CompareConfig

    out = tmp_path / "shop.yaml"
    write_calibration(small_calibration, out, "my-shop", "x.csv")
    cfg = CompareConfig.from_dict({"presets": f"default,{out}"})
    assert cfg.presets == ("default", str(out))
    with pytest.raises(ConfigError, match="does not exist"):
        CompareConfig.from_dict({"presets": str(tmp_path / "missing.yaml")})


def test_compare_refuses_to_resume_a_run_whose_preset_file_changed(tmp_path) -> None:
    from driftrec.experiments.compare import CompareConfig, prepare_run

    preset = tmp_path / "shop.yaml"
    preset.write_text(yaml.safe_dump({"name": "shop", "overrides": {"n_items": 50}}))
    cfg = CompareConfig.from_dict({"presets": str(preset)})
    run = tmp_path / "run"
    prepare_run(run, cfg, "quick")
    prepare_run(run, cfg, "quick")  # unchanged: resumes
    preset.write_text(yaml.safe_dump({"name": "shop", "overrides": {"n_items": 60}}))
    with pytest.raises(ConfigError, match="preset file .* with other contents"):
        prepare_run(run, cfg, "quick")


# ------------------------------------------------------------------------------------- CLI
def test_cli_calibrates_a_log_and_simulate_accepts_the_preset(tmp_path, capsys) -> None:
    from driftrec.envs.events import EventWriter

    logs = tmp_path / "logs.parquet"
    cfg = preset_config("default", {"horizon_days": 4})
    with EventWriter(logs, cfg) as writer:
        import pyarrow as pa

        writer.write(pa.Table.from_pandas(simulate_log(cfg, 30, seed=5), schema=EVENT_SCHEMA, preserve_index=False))
    out = tmp_path / "fitted.yaml"
    assert main(["calibrate", "--logs", str(logs), "--out", str(out), "--users", "30", "--groups", "1",
                 "--rounds", "2"]) == 0
    printed = capsys.readouterr()
    assert "| click-through" in printed.out and "calibrate: round 2/2" in printed.err
    assert load_preset_file(out).name == "fitted"
    sim_out = tmp_path / "sim.parquet"
    assert main(["simulate", "--preset", str(out), "--users", "3", "--days", "1", "--out", str(sim_out)]) == 0
    assert sim_out.is_file()


@pytest.mark.parametrize("argv, message", [
    (["--logs", "{tmp}/missing.csv"], "log file '{tmp}/missing.csv' does not exist"),
    (["--logs", "{tmp}/x.csv", "--base", "nope"], "unknown base preset 'nope'"),
    (["--logs", "{tmp}/x.csv", "--set", "n_itemz=3"], "unknown config key 'n_itemz'"),
    (["--logs", "{tmp}/x.csv", "--budget", "0"], "--budget must be a positive"),
])
def test_cli_mistakes_are_one_line_errors(tmp_path, capsys, argv, message) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["calibrate", *argv, "--out", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("driftrec: error: ") and err.count("\n") == 1
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert not (tmp_path / "p.yaml").exists()


def test_simulate_with_a_bad_preset_file_is_a_one_line_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbase: nope\n")
    assert main(["simulate", "--preset", str(bad), "--users", "1", "--out", str(tmp_path / "o.parquet")]) == 2
    err = capsys.readouterr().err
    assert f"preset file '{bad}': unknown base preset 'nope'" in err and err.count("\n") == 1
