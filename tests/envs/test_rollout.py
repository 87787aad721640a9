"""The shared rollout loop: per-user sums equal the step rewards and the event log, per-day rewards
add up, users do not depend on their batch, and the policy hooks see what they ask for."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from driftrec.agents.policies import OracleGreedyPolicy, Policy, PopularityPolicy, RandomPolicy
from driftrec.envs.events import EventRecorder, EventWriter, load_events, load_users
from driftrec.envs.rng import user_keys
from driftrec.envs.rollout import (
    BURN_IN_SEED_OFFSET,
    EVAL_SEED_OFFSET,
    UserStats,
    burn_in_seeds,
    eval_seeds,
    horizon_days,
    rollout,
    simulate_log,
    train_seeds,
)
from driftrec.envs.shop import ShopState
from driftrec.envs.user_model import user_model_for

SHORT = {"horizon_days": 3.0}


def fixed_popularity(user_model: Any, top: int = 7) -> PopularityPolicy:
    """A popularity policy ranking item ``top`` first: deterministic and batch-independent."""
    scores = np.zeros(user_model.cfg.n_items)
    scores[top] = 10.0
    scores[(top + 1) % user_model.cfg.n_items] = 5.0
    return PopularityPolicy(user_model).fit_scores(scores)


def reference_rewards(user_model: Any, policy: Policy, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-user reward and requests by the plainest loop: every user stepped until all are done,
    never dropped, each step's reward added while the user is still alive."""
    state = user_model.init(user_keys(seeds), np.zeros(len(seeds), dtype=np.int64))
    alive = np.ones(len(seeds), dtype=bool)
    reward, requests = np.zeros(len(seeds)), np.zeros(len(seeds), dtype=np.int64)
    while alive.any():
        kwargs = {"state": state} if policy.reads_hidden_state else {}
        actions, _ = policy.act(user_model.observe(state), **kwargs)
        state, out = user_model.step(state, actions)
        reward += np.where(alive, out.reward, 0.0)
        requests += alive
        alive &= ~(out.terminated | out.truncated)
    return reward, requests


@pytest.mark.parametrize("preset", ["default", "recsim-ie"])
def test_rollout_sums_equal_step_rewards_and_the_event_log(preset: str) -> None:
    user_model = user_model_for(preset, SHORT)
    seeds = train_seeds(11, 60)
    policy_ref, policy = (OracleGreedyPolicy(user_model), OracleGreedyPolicy(user_model))
    want_reward, want_requests = reference_rewards(user_model, policy_ref, seeds)
    recorder = EventRecorder(user_model)
    stats = rollout(user_model, policy, seeds, recorder=recorder, batch=16)
    np.testing.assert_array_equal(stats.user_id, seeds)
    np.testing.assert_allclose(stats.reward, want_reward, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(stats.requests, want_requests)
    assert want_reward.sum() > 0

    events = recorder.to_table().to_pandas()
    assert set(events["user_id"]) <= set(seeds.tolist())
    by_user = events.groupby("user_id")["reward"].sum().reindex(seeds, fill_value=0.0).to_numpy()
    np.testing.assert_allclose(by_user, stats.reward, rtol=1e-12, atol=1e-9)
    counts = events.groupby(["user_id", "behaviour"]).size().unstack(fill_value=0).reindex(seeds, fill_value=0)
    for behaviour, column in [("impression", "impressions"), ("click", "clicks"), ("cart", "carts"),
                              ("purchase", "purchases")]:
        want = counts[behaviour].to_numpy() if behaviour in counts else np.zeros(len(seeds), dtype=np.int64)
        np.testing.assert_array_equal(getattr(stats, column), want, err_msg=column)
    # revenue is the price of the purchase rows
    bought = events[events["behaviour"] == "purchase"].groupby("user_id")["price"].sum()
    np.testing.assert_allclose(bought.reindex(seeds, fill_value=0.0).to_numpy(), stats.revenue, rtol=1e-12)
    # every impression row is counted in the catalog-wide item impressions
    shown = events[events["behaviour"] == "impression"]["item_id"].to_numpy()
    np.testing.assert_array_equal(np.bincount(shown, minlength=user_model.cfg.n_items), stats.item_impressions)


def test_per_day_rewards_add_up_to_each_users_reward() -> None:
    user_model = user_model_for("default", {"horizon_days": 6.0})
    stats = rollout(user_model, OracleGreedyPolicy(user_model), train_seeds(3, 80))
    assert stats.daily_reward.shape == (80, horizon_days(user_model)) == (80, 6)
    np.testing.assert_allclose(stats.daily_reward.sum(axis=1), stats.reward, rtol=1e-12, atol=1e-9)
    assert (stats.daily_reward[:, 1:].sum(axis=0) > 0).all()  # rewards are spread over the days
    long = stats.daily_frame()
    assert list(long.columns) == ["user_id", "day", "reward"] and len(long) == 80 * 6
    np.testing.assert_allclose(long.groupby("user_id")["reward"].sum().reindex(stats.user_id).to_numpy(),
                               stats.reward, rtol=1e-12, atol=1e-9)


def test_per_day_rewards_match_the_event_timestamps() -> None:
    user_model = user_model_for("default", {"horizon_days": 4.0})
    recorder = EventRecorder(user_model)
    stats = rollout(user_model, fixed_popularity(user_model), train_seeds(0, 40), recorder=recorder)
    events = recorder.to_table().to_pandas()
    day = ((events["timestamp"] - np.datetime64("2026-01-01")) / np.timedelta64(1, "D")).astype(int)
    table = events.assign(day=day).groupby(["user_id", "day"])["reward"].sum().unstack(fill_value=0.0)
    table = table.reindex(index=stats.user_id, columns=range(4), fill_value=0.0)
    # a request's millisecond timestamp can round up across midnight: allow that on a few cells
    off = ~np.isclose(table.to_numpy(), stats.daily_reward, atol=1e-9)
    assert off.mean() < 0.01, off.sum()


def test_users_do_not_depend_on_their_batch() -> None:
    user_model = user_model_for("default", SHORT)
    seeds = eval_seeds(5, 50)
    big = rollout(user_model, OracleGreedyPolicy(user_model), seeds, batch=4096)
    small = rollout(user_model, OracleGreedyPolicy(user_model), seeds, batch=7)
    for name in UserStats.PER_USER:
        np.testing.assert_array_equal(getattr(big, name), getattr(small, name), err_msg=name)
    np.testing.assert_array_equal(big.daily_reward, small.daily_reward)
    np.testing.assert_array_equal(big.item_impressions, small.item_impressions)
    # and a user alone lives the same life
    alone = rollout(user_model, OracleGreedyPolicy(user_model), seeds[17:18])
    assert alone.reward[0] == big.reward[17] and alone.requests[0] == big.requests[17]


def test_outcome_counts_are_consistent() -> None:
    user_model = user_model_for("default", SHORT)
    stats = rollout(user_model, RandomPolicy(user_model.action_space, 300, seed=1), train_seeds(0, 300))
    assert (stats.requests >= 1).all() and (stats.impressions == stats.requests).all()  # K = 1: one per request
    assert (stats.clicks <= stats.requests).all() and (stats.carts <= stats.clicks).all()
    assert (stats.purchases <= stats.carts).all()
    assert (stats.sessions >= 1).all() and (stats.sessions <= stats.requests).all()
    assert (stats.categories >= 1).all() and (stats.categories <= user_model.cfg.n_categories).all()
    assert 0 < stats.churned.mean() < 1
    assert (stats.watch == 0).all()
    np.testing.assert_allclose(stats.reward, stats.clicks * 1.0 + stats.purchases * 5.0)  # default weights
    assert stats.item_impressions.sum() == stats.impressions.sum()
    frame = stats.to_frame()
    assert list(frame.columns) == list(UserStats.PER_USER) and len(frame) == 300


def test_recsim_ie_counts_watch_time() -> None:
    user_model = user_model_for("recsim-ie")
    stats = rollout(user_model, RandomPolicy(user_model.action_space, 30, seed=0), train_seeds(0, 30))
    np.testing.assert_allclose(stats.watch, stats.reward)
    assert (stats.sessions == 1).all() and stats.churned.all()  # the budget always runs out
    assert (stats.impressions <= 2 * stats.requests).all() and stats.impressions.sum() > 1.9 * stats.requests.sum()


class SpyPolicy(Policy):
    """Records what the rollout passes; keeps per-user memory (the demographics it first saw)."""

    def __init__(self, user_model: Any, reads: bool, masks: bool):
        self.user_model = user_model
        self.reads_hidden_state, self.uses_mask = reads, masks
        self.resets: list[int] = []
        self.kept: list[np.ndarray] = []
        self.calls = 0
        self.memory: np.ndarray | None = None

    def reset(self, n_users: int) -> None:
        self.resets.append(n_users)
        self.memory = None

    def keep_rows(self, rows: np.ndarray) -> None:
        self.kept.append(rows)
        assert self.memory is not None
        self.memory = self.memory[rows]

    def act(self, obs: Any, mask: np.ndarray | None = None, *,
            state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        self.calls += 1
        assert (state is not None) == self.reads_hidden_state
        assert (mask is not None) == self.uses_mask
        if state is not None:
            assert isinstance(state, ShopState) and len(state.t) == len(obs)
        if mask is not None:
            assert mask.shape == (len(obs), self.user_model.cfg.n_items) and mask.all()
        demo = obs[:, self.user_model.layout["demographics"]]
        if self.memory is None:
            self.memory = demo.copy()
        np.testing.assert_array_equal(self.memory, demo)  # memory rows stay aligned with the users
        return np.zeros(len(obs), dtype=np.int64), None


@pytest.mark.parametrize(("reads", "masks"), [(False, False), (True, False), (False, True), (True, True)])
def test_rollout_passes_state_and_mask_only_when_asked(reads: bool, masks: bool) -> None:
    user_model = user_model_for("stationary", SHORT)
    spy = SpyPolicy(user_model, reads, masks)
    done: list[int] = []
    stats = rollout(user_model, spy, train_seeds(0, 25), batch=10, on_done=done.append)
    assert spy.resets == [10, 10, 5]  # one reset per group of users
    assert spy.kept and all(np.all(np.diff(rows) > 0) for rows in spy.kept)
    assert sum(done) == 25 and len(stats) == 25
    assert spy.calls >= stats.requests.max()


class OnlineLearner(RandomPolicy):
    """A random policy that keeps every event the rollout hands to ``update``."""

    learns_online = True

    def __init__(self, user_model: Any):
        super().__init__(user_model.action_space, 0, seed=3)
        self.received: list[Any] = []

    def update(self, events: Any) -> None:
        self.received.append(events)


@pytest.mark.parametrize("learns", [False, True])
def test_a_learning_policy_gets_every_event_once_in_order(learns: bool) -> None:
    user_model = user_model_for("default", SHORT)
    policy = OnlineLearner(user_model)
    policy.learns_online = learns
    recorder = EventRecorder(user_model)
    rollout(user_model, policy, train_seeds(0, 30), batch=12, recorder=recorder, update_every=5)
    if not learns:
        assert policy.received == []
        return
    logged = recorder.to_table().to_pandas()
    assert len(policy.received) > 3  # handed over as it goes, not once at the end
    fed = pd.concat(policy.received, ignore_index=True)
    # each event once (the recorder sorts each table by user, so compare sorted copies)
    key = list(logged.columns)
    pd.testing.assert_frame_equal(fed.sort_values(key, ignore_index=True), logged.sort_values(key, ignore_index=True))
    first_times = [batch["timestamp"].min() for batch in policy.received]
    assert first_times[1] > first_times[0]  # ... and in the order it happened


def test_empty_seeds_give_empty_stats() -> None:
    user_model = user_model_for("stationary", SHORT)
    stats = rollout(user_model, RandomPolicy(user_model.action_space, 0, seed=0), [])
    assert len(stats) == 0 and stats.daily_reward.shape == (0, 3) and stats.item_impressions.sum() == 0
    with pytest.raises(ValueError, match="batch and update_every must be >= 1"):
        rollout(user_model, RandomPolicy(user_model.action_space, 1, seed=0), [1], batch=0)


def test_seed_roles_never_overlap() -> None:
    train, evaluation, burn = train_seeds(7, 1000), eval_seeds(7, 1000), burn_in_seeds(7, 1000)
    assert train[0] == 7 and evaluation[0] == 7 + EVAL_SEED_OFFSET and burn[0] == 7 + BURN_IN_SEED_OFFSET
    assert not (set(train) & set(evaluation)) and not (set(train) & set(burn)) and not (set(evaluation) & set(burn))
    # different run seeds: still disjoint across roles
    assert not set(train_seeds(1, 10**4)) & set(eval_seeds(2, 10**4))
    assert eval_seeds(0, 3).dtype == np.int64
    with pytest.raises(ValueError, match="n_users"):
        eval_seeds(0, -1)


def test_simulate_log_streamed_in_groups_equals_one_recorder(tmp_path: Any) -> None:
    """simulate_log's events and users, written group by group, are one recorder's over all the users."""
    user_model = user_model_for("default", SHORT)
    seeds = train_seeds(5, 23)
    recorder = EventRecorder(user_model)
    want = rollout(user_model, RandomPolicy(user_model.action_space, 23, seed=2), seeds, recorder=recorder, batch=8)
    kept = simulate_log(user_model, RandomPolicy(user_model.action_space, 23, seed=2), seeds, batch=8)
    pd.testing.assert_frame_equal(kept.events.to_pandas(), recorder.to_table().to_pandas())  # NaN == NaN here
    assert kept.n_events == recorder.n_events
    np.testing.assert_array_equal(kept.stats.reward, want.reward)
    path = tmp_path / "log.parquet"
    done = []
    with EventWriter(path) as writer:
        policy = RandomPolicy(user_model.action_space, 23, seed=2)
        streamed = simulate_log(user_model, policy, seeds, writer=writer, batch=8, on_done=done.append)
    assert streamed.events is None and streamed.n_events == writer.n_events == recorder.n_events
    assert sum(done) == len(seeds)
    pd.testing.assert_frame_equal(load_events(path), recorder.to_table().to_pandas())
    pd.testing.assert_frame_equal(load_users(path), recorder.users_table().to_pandas())
