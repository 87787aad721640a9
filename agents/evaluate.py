"""Evaluating a policy on held-out users: per-user outcomes, a summary, bootstrap CIs.

:func:`evaluate_policy` runs a policy on the evaluation users of a seed (``seed + 10**9 + i``,
see :mod:`driftrec.envs.rollout`), never the training users (``seed + i``). Every policy
evaluated with the same seed meets the same users (common random numbers: each user's draws
come from its own stream), so per-user differences between two policies are paired:
:func:`paired_difference`.

## Summary metrics (``EvalResult.summary``)
| key | meaning |
|---|---|
| users | evaluation users |
| reward, reward_ci_low, reward_ci_high | reward per user: mean and 95% bootstrap CI (see :func:`bootstrap_ci`) |
| clicks, carts, purchases, revenue, watch | per user, means |
| requests, impressions | per user, means (requests = env steps) |
| ctr | clicks / impressions, totals over users (impression = a slate position shown) |
| conversion | purchases / clicks, totals over users |
| sessions | sessions per user, mean |
| churn | share of users whose life ended by churn (terminated), not by the horizon |
| session_length | requests per session: total requests / total sessions |
| coverage | distinct items shown to any user / n_items |
| diversity | per user, distinct categories shown / min(n_categories, impressions); mean over users |
| wall_s | seconds the rollout took |

Diversity is 1 when the items a user was shown span as many categories as the catalog and the
number of impressions allow, 1 / min(n_categories, impressions) when they are all of one
category; users without an impression are left out. Ratios with a zero denominator are NaN.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd

from driftrec.envs.config import SimConfig
from driftrec.envs.policy import Policy
from driftrec.envs.rollout import UserStats, eval_seeds, rollout
from driftrec.envs.user_model import build_user_model

CONFIDENCE = 0.95
N_RESAMPLES = 9999
BCA_MAX_USERS = 20_000
"""BCa's jackknife costs O(users**2); above this many users the CI is the percentile bootstrap."""


@dataclasses.dataclass
class EvalResult:
    """Outcome of :func:`evaluate_policy`: per-user stats, the summary, and when they were made."""

    stats: UserStats
    summary: dict[str, float]
    seed: int
    ci_method: str  # "BCa" or "percentile"

    @property
    def users(self) -> pd.DataFrame:
        """One row per evaluation user (see ``UserStats.PER_USER``)."""
        return self.stats.to_frame()

    @property
    def daily(self) -> pd.DataFrame:
        """Reward per user and day, long format (user_id, day, reward)."""
        return self.stats.daily_frame()

    def daily_mean(self) -> np.ndarray:
        """(days,) mean reward per user on each day of the horizon (for reward-by-day plots)."""
        return self.stats.daily_reward.mean(axis=0)


def evaluate_policy(policy: Policy, cfg: SimConfig, n_users: int, seed: int, batch: int = 4096, *,
                    user_model: Any = None, ci_seed: int = 0) -> EvalResult:
    """Run ``policy`` on the ``n_users`` evaluation users of ``seed`` and summarise.

    ``user_model`` may pass a prebuilt ``build_user_model(cfg)`` to skip building it again. The users are
    ``eval_seeds(seed, n_users)``; the CI bootstrap is seeded with ``ci_seed``. So the same seed
    and a freshly built policy (a stochastic policy's generator advances as it acts) give the
    same summary, ``wall_s`` aside.
    """
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    if user_model is None:
        user_model = build_user_model(cfg)
    elif user_model.cfg != cfg:
        raise ValueError("evaluate_policy: model.cfg differs from cfg")
    start = time.perf_counter()
    user_stats = rollout(user_model, policy, eval_seeds(seed, n_users), batch=batch)
    wall = time.perf_counter() - start
    method = "BCa" if n_users <= BCA_MAX_USERS else "percentile"
    return EvalResult(stats=user_stats, summary=summarize(user_stats, wall, ci_seed=ci_seed), seed=seed,
                      ci_method=method)


def summarize(s: UserStats, wall_s: float = float("nan"), ci_seed: int = 0) -> dict[str, float]:
    """The summary metrics of per-user stats (see the module doc for each key)."""
    lo, hi = bootstrap_ci(s.reward, ci_seed=ci_seed)
    shown = s.impressions > 0
    could_see = np.minimum(s.n_categories, s.impressions[shown])
    return {
        "users": float(len(s)),
        "reward": float(s.reward.mean()),
        "reward_ci_low": lo,
        "reward_ci_high": hi,
        "clicks": float(s.clicks.mean()),
        "carts": float(s.carts.mean()),
        "purchases": float(s.purchases.mean()),
        "revenue": float(s.revenue.mean()),
        "watch": float(s.watch.mean()),
        "requests": float(s.requests.mean()),
        "impressions": float(s.impressions.mean()),
        "ctr": _ratio(s.clicks.sum(), s.impressions.sum()),
        "conversion": _ratio(s.purchases.sum(), s.clicks.sum()),
        "sessions": float(s.sessions.mean()),
        "churn": float(s.churned.mean()),
        "session_length": _ratio(s.requests.sum(), s.sessions.sum()),
        "coverage": len(s.items_recommended) / s.n_items,
        "diversity": float((s.categories[shown] / could_see).mean()) if shown.any() else float("nan"),
        "wall_s": float(wall_s),
    }


def bootstrap_ci(values: np.ndarray, ci_seed: int = 0, confidence: float = CONFIDENCE,
                 n_resamples: int = N_RESAMPLES) -> tuple[float, float]:
    """Bootstrap CI of the mean of ``values`` by ``scipy.stats.bootstrap``.

    BCa (Efron 1987: corrects the skew of per-user rewards) up to :data:`BCA_MAX_USERS` values,
    the percentile method above; resampling seeded with ``ci_seed``. Fewer than 2 values give
    NaN; values that are all equal give (value, value).
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size < 2:
        return float("nan"), float("nan")
    if np.ptp(x) == 0:  # the bootstrap distribution is a point; scipy would warn and return NaN
        return float(x[0]), float(x[0])
    from scipy import stats  # scipy.stats takes most of a second to import: only when a CI is computed

    res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                          method="BCa" if x.size <= BCA_MAX_USERS else "percentile",
                          random_state=np.random.default_rng(ci_seed), batch=max(1, 2**24 // x.size))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_difference(a: EvalResult, b: EvalResult, ci_seed: int = 0,
                      confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean per-user reward of ``a`` minus ``b`` on the same users, and its bootstrap CI
    (low, high): the paired comparison that common random numbers allow."""
    if not np.array_equal(a.stats.user_id, b.stats.user_id):
        raise ValueError("paired_difference needs two evaluations of the same users (same seed and n_users)")
    diff = a.stats.reward - b.stats.reward
    lo, hi = bootstrap_ci(diff, ci_seed=ci_seed, confidence=confidence)
    return float(diff.mean()), lo, hi


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")
