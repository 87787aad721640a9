"""The shared rollout loop: users live their lives under a policy, all stepped together.

Every caller that runs a policy on simulated users (``driftrec simulate``, evaluation, the
logging policy's burn-in, the harness) goes through :func:`rollout`, so they all step, drop
finished users, record events and count outcomes the same way; every caller that wants the
event log of such a run (a logging policy's training log, a burn-in, a calibration's log) goes
through :func:`simulate_log`.

## Seeds: who the users are
Each seed is one user living one life: user ``i`` is the first life of the stream of
``seeds[i]`` (``ShopSimEnv(...).reset(seed=s)`` meets the same user), and the seed is the
user's ``user_id`` in the event log and in :class:`UserStats`. Because every per-user draw
comes from the user's own stream, a user's life depends only on its seed and on the actions it
receives, never on the batch it is stepped in: every policy evaluated on the same seeds meets
the same users (common random numbers).

The roles of users never overlap when their seeds come from these helpers (for ``seed`` a run's
seed and fewer than 10**9 users per role):

| role | seeds | used by |
|---|---|---|
| training | ``seed + TRAIN_SEED_OFFSET + i`` | ``driftrec simulate --seed``, SB3 training VecEnvs |
| evaluation | ``seed + EVAL_SEED_OFFSET + i`` | :func:`driftrec.agents.evaluate.evaluate_policy` |
| burn-in | ``seed + BURN_IN_SEED_OFFSET + i`` | the logging / popularity policy's random burn-in log |
| validation | ``seed + VALIDATION_SEED_OFFSET + i`` | model selection: RL validations, tuning a reference |
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from numba import njit

from driftrec.envs.events import EventRecorder, EventWriter
from driftrec.envs.policy import Policy
from driftrec.envs.rng import user_keys
from driftrec.envs.state import take_rows

TRAIN_SEED_OFFSET = 0
"""Training users of a run with seed s are s + i (what ``driftrec simulate --seed s`` writes)."""
EVAL_SEED_OFFSET = 10**9
"""Held-out evaluation users of a run with seed s are s + 10**9 + i."""
BURN_IN_SEED_OFFSET = 2 * 10**9
"""Burn-in users (the random log a logging policy's popularity is fitted on) are s + 2 * 10**9 + i."""
VALIDATION_SEED_OFFSET = 3 * 10**9
"""Validation users (model selection never meets the evaluation users) are s + 3 * 10**9 + i."""


def train_seeds(seed: int, n_users: int) -> np.ndarray:
    """Seeds of the ``n_users`` training users of a run with seed ``seed``."""
    return _seeds(seed, TRAIN_SEED_OFFSET, n_users)


def eval_seeds(seed: int, n_users: int) -> np.ndarray:
    """Seeds of the ``n_users`` held-out evaluation users of a run with seed ``seed``."""
    return _seeds(seed, EVAL_SEED_OFFSET, n_users)


def burn_in_seeds(seed: int, n_users: int) -> np.ndarray:
    """Seeds of the ``n_users`` burn-in users of a run with seed ``seed``."""
    return _seeds(seed, BURN_IN_SEED_OFFSET, n_users)


def validation_seeds(seed: int, n_users: int) -> np.ndarray:
    """Seeds of the ``n_users`` validation users of a run with seed ``seed``."""
    return _seeds(seed, VALIDATION_SEED_OFFSET, n_users)


def _seeds(seed: int, offset: int, n_users: int) -> np.ndarray:
    if n_users < 0:
        raise ValueError(f"n_users must be >= 0, got {n_users}")
    return int(seed) + offset + np.arange(n_users, dtype=np.int64)


@dataclasses.dataclass
class UserStats:
    """What happened to each user of a rollout (leading axis: users, in the order of the seeds).

    Counts are over the user's whole life. ``daily_reward[u, d]`` is the reward of the requests
    user u made on day d (d = floor of the request time in days since the life began), so a
    row sums to ``reward``. ``item_impressions`` counts, over all users, how often each item was
    shown (a slate position showing it; a duplicate in a slate is not shown).
    """

    user_id: np.ndarray  # (U,) int64 the user's seed (its user_id in the event log)
    reward: np.ndarray  # (U,) float64 total reward
    clicks: np.ndarray  # (U,) int64
    carts: np.ndarray  # (U,) int64 add-to-carts
    purchases: np.ndarray  # (U,) int64
    revenue: np.ndarray  # (U,) float64 sum of the prices of purchased items
    requests: np.ndarray  # (U,) int64 recommendation requests served (env steps)
    impressions: np.ndarray  # (U,) int64 slate positions shown
    sessions: np.ndarray  # (U,) int64 sessions with at least one request
    churned: np.ndarray  # (U,) bool the life ended by churn (terminated), not by the horizon
    watch: np.ndarray  # (U,) float64 recsim-ie minutes watched (0 for ShopSim)
    categories: np.ndarray  # (U,) int64 distinct categories among the items shown to the user
    daily_reward: np.ndarray  # (U, days) float64 reward per day of life
    item_impressions: np.ndarray  # (n_items,) int64 times each item was shown, over all users
    n_categories: int  # categories of the catalog (for diversity)

    PER_USER = ("user_id", "reward", "clicks", "carts", "purchases", "revenue", "requests", "impressions",
                "sessions", "churned", "watch", "categories")

    def __len__(self) -> int:
        return len(self.user_id)

    @property
    def n_items(self) -> int:
        """Catalog size."""
        return len(self.item_impressions)

    @property
    def items_recommended(self) -> np.ndarray:
        """Sorted ids of the distinct items shown to at least one user."""
        return np.flatnonzero(self.item_impressions)

    def to_frame(self) -> pd.DataFrame:
        """One row per user with the per-user columns (``PER_USER``)."""
        return pd.DataFrame({name: getattr(self, name) for name in self.PER_USER})

    def daily_frame(self) -> pd.DataFrame:
        """Long table (user_id, day, reward) with one row per user and day of the horizon."""
        n, days = self.daily_reward.shape
        return pd.DataFrame({"user_id": np.repeat(self.user_id, days),
                             "day": np.tile(np.arange(days, dtype=np.int64), n),
                             "reward": self.daily_reward.reshape(-1)})

    @classmethod
    def concat(cls, parts: Sequence[UserStats]) -> UserStats:
        """The stats of several groups of users of the same model, one after the other."""
        if not parts:
            raise ValueError("UserStats.concat needs at least one part")
        fields = {name: np.concatenate([getattr(p, name) for p in parts]) for name in cls.PER_USER}
        return cls(**fields, daily_reward=np.concatenate([p.daily_reward for p in parts]),
                   item_impressions=np.sum([p.item_impressions for p in parts], axis=0),
                   n_categories=parts[0].n_categories)


def horizon_days(user_model: Any) -> int:
    """Columns of ``UserStats.daily_reward``: the days a request can fall on."""
    return max(1, math.ceil(user_model.cfg.horizon_days))


def rollout(user_model: Any, policy: Policy, seeds: np.ndarray | Sequence[int], *,
            recorder: EventRecorder | None = None, on_done: Callable[[int], Any] | None = None,
            batch: int = 4096, update_every: int = 8) -> UserStats:
    """Run ``policy`` on the users of ``seeds`` (one life each) until every life is over.

    Users go in groups of ``batch`` (bounding memory); a group is stepped together and, once
    a quarter of it is done, the done users are dropped (so a few long lives do not keep the whole
    batch stepping). Before each group, ``policy.reset(len(group))``; when users are dropped,
    ``policy.keep_rows(rows)`` names the rows that stay. The policy gets ``state=`` (the batch
    state) only if its ``reads_hidden_state`` is true, and ``user_model.action_masks(state)`` as
    ``mask`` only if its ``uses_mask`` is true. ``recorder`` (an EventRecorder) receives every
    event, with user_id = seed and the policy's propensities; ``on_done(k)`` hears when k more
    users finish. A policy whose ``learns_online`` is true gets the new events of its users
    through ``policy.update(events)`` every ``update_every`` batch steps and when a group ends.
    Returns the per-user outcomes in the order of ``seeds``.
    """
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    if batch < 1 or update_every < 1:
        raise ValueError(f"batch and update_every must be >= 1, got {batch} and {update_every}")
    feed = _OnlineFeed(user_model, policy, update_every) if getattr(policy, "learns_online", False) else None
    parts = [_rollout_group(user_model, policy, seeds[lo:lo + batch], recorder, on_done, feed)
             for lo in range(0, len(seeds), batch)]
    if not parts:
        parts = [_rollout_group(user_model, policy, seeds, recorder, on_done, feed)]
    return parts[0] if len(parts) == 1 else UserStats.concat(parts)


@dataclasses.dataclass
class SimulatedLog:
    """What :func:`simulate_log` made: the users' outcomes and their events."""

    stats: UserStats  # per-user outcomes, in the order of the seeds
    n_events: int  # events recorded
    events: pa.Table | None  # every event (EVENT_SCHEMA), sorted by user and time; None when streamed to a writer


def simulate_log(user_model: Any, policy: Policy, seeds: np.ndarray | Sequence[int], *,
                 writer: EventWriter | None = None,
                 batch: int = 4096, on_done: Callable[[int], Any] | None = None) -> SimulatedLog:
    """The event log of ``policy`` serving the users of ``seeds`` (one :func:`rollout`).

    Users go in groups of ``batch``, as in :func:`rollout` (``on_done`` as there). With a
    ``writer`` (an :class:`EventWriter`), each group's events and its users table
    (:meth:`EventRecorder.users_table`: the shop's records of them) are written as the group ends,
    so memory stays bounded, and ``events`` is None; without one, ``events`` holds the whole log.
    Either way the rows are those of one recorder over all the users: groups are consecutive
    seeds and a log is sorted by user, so their tables follow one another.
    """
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    recorder = EventRecorder(user_model)
    parts, n_events = [], 0
    for lo in range(0, max(len(seeds), 1), batch):
        parts.append(rollout(user_model, policy, seeds[lo:lo + batch], recorder=recorder, batch=batch, on_done=on_done))
        if writer is not None:
            n_events += recorder.n_events
            writer.write(recorder.to_table())
            writer.write_users(recorder.users_table())
            recorder.clear()
    if writer is not None:
        return SimulatedLog(UserStats.concat(parts), n_events, None)
    return SimulatedLog(UserStats.concat(parts), recorder.n_events, recorder.to_table())


def policy_act(policy: Policy, user_model: Any, state: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """``policy``'s actions and propensities for the batch ``state`` of ``user_model``: it sees the
    observation, plus the action mask if its ``uses_mask`` and the state if its ``reads_hidden_state``."""
    obs = user_model.observe(state)
    mask = user_model.action_masks(state) if getattr(policy, "uses_mask", False) else None
    if getattr(policy, "reads_hidden_state", False):
        return policy.act(obs, mask, state=state)
    return policy.act(obs, mask)


class _OnlineFeed:
    """Records the events a learning policy's users make and hands them to ``policy.update``."""

    def __init__(self, user_model: Any, policy: Policy, every: int):
        self.recorder, self.policy, self.every, self.steps = EventRecorder(user_model), policy, every, 0

    def record(self, out: Any, user_id: np.ndarray, propensity: np.ndarray | None, active: np.ndarray) -> None:
        self.recorder.record(out, user_id, propensity, active)
        self.steps += 1
        if self.steps % self.every == 0:
            self.flush()

    def flush(self) -> None:
        if self.recorder.n_events:
            events = self.recorder.to_table().to_pandas()
            self.recorder.clear()
            self.policy.update(events)


def _rollout_group(user_model: Any, policy: Policy, seeds: np.ndarray, recorder: EventRecorder | None,
                   on_done: Callable[[int], Any] | None, feed: _OnlineFeed | None = None) -> UserStats:
    """One group of users stepped together to the end (see :func:`rollout`)."""
    n, days = len(seeds), horizon_days(user_model)
    world = user_model.world
    n_items, n_cat = len(world.category), int(user_model.n_cat)
    i64 = np.int64
    reward, revenue, watch = np.zeros(n), np.zeros(n), np.zeros(n)
    clicks, carts, purchases = np.zeros(n, dtype=i64), np.zeros(n, dtype=i64), np.zeros(n, dtype=i64)
    requests, impressions, last_session = np.zeros(n, dtype=i64), np.zeros(n, dtype=i64), np.full(n, -1, dtype=i64)
    churned = np.zeros(n, dtype=bool)
    daily = np.zeros((n, days))
    seen_cat = np.zeros((n, n_cat), dtype=bool)
    item_imp = np.zeros(n_items, dtype=i64)
    price = np.ascontiguousarray(world.price, dtype=np.float64)
    category = np.ascontiguousarray(world.category, dtype=np.int64)

    policy.reset(n)
    state = user_model.init(user_keys(seeds), np.zeros(n, dtype=i64)) if n else None
    row = np.arange(n)  # row of each batch slot in the per-user arrays
    active = np.ones(n, dtype=bool)
    while active.any():
        if active.sum() * 4 <= 3 * len(active):  # drop done users once they are a quarter of the batch
            keep = np.flatnonzero(active)
            state, row, active = take_rows(state, keep), row[keep], active[keep]
            policy.keep_rows(keep)
        actions, propensity = policy_act(policy, user_model, state)
        state, out = user_model.step(state, actions, inplace=True)
        if recorder is not None:
            recorder.record(out, seeds[row], propensity, active)
        if feed is not None:
            feed.record(out, seeds[row], propensity, active)

        n_done = _accumulate(
            row, active, out.reward, out.click_pos, out.cart, out.purchase, out.items, out.shown, out.watch,
            out.session, out.time, out.terminated, out.truncated, price, category,
            reward, clicks, carts, purchases, revenue, watch, requests, impressions, last_session, daily, seen_cat,
            item_imp, churned)
        if on_done is not None and n_done:
            on_done(n_done)
    if feed is not None:
        feed.flush()
    return UserStats(
        user_id=seeds.copy(), reward=reward, clicks=clicks, carts=carts, purchases=purchases, revenue=revenue,
        requests=requests, impressions=impressions, sessions=last_session + 1, churned=churned, watch=watch,
        categories=seen_cat.sum(axis=1).astype(i64), daily_reward=daily, item_impressions=item_imp,
        n_categories=n_cat,
    )


@njit(cache=True)
def _accumulate(row, active, step_reward, click_pos, cart, purchase, items, shown, step_watch,  # noqa: ANN001
                session, time, terminated, truncated, price, category,
                reward, clicks, carts, purchases, revenue, watch, requests, impressions, last_session, daily,
                seen_cat, item_imp, churned):
    """Add one step's outcomes of the active batch slots to their users' rows; mark the users whose
    life ended done (``active`` False, ``churned`` = terminated). Returns how many ended.

    Compiled because it runs once per step: as two dozen numpy calls its fixed cost dominated the
    long tail of a rollout, when a few users with very long lives are stepped alone.
    """
    days = daily.shape[1]
    n_done = 0
    for b in range(row.shape[0]):
        if not active[b]:
            continue
        r = row[b]
        reward[r] += step_reward[b]
        watch[r] += step_watch[b]
        requests[r] += 1
        last_session[r] = session[b]
        day = min(max(int(time[b]), 0), days - 1)  # time >= 0, so int() floors
        daily[r, day] += step_reward[b]
        for k in range(items.shape[1]):
            if shown[b, k]:
                it = items[b, k]
                impressions[r] += 1
                item_imp[it] += 1
                seen_cat[r, category[it]] = True
        if click_pos[b] >= 0:
            clicks[r] += 1
            if cart[b]:
                carts[r] += 1
            if purchase[b]:
                purchases[r] += 1
                revenue[r] += price[items[b, click_pos[b]]]
        if terminated[b] or truncated[b]:
            churned[r] = terminated[b]
            active[b] = False
            n_done += 1
    return n_done
