"""Figures of ``driftrec compare``: each writes a valid PNG atomically for one and several presets,
empty or NaN tables write nothing, the calendar's events are the world's, colours are stable, and
the interest traces hold still without drift, move with it, sum to 1 and are reproducible."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy.special import softmax

from driftrec.agents.registry import make_policy
from driftrec.envs.presets import preset_config
from driftrec.envs.rng import user_keys
from driftrec.envs.user_model import build_user_model
from driftrec.envs.world import build_world
from driftrec.experiments import figures
from driftrec.experiments.figures import (
    POLICY_COLORS,
    TRACE_COLUMNS,
    calendar_events,
    interest_trajectories,
    learning_curves,
    policy_colors,
    reward_bars,
    reward_by_day,
    trace_interests,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAMILY = {"oracle-greedy": "reference", "random": "reference", "gru": "supervised", "ppo": "rl", "dqn": "rl"}
SHORT = {"horizon_days": 8.0}  # short lives keep the traces fast


def assert_png(path: Path | None, expected: Path) -> tuple[int, int]:
    """``path`` is ``expected``, a PNG with a sensible size and no leftover temp file beside it."""
    assert path == expected
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    height, width = image.shape[:2]
    assert 200 <= height <= 4000 and 300 <= width <= 5000, image.shape
    assert image.std() > 0.01  # something was drawn, not a blank canvas
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # atomic: no temp file left
    return height, width


# ------------------------------------------------------------------------------------- tables
def curves_table(presets: list[str], seeds: list[int], policies: tuple[str, ...] = ("ppo", "dqn")) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [(preset, seed, policy, steps, steps / 1000 + rng.random())
            for preset in presets for seed in seeds for policy in policies for steps in range(0, 5001, 1000)]
    return pd.DataFrame(rows, columns=["preset", "seed", "policy", "timesteps", "reward"])


def daily_table(presets: list[str], seeds: list[int], days: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = [(preset, seed, policy, family, day, 3.0 - i * 0.5 + 0.2 * rng.random())
            for preset in presets for seed in seeds for i, (policy, family) in enumerate(FAMILY.items())
            for day in range(days)]
    return pd.DataFrame(rows, columns=["preset", "seed", "policy", "family", "day", "reward"])


def agg_table(presets: list[str]) -> pd.DataFrame:
    rows = [(preset, policy, family, 5.0 - i, 4.5 - i, 5.5 - i)
            for preset in presets for i, (policy, family) in enumerate(FAMILY.items())]
    return pd.DataFrame(rows, columns=["preset", "policy", "family", "reward", "reward_low", "reward_high"])


# ------------------------------------------------------------------------------------- figures
@pytest.mark.parametrize(("presets", "seeds"), [(["default"], [0]), (["default", "gradual", "seasonal", "bubble"],
                                                                     [0, 1, 2])])
def test_learning_curves_png(tmp_path: Path, presets: list[str], seeds: list[int]) -> None:
    out = tmp_path / "learning_curves.png"
    height, width = assert_png(learning_curves(curves_table(presets, seeds), out), out)
    if len(presets) > 3:  # a second row of panels
        assert height > 600


def test_learning_curves_empty_or_nan_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "lc.png"
    assert learning_curves(curves_table([], []), out) is None
    nan = curves_table(["default"], [0]).assign(reward=np.nan)
    assert learning_curves(nan, out) is None
    assert not out.exists()
    partial = curves_table(["default"], [0, 1])
    partial.loc[::3, "reward"] = np.nan  # some NaN rows: drawn without them
    assert_png(learning_curves(partial, out), out)


def test_missing_column_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="curves table has no column 'timesteps'"):
        learning_curves(curves_table(["default"], [0]).drop(columns="timesteps"), tmp_path / "x.png")
    with pytest.raises(ValueError, match="agg table has no column 'reward_high'"):
        reward_bars(agg_table(["default"]).drop(columns="reward_high"), tmp_path / "x.png")


@pytest.mark.parametrize("presets", [["seasonal"], ["seasonal", "stationary", "recsim-ie"]])
def test_reward_by_day_png(tmp_path: Path, presets: list[str]) -> None:
    events = {p: calendar_events(preset_config(p), weekends=True) for p in presets}
    events["seasonal"] = [*events["seasonal"], (40, 45, "promotion c1")]  # past the table's days: skipped
    out = tmp_path / "reward_by_day.png"
    assert_png(reward_by_day(daily_table(presets, [0, 1]), events, out), out)


def test_reward_by_day_without_events_and_empty(tmp_path: Path) -> None:
    out = tmp_path / "rbd.png"
    assert reward_by_day(daily_table([], []), {}, out) is None
    assert reward_by_day(daily_table(["default"], [0]).assign(reward=np.nan), None, out) is None
    assert not out.exists()
    assert_png(reward_by_day(daily_table(["default"], [0]), None, out), out)


@pytest.mark.parametrize("presets", [["default"], ["default", "gradual", "migration", "seasonal"]])
def test_reward_bars_png(tmp_path: Path, presets: list[str]) -> None:
    agg = agg_table(presets)
    agg.loc[0, "reward_low"] = np.nan  # a CI bound NaN: that bar has no error bar
    agg.loc[1, "reward"] = np.nan  # a NaN reward: that bar is left out
    out = tmp_path / "bars.png"
    assert_png(reward_bars(agg, out), out)


def test_reward_bars_empty_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bars.png"
    assert reward_bars(agg_table([]), out) is None
    assert reward_bars(agg_table(["default"]).assign(reward=np.nan), out) is None
    assert not out.exists()


def test_overwrite_replaces_file_and_colors_override(tmp_path: Path) -> None:
    out = tmp_path / "bars.png"
    out.write_bytes(b"stale")
    assert_png(reward_bars(agg_table(["default"]), out), out)
    default = imread(out)
    assert_png(reward_bars(agg_table(["default"]), out, colors={"gru": "#ff00ff"}), out)  # others keep theirs
    recoloured = imread(out)
    assert default.shape == recoloured.shape and not np.array_equal(default, recoloured)
    magenta = np.all(np.abs(recoloured[..., :3] - [1.0, 0.0, 1.0]) < 0.2, axis=-1)
    assert magenta.sum() > 100 and not np.all(np.abs(default[..., :3] - [1.0, 0.0, 1.0]) < 0.2, axis=-1).any()


def test_figures_module_does_not_import_pyplot() -> None:
    """pyplot's global state (backend, figure registry) must play no part in the figures."""
    code = "import sys, driftrec.experiments.figures; assert 'matplotlib.pyplot' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------------------------- colours
def test_policy_colors_stable_and_distinct() -> None:
    assert policy_colors(["ppo", "random"]) == {"ppo": POLICY_COLORS["ppo"], "random": POLICY_COLORS["random"]}
    assert len(set(POLICY_COLORS.values())) == len(POLICY_COLORS)
    names = [f"my-agent-{i}" for i in range(12)]
    colors = policy_colors([*names, "ppo"])
    assert len(set(colors.values())) == 13  # one colour each within a figure
    assert colors == policy_colors(list(reversed([*names, "ppo"])))  # independent of the order given
    assert policy_colors(["my-agent-3"])["my-agent-3"] == policy_colors(["my-agent-3", "dqn"])["my-agent-3"]


# ------------------------------------------------------------------------------------- calendar
def test_calendar_events_are_the_worlds_promotions_and_holidays() -> None:
    cfg = preset_config("seasonal")
    spans = calendar_events(cfg)
    assert spans == sorted(spans)
    expected = {(e.start_day, e.end_day, e.kind, e.category) for e in build_world(cfg).events if e.kind != "weekend"}
    assert expected, "the seasonal preset's calendar has promotions and holidays"
    got = {(start, end, label.split(" ")[0], int(c[1:]))
           for start, end, label in spans for c in label.split(" ")[1].split(",")}
    assert got == expected
    weekends = [s for s in calendar_events(cfg, weekends=True) if s[2].startswith("weekend")]
    assert weekends and all(end - start == 2 and start % 7 == 5 for start, end, _ in weekends)


def test_calendar_events_none_without_seasonal_drift_or_calendar() -> None:
    assert calendar_events(preset_config("seasonal", {"drift_seasonal": 0.0})) == []
    assert calendar_events(preset_config("stationary"), weekends=True) == []
    assert calendar_events(preset_config("recsim-ie")) == []


# ------------------------------------------------------------------------------------- interests
def trace(preset: str, overrides: dict | None = None, seeds: tuple[int, ...] = (3, 4, 5, 6), policy: str = "random",
          **kwargs: object) -> pd.DataFrame:
    user_model = build_user_model(preset_config(preset, {**SHORT, **(overrides or {})}))
    return trace_interests(user_model, make_policy(policy, user_model, len(seeds), 7), list(seeds), **kwargs)


def movement(traj: pd.DataFrame) -> pd.Series:
    """Per user: the largest range any category's share spans over the life."""
    spread = traj.groupby(["user_id", "category"])["share"].agg(lambda s: s.max() - s.min())
    return spread.groupby("user_id").max()


def test_trace_shape_and_shares_sum_to_one() -> None:
    traj = trace("default")
    assert tuple(traj.columns) == TRACE_COLUMNS
    assert list(traj["user_id"].drop_duplicates()) == [3, 4, 5, 6]
    sums = traj.groupby(["user_id", "step"])["share"].sum()
    np.testing.assert_allclose(sums, 1.0, atol=1e-12)
    assert (traj["share"] >= 0).all()
    assert (traj.groupby(["user_id", "step"]).size() == 10).all()  # every category at every step
    for _, user in traj.groupby("user_id"):
        steps = user["step"].drop_duplicates().to_numpy()
        np.testing.assert_array_equal(steps, np.arange(len(steps)))
        assert np.all(np.diff(user.groupby("step")["time"].first().to_numpy()) >= 0)  # time never goes back


def test_trace_at_birth_is_softmax_of_interest_over_centroids() -> None:
    cfg = preset_config("default", SHORT)
    user_model = build_user_model(cfg)
    state = user_model.init(user_keys(np.array([3, 4])), np.zeros(2, dtype=np.int64))
    expected = softmax(cfg.interest_scale * state.interest @ user_model.world.centroid.T, axis=1)
    traj = trace_interests(user_model, make_policy("random", user_model, 2, 0), [3, 4], max_steps=0)
    np.testing.assert_allclose(traj["share"].to_numpy().reshape(2, -1), expected, rtol=1e-12)
    flat = trace_interests(user_model, make_policy("random", user_model, 2, 0), [3, 4], max_steps=0, scale=0.0)
    np.testing.assert_allclose(flat["share"], 0.1, rtol=1e-12)  # scale 0: no preference, 10 categories


def test_shares_constant_without_drift() -> None:
    """Every drift knob at 0: interest never moves. Calendar boosts and boredom change utility, not
    interest, so they leave the shares still too."""
    for overrides in ({}, {"drift_seasonal": 2.0, "drift_fatigue": 1.0}):
        traj = trace("stationary", overrides)
        assert traj["step"].max() > 10  # the users did live a while
        assert movement(traj).max() <= 1e-12


@pytest.mark.parametrize(("preset", "overrides"), [("gradual", {"drift_gradual": 1.0}),
                                                   ("migration", {"drift_migration": 1.0}),
                                                   ("bubble", {"drift_bubble": 0.3})])
def test_shares_move_with_drift(preset: str, overrides: dict) -> None:
    moved = movement(trace(preset, overrides))
    assert moved.max() > 0.1, moved
    assert (moved > 1e-3).sum() >= 2, moved


def test_trace_deterministic_and_independent_of_batch() -> None:
    first = trace("default", policy="oracle-greedy")
    pd.testing.assert_frame_equal(first, trace("default", policy="oracle-greedy"))
    alone = trace("default", seeds=(5,), policy="oracle-greedy")
    pd.testing.assert_frame_equal(first[first["user_id"] == 5].reset_index(drop=True), alone)


def test_trace_max_steps_and_empty() -> None:
    traj = trace("default", max_steps=3)
    assert traj["step"].max() == 3
    empty = trace("default", seeds=())
    assert empty.empty and tuple(empty.columns) == TRACE_COLUMNS
    with pytest.raises(ValueError, match="max_steps"):
        trace("default", max_steps=-1)


def test_trace_recsim_ie() -> None:
    traj = trace("recsim-ie", {"horizon_days": 30.0})
    np.testing.assert_allclose(traj.groupby(["user_id", "step"])["share"].sum(), 1.0, atol=1e-12)
    assert (traj.groupby(["user_id", "step"]).size() == 20).all()
    assert movement(traj).max() > 1e-3  # clicks nudge the interest
    user_model = build_user_model(preset_config("recsim-ie"))
    state = user_model.init(user_keys(np.array([3])), np.zeros(1, dtype=np.int64))
    birth = traj[(traj["user_id"] == 3) & (traj["step"] == 0)]["share"].to_numpy()
    np.testing.assert_allclose(birth, (state.interest[0] + 1) / (state.interest[0] + 1).sum(), rtol=1e-12)


def test_trace_unknown_model_is_clear_error() -> None:
    class Stub:
        cfg = preset_config("default")
        world = object()

    state = type("S", (), {"interest": np.zeros((1, 3))})()
    with pytest.raises(TypeError, match="ShopModel or a RecSimIEModel, got Stub"):
        figures.interest_shares(Stub(), state)


def test_interest_trajectories_png(tmp_path: Path) -> None:
    out = tmp_path / "interest.png"
    assert_png(interest_trajectories(trace("gradual", {"drift_gradual": 1.0}), out), out)
    single = tmp_path / "single" / "interest.png"  # one user, no step column, a missing folder
    one = trace("recsim-ie", seeds=(9,)).drop(columns="step")
    assert_png(interest_trajectories(one, single), single)


def test_interest_trajectories_empty_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "interest.png"
    assert interest_trajectories(trace("default", seeds=()), out) is None
    assert interest_trajectories(trace("default", seeds=(3,), max_steps=2).assign(share=np.nan), out) is None
    assert not out.exists()
