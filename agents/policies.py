"""One interface for every policy, and the reference policies.

Reference policies (random, popularity, oracle-greedy, logging), SB3 agents and supervised
recommenders all subclass :class:`driftrec.envs.policy.Policy` (re-exported here), so the harness,
the CLI and :func:`driftrec.envs.rollout.rollout` drive them alike.
:func:`driftrec.agents.registry.make_policy` builds one by name.

| name | acts on | what it does |
|---|---|---|
| ``random`` | nothing | uniform over the actions, each slate position independently |
| ``popularity`` | an event log | the K items with the most clicks + purchases in the log |
| ``oracle-greedy`` | the hidden state | the K items of highest expected immediate reward |
| ``oracle-planner`` | the hidden state | the K items of highest immediate reward + value of the user's future |
| ``logging`` | an event log | popularity with probability 1 - epsilon, else uniform; exact propensities |

Popularity and logging read ``state.cand`` (the item ids of the request's candidates) in
candidates mode: the candidates part of the observation holds only their observable features,
which do not identify an item, while a real shop's ranker knows which items its retrieval stage
returned. They read nothing else of the state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces

from driftrec.envs.config import ConfigError
from driftrec.envs.policy import Obs, Policy
from driftrec.envs.rollout import burn_in_seeds, simulate_log

if TYPE_CHECKING:
    import pandas as pd

__all__ = [  # Obs and Policy are the rollout's (driftrec.envs.policy), re-exported for the agents
    "DEFAULT_BURN_IN_USERS",
    "DEFAULT_EPSILON",
    "LoggingPolicy",
    "Obs",
    "OracleGreedyPolicy",
    "Policy",
    "PopularityPolicy",
    "RandomPolicy",
    "RowCachePolicy",
    "batch_size",
    "burn_in_events",
    "n_actions",
    "popularity_scores",
    "top_k_distinct",
    "top_k_items",
]


def batch_size(obs: Obs) -> int:
    """Users in a batch of observations (flat array or Dict of arrays)."""
    return len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)


def n_actions(user_model: Any) -> int:
    """Choices per slate position: the catalog size, or the candidates per request (M)."""
    return int(user_model.m) if user_model.m else int(user_model.cfg.n_items)


def _shape_actions(user_model: Any, actions: np.ndarray, prop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) actions and propensities in the model's action-space shape ((N,) for Discrete)."""
    if isinstance(user_model.action_space, spaces.Discrete):
        return actions[:, 0], prop[:, 0]
    return actions, prop


# ------------------------------------------------------------------------------------- random
class RandomPolicy(Policy):
    """Uniform at random over each slate position, independently (duplicates are possible: the
    simulator shows a repeated item once). Propensity 1 / n_actions per position, or 1 / (valid
    actions) under a mask."""

    def __init__(self, action_space: spaces.Space, n_users: int, seed: int | None = None):
        if isinstance(action_space, spaces.Discrete):
            self.nvec, self.slate = np.array([int(action_space.n)]), False
        elif isinstance(action_space, spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
            self.nvec, self.slate = np.asarray(action_space.nvec, dtype=np.int64), True
        else:
            raise TypeError(f"RandomPolicy needs a Discrete or 1-d MultiDiscrete action space, got {action_space}")
        self.action_space = action_space
        self.n_users = n_users
        self.rng = np.random.default_rng(seed)

    def act(self, obs: Obs, mask: np.ndarray | None = None, *,
            state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        n = batch_size(obs)
        k = len(self.nvec)
        u = self.rng.random((n, k))
        if mask is None:
            actions = (u * self.nvec).astype(np.int64)
            prop = np.broadcast_to(1.0 / self.nvec, (n, k)).copy()
        else:
            actions, prop = np.empty((n, k), dtype=np.int64), np.empty((n, k))
            blocks = np.split(np.asarray(mask, dtype=bool).reshape(n, -1), np.cumsum(self.nvec)[:-1], axis=1)
            for j, valid in enumerate(blocks):
                count = valid.sum(axis=1)
                if (count == 0).any():
                    raise ValueError(f"action mask leaves no valid action at slate position {j} "
                                     f"for user {int(np.flatnonzero(count == 0)[0])} of the batch")
                # the (floor(u * count) + 1)-th valid action, by a cumulative count
                target = (u[:, j] * count).astype(np.int64)
                actions[:, j] = (np.cumsum(valid, axis=1) <= target[:, None]).sum(axis=1)
                prop[:, j] = 1.0 / count
        if not self.slate:
            return actions[:, 0], prop[:, 0]
        return actions, prop


# ------------------------------------------------------------------------------------- ranking helpers
def top_k_items(score: np.ndarray, k: int) -> np.ndarray:
    """(N, k) column indices of the k highest scores of each row, best first; ties go to the
    lower index (columns are distinct, so the items are)."""
    if k == 1:
        return np.argmax(score, axis=1)[:, None]  # argmax returns the first maximum
    return np.argsort(-score, axis=1, kind="stable")[:, :k]


def top_k_distinct(score: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """(N, k) column indices of the k best-scoring *distinct* items of each row of ``items``
    (N, M), best first; ties go to the lower column. A repeated item counts once (the simulator
    would show it once); a row with fewer than k distinct items repeats its worst ones."""
    order = np.argsort(-score, axis=1, kind="stable")
    ranked = np.take_along_axis(items, order, axis=1)
    repeat = np.zeros(ranked.shape, dtype=bool)
    for j in range(1, ranked.shape[1]):  # M is small (candidates per request)
        repeat[:, j] = (ranked[:, :j] == ranked[:, j:j + 1]).any(axis=1)
    return np.take_along_axis(order, np.argsort(repeat, axis=1, kind="stable"), axis=1)[:, :k]


# ------------------------------------------------------------------------------------- popularity
def popularity_scores(events: pd.DataFrame, n_items: int) -> np.ndarray:
    """(n_items,) float64 popularity of each item in an event log: its number of ``click``
    rows plus its number of ``purchase`` rows (a bought item earns 2: its click and its
    purchase; impressions, carts, searches and views count 0)."""
    for column in ("item_id", "behaviour"):
        if column not in events.columns:
            raise ValueError(f"event log has no column '{column}' (see driftrec.envs.events.EVENT_SCHEMA)")
    behaviour = events["behaviour"].to_numpy()
    chosen = np.flatnonzero((behaviour == "click") | (behaviour == "purchase"))
    ids = events["item_id"].to_numpy()[chosen]
    bad = np.flatnonzero((ids < 0) | (ids >= n_items))
    if bad.size:
        raise ValueError(f"event log row {int(chosen[bad[0]])}: item_id {int(ids[bad[0]])} is not in the "
                         f"catalog [0, {n_items})")
    return np.bincount(ids.astype(np.int64), minlength=n_items).astype(np.float64)


class PopularityPolicy(Policy):
    """Recommends the most popular items of an event log, the same for every user.

    Score of an item: clicks + purchases in the log (:func:`popularity_scores`); ties go to the
    lower item id; ``ranking`` lists item ids best first. Catalog mode: the slate is the top K
    items. Candidates mode: the top K distinct candidates of the request by that ranking (read
    from ``state.cand``; see the module doc). Deterministic: propensities are 1.
    """

    def __init__(self, user_model: Any, events: pd.DataFrame | None = None):
        self.user_model = user_model
        self.n_items = int(user_model.cfg.n_items)
        self.k, self.m = int(user_model.k), int(user_model.m)
        if not self.m and self.k > self.n_items:
            raise ConfigError(f"config key 'slate_size' ({self.k}) must be <= n_items ({self.n_items}) "
                              "for the popularity policy")
        # candidates mode needs the candidates' item ids, which only the batch state holds
        self.reads_hidden_state = self.m > 0
        self.fit_scores(np.zeros(self.n_items))
        if events is not None:
            self.fit(events)

    def fit(self, events: pd.DataFrame) -> PopularityPolicy:
        """Rank the items by their clicks + purchases in ``events``; returns self."""
        return self.fit_scores(popularity_scores(events, self.n_items))

    def fit_scores(self, scores: np.ndarray) -> PopularityPolicy:
        """Rank the items by ``scores`` (n_items,) directly; returns self."""
        self.scores = np.asarray(scores, dtype=np.float64).reshape(self.n_items)
        self.ranking = np.lexsort((np.arange(self.n_items), -self.scores))  # score desc, then item id
        self.rank = np.empty(self.n_items, dtype=np.int64)  # position of each item in the ranking
        self.rank[self.ranking] = np.arange(self.n_items)
        return self

    def greedy(self, n: int, state: Any = None) -> np.ndarray:
        """(n, K) actions of the batch (item ids, or candidate indices in candidates mode)."""
        if not self.m:
            return np.broadcast_to(self.ranking[:self.k], (n, self.k)).copy()
        if state is None:
            raise ValueError("in candidates mode the popularity policy reads the candidates' item ids from "
                             "state.cand: pass state= (the rollout does, since reads_hidden_state is True)")
        cand = np.asarray(state.cand)
        return top_k_distinct(-self.rank[cand].astype(np.float64), cand, self.k)

    def act(self, obs: Obs, mask: np.ndarray | None = None, *,
            state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        actions = self.greedy(batch_size(obs), state)
        return _shape_actions(self.user_model, actions, np.ones(actions.shape))


# ------------------------------------------------------------------------------------- logging
DEFAULT_EPSILON = 0.3
DEFAULT_BURN_IN_USERS = 1000  # ~100 random impressions per item of a 500-item catalog over a week: a stable ranking


def burn_in_events(user_model: Any, seed: int | None, n_users: int = DEFAULT_BURN_IN_USERS) -> pd.DataFrame:
    """The event log of a random-policy rollout of ``n_users`` burn-in users.

    The users are ``burn_in_seeds(seed, n_users)`` (seed + 2 * 10**9 + i, see
    :mod:`driftrec.envs.rollout`), disjoint from the training (seed + i) and evaluation
    (seed + 10**9 + i) users; the random policy is seeded with the burn-in users' first seed.
    """
    if n_users < 1:
        raise ConfigError(f"policy option 'burn_in_users' must be >= 1, got {n_users!r}")
    seeds = burn_in_seeds(0 if seed is None else seed, n_users)
    policy = RandomPolicy(user_model.action_space, n_users, seed=int(seeds[0]))
    return simulate_log(user_model, policy, seeds).events.to_pandas()


class LoggingPolicy(Policy):
    """The logging policy of training logs: an epsilon-mix of popularity and uniform random.

    At each slate position independently, with probability ``1 - epsilon`` it shows the
    popularity policy's item for that position, else a uniform random action (any of the
    ``n_actions`` items or candidates, possibly the popular one). The propensity of the action
    a shown at position k is its exact mixture probability,
    ``(1 - epsilon) * [a == popular_k] + epsilon / n_actions``, and the probability of a whole
    slate is the product over positions. ``epsilon=0`` is the popularity policy (propensity
    1), ``epsilon=1`` the random policy (propensity 1 / n_actions).

    Popularity comes from ``events`` (an event log), or when None from
    :func:`burn_in_events` (``burn_in_users`` random-policy users with burn-in seeds).
    """

    def __init__(self, user_model: Any, seed: int | None = None, epsilon: float = DEFAULT_EPSILON,
                 events: pd.DataFrame | None = None, burn_in_users: int = DEFAULT_BURN_IN_USERS):
        if not (0.0 <= float(epsilon) <= 1.0):  # also rejects NaN
            raise ConfigError(f"logging policy option 'epsilon' must be in [0, 1], got {epsilon!r}")
        self.user_model = user_model
        self.epsilon = float(epsilon)
        self.n_actions = n_actions(user_model)
        if events is None:
            events = burn_in_events(user_model, seed, burn_in_users)
        self.popularity = PopularityPolicy(user_model, events)
        self.reads_hidden_state = self.popularity.reads_hidden_state
        self.rng = np.random.default_rng(seed)

    def distribution(self, obs: Obs, *, state: Any = None) -> np.ndarray:
        """(N, K, n_actions) probability of each action at each slate position (rows sum to 1)."""
        greedy = self.popularity.greedy(batch_size(obs), state)
        n, k = greedy.shape
        probs = np.full((n, k, self.n_actions), self.epsilon / self.n_actions)
        probs[np.arange(n)[:, None], np.arange(k)[None, :], greedy] += 1.0 - self.epsilon
        return probs

    def act(self, obs: Obs, mask: np.ndarray | None = None, *,
            state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        greedy = self.popularity.greedy(batch_size(obs), state)
        # both draws every step, whatever epsilon, so the stream advances the same way
        explore = self.rng.random(greedy.shape) < self.epsilon
        uniform = (self.rng.random(greedy.shape) * self.n_actions).astype(np.int64)
        actions = np.where(explore, uniform, greedy)
        prop = self.epsilon / self.n_actions + (1.0 - self.epsilon) * (actions == greedy)
        return _shape_actions(self.user_model, actions, prop)


# ------------------------------------------------------------------------------------- oracle
_CHUNK_ELEMENTS = 1 << 20  # users x items scored at once without the cache: bounds the temporaries (8 MiB)
_CACHE_ELEMENTS = 1 << 22  # users x items the catalog-mode cache may hold (two float64 arrays, 32 MiB each)


class RowCachePolicy(Policy):
    """A policy that caches arrays per row of the current batch (``self._cache``: name -> array
    with one row per user), forgotten on a new batch and kept row by row when the batch shrinks."""

    _cache: dict[str, np.ndarray] | None = None

    def reset(self, n_users: int) -> None:
        """A new batch: forget the cache."""
        self._cache = None

    def keep_rows(self, rows: np.ndarray) -> None:
        """The batch shrank: keep the cache rows of the users that stay."""
        if self._cache is not None:
            self._cache = {name: value[rows] for name, value in self._cache.items()}


class OracleGreedyPolicy(RowCachePolicy):
    """Reads the hidden state and shows the items of highest expected immediate reward.

    The expected reward of showing item i alone is the model's own formula,
    ``user_model.one_item_expected_rewards``: for ShopSim P(click) * (reward_click + P(cart) *
    (reward_cart + P(purchase | cart) * (reward_purchase + reward_revenue * price_i))), with
    P(click) = sigmoid(utility - no_click_utility) (a one-item slate, under either choice model),
    every term from :mod:`driftrec.envs.kernels` (its rules), which the simulator's step uses too; for
    recsim-ie the expected watch time P(click) * min(budget, length).

    A slate of K holds the K items (catalog) or distinct candidates of highest one-item expected
    reward, best first; ties go to the lower item id / candidate index. For K = 1 that maximises
    the expected immediate reward exactly; for K > 1 it is the greedy slate (items compete
    within a slate), whose exact value :meth:`slate_expected_reward` computes. Deterministic:
    propensities are 1.

    Speed: in catalog mode every request scores the whole catalog. ShopSim's scores split into a
    part that changes only with the user's interest and price sensitivity
    (``user_model.static_scores``) and the terms that move every request (events, boredom, satiety);
    the first is cached per batch row between requests (checked against the life key, interest
    and price sensitivity, so a stale row is always recomputed). When no term moves (no
    boredom, events or satiation), an unchanged user keeps its slate without any scoring.
    """

    reads_hidden_state = True

    def __init__(self, user_model: Any):
        self.user_model = user_model
        self.cfg = cfg = user_model.cfg
        self.k, self.m = int(user_model.k), int(user_model.m)
        if not self.m and self.k > cfg.n_items:
            raise ConfigError(f"config key 'slate_size' ({self.k}) must be <= n_items ({cfg.n_items}) "
                              "for the oracle-greedy policy")
        self._catalog = np.arange(cfg.n_items, dtype=np.int64)[None, :]
        self._cacheable = hasattr(user_model, "static_scores")
        self._moving = self._cacheable and (cfg.drift_fatigue > 0 or cfg.drift_seasonal > 0
                                            or cfg.satiation_click > 0 or cfg.satiation_purchase > 0)
        self._cache: dict[str, np.ndarray] | None = None

    def act(self, obs: Obs, mask: np.ndarray | None = None, *,
            state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        if state is None:
            raise ValueError("the oracle-greedy policy reads the hidden state: pass state= (the rollout does)")
        n = len(state.t)
        if self.m:
            actions = top_k_distinct(self.expected_rewards(state), state.cand, self.k)
        elif self._cacheable and n * self.cfg.n_items <= _CACHE_ELEMENTS:
            actions = self._cached_catalog_actions(state)
        else:
            actions = np.empty((n, self.k), dtype=np.int64)
            step = max(1, _CHUNK_ELEMENTS // self.cfg.n_items)
            for lo in range(0, n, step):
                rows = slice(lo, min(lo + step, n))
                actions[rows] = top_k_items(self.expected_rewards(state, rows=rows), self.k)
        return _shape_actions(self.user_model, actions, np.ones(actions.shape))

    def _cached_catalog_actions(self, state: Any) -> np.ndarray:
        """(N, K) catalog actions, reusing the cached static scores of the rows that did not change."""
        n = len(state.t)
        c = self._cache
        if c is None or len(c["key"]) != n:
            n_items = self.cfg.n_items
            c = self._cache = {
                "key": state.key.copy(), "interest": state.interest.copy(), "sens": state.price_sens.copy(),
                "logit": np.empty((n, n_items)), "value": np.empty((n, n_items)),
                "actions": np.zeros((n, self.k), dtype=np.int64),
            }
            stale = np.ones(n, dtype=bool)
        else:
            stale = ((c["key"] != state.key) | (c["sens"] != state.price_sens)
                     | (c["interest"] != state.interest).any(axis=1))
        rows = np.flatnonzero(stale)
        if rows.size:
            c["logit"][rows], c["value"][rows] = self.user_model.static_scores(state, self._catalog, rows)
            c["key"][rows], c["interest"][rows], c["sens"][rows] = state.key[rows], state.interest[rows], \
                state.price_sens[rows]
        if self._moving:  # boredom, events or satiety move every request: score every row
            rewards = self.user_model.rewards_from_static(state, self._catalog, c["logit"], c["value"])
            c["actions"][:] = top_k_items(rewards, self.k)
        elif rows.size:
            scores = self.user_model.rewards_from_static(state, self._catalog, c["logit"][rows], c["value"][rows], rows)
            c["actions"][rows] = top_k_items(scores, self.k)
        return c["actions"].copy()

    def expected_rewards(self, state: Any, items: np.ndarray | None = None,
                         rows: slice | np.ndarray | None = None) -> np.ndarray:
        """Expected immediate reward of showing each item alone (a one-item slate).

        ``items`` (N, X) item ids, or None: the whole catalog (N, n_items) in catalog mode, the
        request's candidates ``state.cand`` (N, M) in candidates mode. ``rows`` limits the users.
        """
        rows = slice(None) if rows is None else rows
        if items is None:
            items = np.asarray(state.cand)[rows] if self.m else self._catalog
        return self.user_model.one_item_expected_rewards(state, items, rows)

    def click_values(self, state: Any, items: np.ndarray) -> np.ndarray:
        """(N, X) expected reward of the step given that the user clicks item ``items[n, x]``."""
        return self.user_model.click_values(state, np.asarray(items, dtype=np.int64))

    def slate_expected_reward(self, state: Any, items: np.ndarray) -> np.ndarray:
        """(N,) exact expected immediate reward of showing the slates ``items`` (N, K) of item ids:
        the choice probabilities of ``user_model.choice_probs`` times the value of each click."""
        items = np.asarray(items, dtype=np.int64).reshape(len(state.t), -1)
        probs = self.user_model.choice_probs(state, items)[:, :-1]
        return (probs * self.click_values(state, items)).sum(axis=1)
