"""Policy evaluation: oracle-greedy > popularity > random, deterministic summaries, common random
numbers (every policy meets the same users), and metrics that mean what the docs say."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from driftrec.agents.evaluate import (
    EvalResult,
    bootstrap_ci,
    evaluate_policy,
    paired_difference,
)
from driftrec.agents.policies import Policy, PopularityPolicy
from driftrec.agents.registry import make_policy
from driftrec.envs.presets import preset_config
from driftrec.envs.rollout import eval_seeds
from driftrec.envs.user_model import build_user_model

N_USERS = 1000


@pytest.mark.parametrize("preset", ["default", "stationary"])
def test_oracle_beats_popularity_beats_random(preset: str) -> None:
    # one day of life keeps the test fast; the ordering holds for the full horizon too (see the report)
    cfg = preset_config(preset, {"horizon_days": 1.0})
    user_model = build_user_model(cfg)
    # popularity learns from a random burn-in log big enough to rank 500 items (the default 200
    # one-day users see each item about 4 times: its top item is then a coin flip)
    options = {"popularity": {"burn_in_users": 2000}}
    results = {name: evaluate_policy(make_policy(name, user_model, N_USERS, seed=0, **options.get(name, {})), cfg,
                                     N_USERS,
                                     seed=0, user_model=user_model)
               for name in ("random", "popularity", "oracle-greedy")}
    oracle, popularity, random = (results[n] for n in ("oracle-greedy", "popularity", "random"))
    assert oracle.summary["reward"] > popularity.summary["reward"] > random.summary["reward"]
    # the paired differences on the same users exclude 0
    diff, lo, hi = paired_difference(oracle, popularity)
    assert 0 < lo <= diff <= hi, (diff, lo, hi)
    diff, lo, hi = paired_difference(popularity, random)
    assert 0 < lo <= diff <= hi, (diff, lo, hi)
    # popularity's and random's CIs are far apart
    assert popularity.summary["reward_ci_low"] > random.summary["reward_ci_high"]


def test_evaluation_is_deterministic_and_policies_meet_the_same_users() -> None:
    cfg = preset_config("default", {"horizon_days": 2.0})
    user_model = build_user_model(cfg)

    def run(name: str) -> tuple[EvalResult, np.ndarray]:
        spy = FirstObservation(make_policy(name, user_model, 300, seed=3, **({"burn_in_users": 20}
                                                                         if name == "popularity" else {})))
        return evaluate_policy(spy, cfg, 300, seed=3, batch=128, user_model=user_model), spy.first

    first, obs_first = run("random")
    again, obs_again = run("random")
    drop = {"wall_s"}
    assert {k: v for k, v in first.summary.items() if k not in drop} == \
        {k: v for k, v in again.summary.items() if k not in drop}
    assert first.users.equals(again.users)
    np.testing.assert_array_equal(first.stats.daily_reward, again.stats.daily_reward)

    popular, obs_popular = run("popularity")
    np.testing.assert_array_equal(first.stats.user_id, eval_seeds(3, 300))
    np.testing.assert_array_equal(popular.stats.user_id, first.stats.user_id)
    np.testing.assert_array_equal(obs_first, obs_again)
    np.testing.assert_array_equal(obs_popular, obs_first)  # the same users, before any action
    assert popular.summary["reward"] != first.summary["reward"]
    # a different seed meets other users
    other = evaluate_policy(make_policy("random", user_model, 300, seed=3), cfg, 300, seed=4, user_model=user_model)
    assert other.summary["reward"] != first.summary["reward"]


class FirstObservation(Policy):
    """Wraps a policy and keeps the observations of the first request of each batch."""

    def __init__(self, inner: Policy):
        self.inner = inner
        self.reads_hidden_state = inner.reads_hidden_state
        self.first_parts: list[np.ndarray] = []
        self._fresh = False

    @property
    def first(self) -> np.ndarray:
        return np.concatenate(self.first_parts)

    def reset(self, n_users: int) -> None:
        self._fresh = True
        self.inner.reset(n_users)

    def act(self, obs: Any, mask: np.ndarray | None = None, *,
            state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        if self._fresh:
            self.first_parts.append(np.array(obs))
            self._fresh = False
        kwargs = {"state": state} if self.reads_hidden_state else {}
        return self.inner.act(obs, mask, **kwargs)


def test_summary_metrics_follow_their_definitions() -> None:
    cfg = preset_config("stationary", {"horizon_days": 2.0})
    user_model = build_user_model(cfg)
    res = evaluate_policy(make_policy("random", user_model, 400, seed=0), cfg, 400, seed=0, user_model=user_model)
    s, u = res.summary, res.users
    assert s["users"] == 400 and len(u) == 400
    assert s["reward_ci_low"] < s["reward"] < s["reward_ci_high"]
    assert s["reward"] == pytest.approx(u["reward"].mean())
    assert s["ctr"] == pytest.approx(u["clicks"].sum() / u["impressions"].sum())
    assert s["conversion"] == pytest.approx(u["purchases"].sum() / u["clicks"].sum())
    assert s["session_length"] == pytest.approx(u["requests"].sum() / u["sessions"].sum())
    assert s["churn"] == pytest.approx(u["churned"].mean())
    assert 0.9 < s["coverage"] <= 1.0  # random shows almost every item
    assert s["diversity"] == pytest.approx((u["categories"] / np.minimum(cfg.n_categories, u["impressions"])).mean())
    assert 0.5 < s["diversity"] <= 1.0  # random items span many categories
    assert s["wall_s"] > 0 and res.ci_method == "BCa"
    np.testing.assert_allclose(res.daily_mean().sum(), s["reward"], rtol=1e-12)
    assert set(res.daily.columns) == {"user_id", "day", "reward"}

    # popularity shows one item: coverage 1 / n_items, diversity 1 / min(categories, impressions)
    top = PopularityPolicy(user_model).fit_scores(np.arange(cfg.n_items, dtype=float))
    res = evaluate_policy(top, cfg, 200, seed=0, user_model=user_model)
    assert res.summary["coverage"] == 1 / cfg.n_items
    shown = res.stats.impressions
    assert res.summary["diversity"] == pytest.approx(np.mean(1 / np.minimum(cfg.n_categories, shown)))
    assert res.summary["reward_ci_low"] <= res.summary["reward"] <= res.summary["reward_ci_high"]


def test_bootstrap_ci_is_seeded_and_handles_degenerate_samples() -> None:
    x = np.random.default_rng(0).exponential(size=500)
    lo, hi = bootstrap_ci(x, ci_seed=1)
    assert lo < x.mean() < hi and (lo, hi) == bootstrap_ci(x, ci_seed=1)
    assert hi - lo == pytest.approx(2 * 1.96 * x.std() / np.sqrt(500), rel=0.15)
    assert bootstrap_ci(np.full(10, 2.5)) == (2.5, 2.5)
    assert all(np.isnan(bootstrap_ci(np.array([1.0]))))


def test_evaluation_rejects_bad_arguments() -> None:
    cfg = preset_config("stationary", {"horizon_days": 1.0})
    user_model = build_user_model(cfg)
    policy = make_policy("random", user_model, 5, seed=0)
    with pytest.raises(ValueError, match="n_users must be >= 1"):
        evaluate_policy(policy, cfg, 0, seed=0)
    with pytest.raises(ValueError, match="model.cfg differs"):
        evaluate_policy(policy, preset_config("default"), 5, seed=0, user_model=user_model)
    a = evaluate_policy(policy, cfg, 5, seed=0, user_model=user_model)
    b = evaluate_policy(policy, cfg, 5, seed=1, user_model=user_model)
    with pytest.raises(ValueError, match="same users"):
        paired_difference(a, b)
