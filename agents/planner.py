"""oracle-planner: the upper reference. It reads the hidden state and values what a click does to
the user's future, not only the reward of this request.

## What it looks ahead on
oracle-greedy scores item i by its expected immediate reward P_i v_i (P_i: the click probability
of a one-item slate, v_i: the expected reward of the request given a click on i, both the model's
rules). A click does more than earn v_i: it changes the user's state, and with it every later
request. The planner scores

    score_i = P_i (v_i + future_weight * dV_i)

where dV_i is the change in the user's expected future reward that a click on i causes, relative
to no click, estimated from the model's own formulas and the user's hidden state (a parametric
value of the user's future). ``future_weight`` = 0 is oracle-greedy, bit for bit; 1 takes the
estimate as it is.

ShopSim (:mod:`driftrec.envs.kernels`: ``_end_request``, ``_remember_click``) has two channels
through which a click's quality q_i outlives its request; without a click neither moves:

1. **patience**: the click refunds ``min(patience_quality q_i, patience_refund_max)`` requests of
   patience (a bad item takes patience away), so this session gains or loses requests, each of
   which earns refunds in turn: ``d requests_i = (max(p' + refund_i, 0) - max(p', 0)) / (1 - rho)``,
   p' the patience left after this request, rho the refund a request earns on average. Each
   request is worth ``value_per_request``.
2. **satisfaction**: it moves by ``satisfaction_rate (q_i - s)``. Later clicks wash a change out
   by (1 - satisfaction_rate) each, so the end of the j-th session from now still holds
   kappa_rest * kappa**j of it (kappa = (1 - rate) ** clicks per session; kappa_rest for the rest of
   this session). At each session end satisfaction lowers churn, c = sigmoid(churn_bias -
   churn_satisfaction s), with d log(1 - c) / ds = churn_satisfaction c (every later session
   becomes likelier), and shortens the return gap, g = gap_min + gap_mean exp(-gap_satisfaction s)
   (every later session comes sooner, so more of the life fits before the horizon: the time gained
   times the value rate there, survival x session value / g). With M = days left / g sessions to
   come and x = 1 - c, a unit of satisfaction at this session's end is worth
   ``value_per_session (churn_satisfaction (x G(kappa x) - x**(M+1) G(kappa)) + gap_satisfaction
   gap_mean exp(-gap_satisfaction s) x**M G(kappa) / g)``, G(y) = sum over j < M of y**j.

``value_per_request`` is the user's best expected immediate reward now (what one more request
earns, as far as today's state tells), ``value_per_session`` that times the expected session
length ``patience_base / (1 - rho)``; rho and the click rate are those of the greedy item now. The
estimate holds c and g at today's satisfaction (mean field) and leaves out what cancels between
items or what the planner cannot usefully steer: satiety (every click sates its own item),
boredom, the filter bubble and drift. ``future_weight`` absorbs the estimate's bias (it is tuned).

On ``bandit`` every channel is off (``patience_quality``, ``churn_satisfaction`` and
``gap_satisfaction`` are 0): dV is 0 for every item, so the planner *is* oracle-greedy whatever
its weight, and tuning is skipped.

recsim-ie: the future is the time budget B. A click on document i costs w_i (1 - alpha q_i) minutes
of it (w_i = min(B, length), alpha = ``USER_UPDATE_ALPHA``), a step without a click 0.5, and a
minute of budget is worth what the greedy document earns per minute of budget it costs now
(P w over its expected cost): dV_i = value_per_minute (0.5 - w_i + alpha w_i q_i). The interest
update (a click nudges u_c up or down at random) is left out.

## Tuning
:func:`tune_planner` (what the registry's ``oracle-planner`` runs when it is built) rolls out each
``future_weight`` of a small grid that starts with 0 (oracle-greedy) on ``validation_users``
users ``validation_seeds(seed, n)``, never the evaluation users, with common random numbers, and
keeps the best mean reward per user (ties go to the earlier point, so greedy wins a tie). The
choice, every point's validation reward and the cost are in ``policy.tuning``.

Why a parametric value and not rollouts of the true model: rolling the model out for each
candidate item would cost items x remaining requests user-steps per request (500 x ~60 on the
presets), thousands of times oracle-greedy's work; this estimate costs a few array operations
over the scored items (1,000 users' 30-day lives in ~3 s, oracle-greedy's in ~1 s).

Slates: the K distinct items (catalog) or candidates of highest planned score, best first (the
greedy slate by planned score). Deterministic: propensities are 1.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import driftrec.envs.kernels as kernels
import driftrec.envs.recsim_ie as recsim_ie
from driftrec.agents.policies import _CACHE_ELEMENTS, Obs, RowCachePolicy, _shape_actions, top_k_distinct, top_k_items
from driftrec.envs.config import ConfigError
from driftrec.envs.rollout import rollout, validation_seeds
from driftrec.envs.state import take_rows

__all__ = ["DEFAULT_GRID", "DEFAULT_VALIDATION_USERS", "OraclePlannerPolicy", "RecSimFuture", "ShopFuture",
           "tune_planner"]

DEFAULT_GRID: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
"""``future_weight`` values :func:`tune_planner` tries; 0 (oracle-greedy) first, so it wins ties.
Measured on 300 validation users, the best weights were 0.5 to 2 on ShopSim presets, 2 on recsim-ie."""
DEFAULT_VALIDATION_USERS = 300
"""Validation users per grid point: with common random numbers, 300 users tell a planner from greedy
by over 5 standard errors on every preset with long-term effects (measured); a tuning takes ~1-5 s."""
_CHUNK_ELEMENTS = 1 << 20  # users x items scored at once without the cache
_MAX_RHO = 0.95  # patience refunded per request, capped (patience_refund_max < 1 already bounds it)


def _geometric(y: np.ndarray, n: np.ndarray) -> np.ndarray:
    """sum over j < n of y**j, for real n >= 0: (1 - y**n) / (1 - y), and n where y is 1."""
    one = np.abs(1.0 - y) < 1e-9
    return np.where(one, n, (1.0 - y**n) / np.where(one, 1.0, 1.0 - y))


class ShopFuture:
    """What a click does to a ShopSim user's future reward (module doc, channels 1 and 2)."""

    def __init__(self, user_model: Any):
        self.cfg = cfg = user_model.cfg
        self.p = user_model.params[0]  # the knob record the compiled rules read
        self.quality = np.asarray(user_model.world.quality, dtype=np.float64)
        self.satisfaction_on = cfg.churn_satisfaction > 0 or cfg.gap_satisfaction > 0
        self.active = cfg.patience_quality > 0 or self.satisfaction_on
        """False when no channel is on (``bandit``): dV is 0 for every item."""

    def refund(self, quality: np.ndarray) -> np.ndarray:
        """Patience a click on an item of ``quality`` refunds (the simulator's rule)."""
        return kernels.patience_refund(self.p, quality)

    def satisfied(self, satisfaction: np.ndarray, quality: np.ndarray) -> np.ndarray:
        """Satisfaction after a click on an item of ``quality`` (the simulator's rule)."""
        return kernels.satisfied(self.p, satisfaction, quality)

    def churn_prob(self, satisfaction: np.ndarray) -> np.ndarray:
        """P(churn) at a session end (the simulator's rule)."""
        return kernels.churn_prob(self.p, satisfaction)

    def mean_gap(self, satisfaction: np.ndarray) -> np.ndarray:
        """Expected days between a session's end and the next one's start (the simulator's rule)."""
        return self.cfg.gap_min_days + kernels.gap_scale(self.p, satisfaction)

    def click_change(self, state: Any, rows: slice | np.ndarray, items: np.ndarray, prob: np.ndarray,
                     value: np.ndarray) -> np.ndarray:
        """(N, X) dV: the change in the expected future reward of users ``rows`` that a click on
        items[n or 0, x] causes, relative to no click; ``prob``, ``value``: P_i and v_i (N, X)."""
        cfg = self.cfg
        n = prob.shape[0]
        at = np.arange(n)
        q = self.quality[items]  # (N or 1, X)
        refund = self.refund(q)
        best = np.argmax(prob * value, axis=1)
        p_best = prob[at, best]
        per_request = p_best * value[at, best]
        rho = np.minimum(p_best * self.refund(q[at if q.shape[0] == n else 0, best]), _MAX_RHO)
        stretch = 1.0 / (1.0 - rho)  # requests one unit of patience buys, their refunds included

        # 1. patience: the requests this session gains or loses
        left = state.patience[rows] - 1.0
        extra = np.maximum(left[:, None] + refund, 0.0) - np.maximum(left, 0.0)[:, None]
        change = (per_request * stretch)[:, None] * extra
        if not self.satisfaction_on:
            return change

        # 2. satisfaction: churn and return gaps at the end of this and of later sessions
        s = state.satisfaction[rows]
        session_len = state.patience_base[rows] * stretch
        keep = 1.0 - cfg.satisfaction_rate
        kappa = keep ** (p_best * session_len)
        kappa_rest = keep ** (p_best * np.maximum(left, 0.0) * stretch)
        x = 1.0 - self.churn_prob(s)
        gap = self.mean_gap(s)
        shrink = gap - cfg.gap_min_days  # -d gap / ds = gap_satisfaction * shrink
        m = np.maximum(cfg.horizon_days - state.time[rows], 0.0) / gap  # sessions still to come
        g_kappa = _geometric(kappa, m)
        d_churn = cfg.churn_satisfaction * (x * _geometric(kappa * x, m) - x ** (m + 1.0) * g_kappa)
        d_gap = cfg.gap_satisfaction * shrink * x**m * g_kappa / gap
        per_unit = per_request * session_len * kappa_rest * (d_churn + d_gap)
        return change + per_unit[:, None] * (self.satisfied(s[:, None], q) - s[:, None])


class RecSimFuture:
    """What a click does to a recsim-ie user's future reward: its time budget (module doc)."""

    active = True

    def __init__(self, user_model: Any):
        self.rules = recsim_ie
        self.quality = np.asarray(user_model.world.quality, dtype=np.float64)

    def click_change(self, state: Any, rows: slice | np.ndarray, items: np.ndarray, prob: np.ndarray,
                     value: np.ndarray) -> np.ndarray:
        """(N, X) dV of a click on items[n, x] relative to no click; ``value`` is the watch time."""
        rs = self.rules
        at = np.arange(prob.shape[0])
        q = self.quality[items]
        # the budget a click leaves, relative to a step without one (RecSimIEModel.step; the user
        # quality factor, 0 in RecSim, would weigh the click's score: left out)
        alpha = rs.USER_UPDATE_ALPHA * rs.DOCUMENT_QUALITY_FACTOR
        budget = rs.STEP_PENALTY - value + alpha * value * q
        best = np.argmax(prob * value, axis=1)
        p, w = prob[at, best], value[at, best]
        cost = p * w * (1.0 - alpha * q[at, best]) + (1.0 - p) * rs.STEP_PENALTY
        per_minute = p * w / np.maximum(cost, 1e-3)
        return per_minute[:, None] * budget


class OraclePlannerPolicy(RowCachePolicy):
    """Reads the hidden state and shows the items of highest planned score
    P_i (v_i + future_weight dV_i) (module doc); ``future_weight`` = 0 is oracle-greedy.

    ``tuning`` records how the weight was chosen (empty when it was given).
    """

    reads_hidden_state = True

    def __init__(self, user_model: Any, future_weight: float = 1.0):
        if isinstance(future_weight, bool) or not (isinstance(future_weight, (int, float))
                                                   and math.isfinite(future_weight) and future_weight >= 0):
            raise ConfigError(f"oracle-planner option 'future_weight' must be a number >= 0, got {future_weight!r}")
        self.user_model = user_model
        self.cfg = cfg = user_model.cfg
        self.future_weight = float(future_weight)
        self.k, self.m = int(user_model.k), int(user_model.m)
        if not self.m and self.k > cfg.n_items:
            raise ConfigError(f"config key 'slate_size' ({self.k}) must be <= n_items ({cfg.n_items}) "
                              "for the oracle-planner policy")
        self._shop = hasattr(user_model, "static_scores")
        self.future: ShopFuture | RecSimFuture = ShopFuture(user_model) if self._shop else RecSimFuture(user_model)
        self._catalog = np.arange(cfg.n_items, dtype=np.int64)[None, :]
        self._cache: dict[str, np.ndarray] | None = None
        self.tuning: dict[str, Any] = {}

    def act(self, obs: Obs, mask: np.ndarray | None = None, *,
            state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        if state is None:
            raise ValueError("the oracle-planner policy reads the hidden state: pass state= (the rollout does)")
        n = len(state.t)
        if self.m:
            cand = np.asarray(state.cand)
            actions = top_k_distinct(self.scores(state, cand), cand, self.k)
        elif self._shop and n * self.cfg.n_items <= _CACHE_ELEMENTS:
            actions = top_k_items(self.scores(state, self._catalog, cached=True), self.k)
        else:
            actions = np.empty((n, self.k), dtype=np.int64)
            step = max(1, _CHUNK_ELEMENTS // self.cfg.n_items)
            for lo in range(0, n, step):
                rows = slice(lo, min(lo + step, n))
                actions[rows] = top_k_items(self.scores(state, self._catalog, rows), self.k)
        return _shape_actions(self.user_model, actions, np.ones(actions.shape))

    def scores(self, state: Any, items: np.ndarray, rows: slice | np.ndarray = slice(None),
               cached: bool = False) -> np.ndarray:
        """(N, X) planned score P_i (v_i + future_weight dV_i) of showing items[n or 0, x] alone to
        the users ``rows`` (``cached``: the whole catalog to every user, static scores cached)."""
        prob, value = self.click_probs_values(state, items, rows, cached)
        if self.future_weight == 0.0 or not self.future.active:
            return prob * value
        return prob * (value + self.future_weight * self.future.click_change(state, rows, items, prob, value))

    def click_probs_values(self, state: Any, items: np.ndarray, rows: slice | np.ndarray = slice(None),
                           cached: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """P(click) of each item shown alone and the expected reward of a click on it, (N, X) each,
        from the model's rules; P * v is oracle-greedy's expected reward, bit for bit."""
        user_model = self.user_model
        if not self._shop:  # recsim-ie: P * w, and w
            whole = isinstance(rows, slice) and rows == slice(None)
            part = state if whole else take_rows(state, np.arange(len(state.t))[rows])
            value = user_model.click_values(part, items)
            reward = user_model.one_item_expected_rewards(part, items)
            return np.divide(reward, value, out=np.zeros(reward.shape), where=value > 0), value
        logit, value = self._static(state) if cached else user_model.static_scores(state, items, rows)
        return user_model.rewards_from_static(state, items, logit, np.ones(logit.shape), rows), value

    def _static(self, state: Any) -> tuple[np.ndarray, np.ndarray]:
        """The catalog's static scores for every row, cached as oracle-greedy caches them: a row is
        recomputed when its life key, interest or price sensitivity changed."""
        n = len(state.t)
        c = self._cache
        if c is None or len(c["key"]) != n:
            n_items = self.cfg.n_items
            c = self._cache = {"key": state.key.copy(), "interest": state.interest.copy(),
                               "sens": state.price_sens.copy(), "logit": np.empty((n, n_items)),
                               "value": np.empty((n, n_items))}
            stale = np.ones(n, dtype=bool)
        else:
            stale = ((c["key"] != state.key) | (c["sens"] != state.price_sens)
                     | (c["interest"] != state.interest).any(axis=1))
        rows = np.flatnonzero(stale)
        if rows.size:
            c["logit"][rows], c["value"][rows] = self.user_model.static_scores(state, self._catalog, rows)
            c["key"][rows], c["interest"][rows], c["sens"][rows] = (state.key[rows], state.interest[rows],
                                                                    state.price_sens[rows])
        return c["logit"], c["value"]


def tune_planner(user_model: Any, seed: int | None, validation_users: int = DEFAULT_VALIDATION_USERS,
                 grid: Sequence[float] = DEFAULT_GRID) -> OraclePlannerPolicy:
    """The planner whose ``future_weight`` (one of ``grid``) earns the most per user on the
    validation users ``validation_seeds(seed, validation_users)`` (module doc, "Tuning").

    ``policy.tuning``: the chosen ``future_weight``, the ``grid`` and each point's
    ``validation_reward``, the ``validation_users`` and their first seed, ``env_steps`` (requests
    simulated) and ``tuning_s`` (wall time). When no long-term channel is on, every weight is oracle-greedy:
    weight 0, no rollout.
    """
    if isinstance(validation_users, bool) or not isinstance(validation_users, (int, np.integer)) \
            or validation_users < 1:
        raise ConfigError(f"oracle-planner option 'validation_users' must be an integer >= 1, got {validation_users!r}")
    weights = [float(g) for g in grid]
    if not weights or any(not (math.isfinite(g) and g >= 0) for g in weights):
        raise ConfigError(f"oracle-planner option 'grid' must be a non-empty list of numbers >= 0, got {grid!r}")
    start = time.perf_counter()
    seeds = validation_seeds(0 if seed is None else int(seed), int(validation_users))
    rewards: list[float] = []
    steps = 0
    if OraclePlannerPolicy(user_model).future.active:
        for weight in weights:
            stats = rollout(user_model, OraclePlannerPolicy(user_model, weight), seeds)
            rewards.append(float(stats.reward.mean()))
            steps += int(stats.requests.sum())
        chosen = weights[int(np.argmax(rewards))]  # the first maximum: an earlier point wins a tie
    else:
        chosen = 0.0
    policy = OraclePlannerPolicy(user_model, chosen)
    policy.tuning = {"future_weight": chosen, "grid": weights, "validation_reward": rewards,
                     "validation_users": int(validation_users), "validation_first_seed": int(seeds[0]),
                     "env_steps": steps, "tuning_s": time.perf_counter() - start}
    return policy
