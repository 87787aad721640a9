"""The event log: schema, reward accounting, row rules, ordering, determinism and safe files; the users
table beside it (demographics)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftrec.agents.policies import RandomPolicy
from driftrec.envs.events import (
    BEHAVIOUR_NAMES,
    DEMOGRAPHICS,
    EPOCH,
    EVENT_SCHEMA,
    USER_SCHEMA,
    EventLogError,
    EventRecorder,
    EventWriter,
    load_events,
    load_users,
    simulated_users,
    users_path,
)
from driftrec.envs.presets import preset_config
from driftrec.envs.rng import user_keys
from driftrec.envs.user_model import build_user_model

N_USERS = 24
# cart and revenue rewards on, so every branch of the reward split is exercised
# a short life in which clicks, carts and purchases are frequent (the defaults' realistic volumes
# give a few users of two days a handful of clicks), so every behaviour reaches the log
SHOP = {"horizon_days": 10.0, "reward_cart": 0.5, "reward_revenue": 0.02, "no_click_utility": 1.0,
        "cart_bias": 0.0, "purchase_bias": 1.0}


@dataclasses.dataclass
class Run:
    table: pa.Table
    reward: np.ndarray  # (N,) total reward the model's steps returned per user (done users excluded)
    shown: np.ndarray  # (N,) shown slate positions per user
    clicks: np.ndarray  # (N,) clicks per user
    requests: np.ndarray  # (N,) recorded steps per user
    propensity: list[np.ndarray]  # per step, the (N, K) propensities given to record


def simulate(preset: str = "default", seed: int = 0, overrides: dict | None = None, n: int = N_USERS) -> Run:
    """Every user lives once; done users stay in the batch but are recorded as inactive."""
    cfg = preset_config(preset, SHOP if overrides is None else overrides)
    user_model = build_user_model(cfg)
    policy = RandomPolicy(user_model.action_space, n, seed)
    state = user_model.init(user_keys(seed + np.arange(n)), np.zeros(n, dtype=np.int64))
    recorder = EventRecorder(user_model)
    active = np.ones(n, dtype=bool)
    reward, shown, clicks, requests = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, np.int64), np.zeros(n)
    props = []
    while active.any():
        actions, prop = policy.act(user_model.observe(state))
        state, out = user_model.step(state, actions, inplace=True)
        recorder.record(out, seed + np.arange(n), prop, active)
        reward += np.where(active, out.reward, 0.0)
        shown += (out.shown & active[:, None]).sum(axis=1)
        clicks += active & (out.click_pos >= 0)
        requests += active
        props.append(prop.reshape(n, -1))
        active &= ~(out.terminated | out.truncated)
    return Run(recorder.to_table(), reward, shown, clicks, requests, props)


@pytest.fixture(scope="module")
def shop_run() -> Run:
    return simulate()


@pytest.fixture(scope="module")
def shop_frame(shop_run: Run) -> pd.DataFrame:
    return shop_run.table.to_pandas()


def per_user(frame: pd.DataFrame, mask: pd.Series | None = None, column: str = "user_id",
             agg: str = "size") -> np.ndarray:
    rows = frame if mask is None else frame[mask]
    grouped = rows.groupby("user_id")[column]
    values = grouped.size() if agg == "size" else grouped.agg(agg)
    return values.reindex(np.arange(N_USERS), fill_value=0).to_numpy()


def test_recorded_table_has_the_event_schema(shop_run: Run) -> None:
    assert shop_run.table.schema.equals(EVENT_SCHEMA)
    assert shop_run.table.num_rows > 500
    assert [str(f.type) for f in EVENT_SCHEMA] == ["int64", "int64", "timestamp[ms]", "int64", "int32", "int16",
                                                   "string", "double", "double", "double"]
    assert set(shop_run.table.column("behaviour").to_pylist()) == set(BEHAVIOUR_NAMES)


def test_reward_column_sums_to_the_step_rewards_per_user(shop_run: Run, shop_frame: pd.DataFrame) -> None:
    np.testing.assert_allclose(per_user(shop_frame, column="reward", agg="sum"), shop_run.reward,
                               rtol=1e-12, atol=1e-9)
    assert shop_run.reward.sum() > 0


def test_reward_split_by_behaviour(shop_frame: pd.DataFrame) -> None:
    cfg = preset_config("default", SHOP)
    by = shop_frame.groupby("behaviour")
    np.testing.assert_array_equal(by.get_group("click").reward, cfg.reward_click)
    np.testing.assert_array_equal(by.get_group("cart").reward, cfg.reward_cart)
    buy = by.get_group("purchase")
    np.testing.assert_allclose(buy.reward, cfg.reward_purchase + cfg.reward_revenue * buy.price, rtol=1e-12)
    for name in ("impression", "search", "view"):
        assert (by.get_group(name).reward == 0.0).all(), name


def test_impressions_are_the_shown_positions(shop_run: Run, shop_frame: pd.DataFrame) -> None:
    imp = shop_frame.behaviour == "impression"
    np.testing.assert_array_equal(per_user(shop_frame, imp), shop_run.shown)
    np.testing.assert_array_equal(per_user(shop_frame, shop_frame.behaviour == "click"), shop_run.clicks)
    assert (shop_frame.position[imp] == 0).all()  # slate of one


def test_rows_follow_the_column_rules(shop_frame: pd.DataFrame) -> None:
    world = build_user_model(preset_config("default", SHOP)).world
    search = shop_frame[shop_frame.behaviour == "search"]
    assert len(search) > 0
    assert (search.item_id == -1).all() and (search.position == -1).all()
    assert search.price.isna().all() and search.propensity.isna().all()
    items = shop_frame[shop_frame.behaviour != "search"]
    np.testing.assert_array_equal(items.category, world.category[items.item_id])
    np.testing.assert_array_equal(items.price, world.price[items.item_id])
    view = shop_frame[shop_frame.behaviour == "view"]
    assert (view.position == -1).all() and view.propensity.isna().all()
    slate = shop_frame[shop_frame.behaviour.isin(["impression", "click", "cart", "purchase"])]
    np.testing.assert_allclose(slate.propensity, 1.0 / world.category.size, rtol=1e-12)  # uniform over items


def test_rows_are_sorted_by_user_then_time_then_step_order(shop_frame: pd.DataFrame) -> None:
    assert shop_frame.user_id.is_monotonic_increasing
    for _, user in shop_frame.groupby("user_id"):
        assert user.timestamp.is_monotonic_increasing
        assert user.session_id.is_monotonic_increasing
    assert shop_frame.timestamp.min() == pd.Timestamp(EPOCH)
    # a click, cart or purchase comes right after the impression (slate of one) or funnel step before it
    prev = shop_frame.behaviour.shift()
    expect = {"click": "impression", "cart": "click", "purchase": "cart"}
    for name, before in expect.items():
        assert (prev[shop_frame.behaviour == name] == before).all(), name
    assert (prev[shop_frame.behaviour == "view"] == "search").all()


def test_slate_propensities_are_the_recorded_ones() -> None:
    # a tiny catalog, so that the random policy repeats items within a slate
    run = simulate(overrides={**SHOP, "slate_size": 3, "n_items": 4, "n_categories": 2}, n=8)
    frame = run.table.to_pandas()
    imp = frame[frame.behaviour == "impression"]
    assert set(imp.position) == {0, 1, 2}
    np.testing.assert_allclose(imp.propensity, 1.0 / 4, rtol=1e-12)
    # a repeated item is shown once: fewer impressions than slate positions
    assert len(imp) == run.shown.sum() < 3 * run.requests.sum()


def test_same_seed_same_table_other_seed_differs() -> None:
    a, b, c = (simulate(seed=s).table.to_pandas() for s in (3, 3, 4))
    assert a.equals(b)  # DataFrame.equals: NaN equals NaN in the same place
    assert not a.equals(c)


def test_recsim_ie_click_row_carries_the_watch_time() -> None:
    run = simulate("recsim-ie", overrides={"recsim_budget": 30.0}, n=6)
    frame = run.table.to_pandas()
    assert set(frame.behaviour) == {"impression", "click"}
    np.testing.assert_allclose(frame.groupby("user_id").reward.sum().reindex(range(6), fill_value=0), run.reward,
                               rtol=1e-12)
    clicks = frame[frame.behaviour == "click"]
    assert (clicks.reward > 0).all() and (clicks.reward <= 4.0).all()  # watch = min(budget, 4 minutes)


def test_write_parquet_is_atomic_and_round_trips(shop_run: Run, tmp_path) -> None:
    recorder = EventRecorder(build_user_model(preset_config("default", SHOP)))
    path = tmp_path / "events.parquet"
    recorder.write_parquet(path)  # empty log: a valid file with the schema
    assert len(load_events(path)) == 0
    with EventWriter(path) as writer:
        writer.write(shop_run.table)
    assert [p.name for p in tmp_path.iterdir()] == ["events.parquet"]
    frame = load_events(path)
    pd.testing.assert_frame_equal(frame, shop_run.table.to_pandas())


def test_a_crash_while_writing_leaves_the_old_file_and_no_temp(shop_run: Run, tmp_path) -> None:
    path = tmp_path / "events.parquet"
    pq.write_table(shop_run.table.slice(0, 10), path)
    with pytest.raises(RuntimeError, match="boom"), EventWriter(path) as writer:
        writer.write(shop_run.table)
        raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["events.parquet"]
    assert pq.read_table(path).num_rows == 10
    # the final move fails (a folder is in the way): the temp file goes too
    folder = tmp_path / "taken"
    (folder / "inside").mkdir(parents=True)
    with pytest.raises(OSError), EventWriter(folder) as writer:
        writer.write(shop_run.table)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.parquet", "taken"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.drop_columns(["reward"]), "missing column 'reward'"),
    (lambda t: t.set_column(t.schema.get_field_index("position"), "position", t.column("position").cast(pa.int64())),
     "column 'position' must be int16, got int64"),
])
def test_load_events_rejects_a_bad_schema_naming_the_column(shop_run: Run, tmp_path, change, message) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(change(shop_run.table), path)
    with pytest.raises(EventLogError, match=message) as err:
        load_events(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_load_events_rejects_unknown_behaviour_and_missing_file(shop_run: Run, tmp_path) -> None:
    table = shop_run.table.slice(0, 5)
    names = table.column("behaviour").to_pylist()
    names[3] = "wishlist"
    path = tmp_path / "odd.parquet"
    pq.write_table(table.set_column(6, "behaviour", pa.array(names, pa.string())), path)
    with pytest.raises(EventLogError, match="row 3 has behaviour 'wishlist'"):
        load_events(path)
    with pytest.raises(EventLogError, match="no such file"):
        load_events(tmp_path / "nope.parquet")


# ------------------------------------------------------------------------------------- the users table
def test_users_table_holds_each_users_demographics(shop_run: Run) -> None:
    """One row per recorded user with the buckets of the observation's one-hot demographics part:
    what the shop knows of the users of a simulated log (their ids are their seeds)."""
    user_model = build_user_model(preset_config("default", SHOP))
    recorder = EventRecorder(user_model)
    seeds = np.arange(N_USERS)
    state = user_model.init(user_keys(seeds), np.zeros(N_USERS, dtype=np.int64))
    policy = RandomPolicy(user_model.action_space, N_USERS, 0)
    for _ in range(3):
        actions, prop = policy.act(user_model.observe(state))
        state, out = user_model.step(state, actions, inplace=True)
        recorder.record(out, seeds, prop)
    users = recorder.users_table()
    assert users.schema.equals(USER_SCHEMA)
    frame = users.to_pandas()
    np.testing.assert_array_equal(frame["user_id"], seeds)
    demo = user_model.observe(state)[:, user_model.layout["demographics"]]
    start = 0
    for name, width in DEMOGRAPHICS:
        np.testing.assert_array_equal(frame[name], demo[:, start:start + width].argmax(axis=1))
        start += width
    assert frame[["age", "gender", "income"]].nunique().min() > 1  # the users differ: not a constant
    # the same table from the ids alone, and none for a user model without demographics
    assert simulated_users(user_model, seeds[::-1]).equals(users)
    assert simulated_users(build_user_model(preset_config("recsim-ie")), seeds).num_rows == 0


def test_users_table_is_written_beside_the_log_and_read_back(shop_run: Run, tmp_path) -> None:
    user_model = build_user_model(preset_config("default", SHOP))
    path = tmp_path / "events.parquet"
    users = simulated_users(user_model, np.unique(shop_run.table.column("user_id").to_numpy()))
    with EventWriter(path) as writer:
        writer.write(shop_run.table)
        writer.write_users(users.slice(0, 10))
        writer.write_users(users.slice(10))  # appended, as a batched simulation writes it
    assert users_path(path) == tmp_path / "events.users.parquet"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.parquet", "events.users.parquet"]
    pd.testing.assert_frame_equal(load_users(path), users.to_pandas())
    # a log rewritten without users drops the old table (no log is paired with other users'),
    # and a log without one has unknown demographics: None
    with EventWriter(path) as writer:
        writer.write(shop_run.table)
    assert [p.name for p in tmp_path.iterdir()] == ["events.parquet"]
    assert load_users(path) is None
    # a crash leaves neither file
    with pytest.raises(RuntimeError, match="boom"), EventWriter(tmp_path / "other.parquet") as writer:
        writer.write_users(users)
        raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["events.parquet"]
    with EventWriter(path) as writer, pytest.raises(ValueError, match="users table must have the schema"):
        writer.write_users(shop_run.table)


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.drop_columns(["income"]), "missing column 'income'"),
    (lambda t: t.set_column(1, "age", t.column("age").cast(pa.int64())), "column 'age' must be int8"),
    (lambda t: t.set_column(1, "age", pa.array(np.r_[4, t.column("age").to_numpy()[1:]], pa.int8())),
     "row 0 has age 4; expected a bucket in \\[0, 4\\) or -1"),
    (lambda t: pa.concat_tables([t, t.slice(2, 1)]), "repeats user_id"),
])
def test_load_users_rejects_a_bad_table_naming_the_column(tmp_path, change, message) -> None:
    user_model = build_user_model(preset_config("default", SHOP))
    path = tmp_path / "events.parquet"
    pq.write_table(change(simulated_users(user_model, np.arange(5))), users_path(path))
    with pytest.raises(EventLogError, match=message) as err:
        load_users(path)
    assert "events.users.parquet" in str(err.value) and "\n" not in str(err.value)
