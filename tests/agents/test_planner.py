"""oracle-planner: it beats oracle-greedy where a click's quality outlives its request, is
oracle-greedy on ``bandit``, tunes on validation users only, is deterministic, and acts validly
with slates and candidates.

Users are paired with common random numbers: the same evaluation seeds give the same users and
the same per-request uniforms under both policies, so the paired difference has a small variance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from driftrec.agents import planner as planner_module
from driftrec.agents.planner import OraclePlannerPolicy, ShopFuture, tune_planner
from driftrec.agents.policies import OracleGreedyPolicy, RandomPolicy
from driftrec.agents.registry import make_policy
from driftrec.envs.config import ConfigError
from driftrec.envs.rng import user_keys
from driftrec.envs.rollout import eval_seeds, rollout, validation_seeds
from driftrec.envs.shop import MINUTES_PER_DAY
from driftrec.envs.state import take_rows
from driftrec.envs.user_model import user_model_for

SEED = 7
TINY = {"n_items": 60, "n_categories": 6, "horizon_days": 10.0}
"""A small catalog and 10-day lives: a rollout of a few hundred users takes a few hundredths of a
second, and on ``clickbait`` (appeal against quality, a bad click costs patience, satisfaction
drives churn) the long-term effects are strong."""
N_EVAL = 400
Z_REQUIRED = 4.0  # the planner's paired gain must lie beyond this many standard errors (measured: ~9)
TUNING = {"validation_users": 150, "grid": [0.0, 1.0, 2.0]}


def tiny(preset: str, **overrides: Any) -> Any:
    return user_model_for(preset, {**(TINY if preset != "recsim-ie" else {}), **overrides})


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of the paired differences a - b and its standard error."""
    diff = a - b
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))


def advanced_state(user_model: Any, n: int, steps: int = 8) -> Any:
    """Evaluation users after ``steps`` random requests (patience, satisfaction, boredom under way)."""
    state = user_model.init(user_keys(eval_seeds(SEED, n)), np.zeros(n, dtype=np.int64))
    policy = RandomPolicy(user_model.action_space, n, seed=SEED)
    for _ in range(steps):
        state, _ = user_model.step(state, policy.act(user_model.observe(state))[0], inplace=True)
    return state


@pytest.mark.parametrize("preset", ["clickbait", "recsim-ie"])
def test_planner_beats_greedy_where_long_term_effects_exist(preset: str) -> None:
    """Tuned on validation users, the planner earns more per user than oracle-greedy on the same
    held-out evaluation users, by more than Z_REQUIRED standard errors of the paired difference
    and by at least 5%."""
    user_model = tiny(preset)
    planner = make_policy("oracle-planner", user_model, N_EVAL, SEED, **TUNING)
    assert planner.tuning["future_weight"] > 0, planner.tuning
    seeds = eval_seeds(SEED, N_EVAL)
    greedy = rollout(user_model, OracleGreedyPolicy(user_model), seeds).reward
    planned = rollout(user_model, planner, seeds).reward
    gain, se = paired(planned, greedy)
    summary = (f"{preset}: planner {planned.mean():.2f} vs greedy {greedy.mean():.2f} per user; "
               f"gain {gain:.2f} +- {se:.2f}")
    assert gain > Z_REQUIRED * se, summary
    assert planned.mean() >= 1.05 * greedy.mean(), summary


def test_planner_is_greedy_on_bandit() -> None:
    """With every long-term channel off the planned score is the expected immediate reward, so the
    planner, tuned or with any weight, earns exactly what oracle-greedy earns, user by user."""
    user_model = tiny("bandit")
    tuned = make_policy("oracle-planner", user_model, N_EVAL, SEED, **TUNING)
    assert tuned.tuning["future_weight"] == 0.0 and tuned.tuning["env_steps"] == 0, tuned.tuning
    seeds = eval_seeds(SEED, N_EVAL)
    greedy = rollout(user_model, OracleGreedyPolicy(user_model), seeds).reward
    for policy in (tuned, OraclePlannerPolicy(user_model, 3.0)):
        np.testing.assert_array_equal(rollout(user_model, policy, seeds).reward, greedy)


def test_tuning_reads_only_validation_users(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every user tuning meets is a validation user of the run's seed, one rollout per grid point,
    and none is an evaluation user."""
    met: list[np.ndarray] = []
    real = planner_module.rollout

    def spy(user_model: Any, policy: Any, seeds: Any, **kwargs: Any) -> Any:
        met.append(np.asarray(seeds).copy())
        return real(user_model, policy, seeds, **kwargs)

    monkeypatch.setattr(planner_module, "rollout", spy)
    policy = tune_planner(tiny("clickbait"), SEED, validation_users=60, grid=(0.0, 1.0))
    assert len(met) == 2
    for seeds in met:
        np.testing.assert_array_equal(seeds, validation_seeds(SEED, 60))
        assert not np.isin(seeds, eval_seeds(SEED, 100_000)).any()
    assert policy.tuning["validation_first_seed"] == validation_seeds(SEED, 1)[0]
    assert policy.tuning["env_steps"] > 0 and len(policy.tuning["validation_reward"]) == 2


@pytest.mark.parametrize("overrides", [{}, {"action_mode": "candidates", "n_candidates": 10, "slate_size": 2}])
def test_weight_zero_is_oracle_greedy(overrides: dict[str, Any]) -> None:
    """future_weight = 0 shows exactly oracle-greedy's slates (its scores are greedy's, bit for bit)."""
    user_model = tiny("default", **overrides)
    state = advanced_state(user_model, 200)
    obs = user_model.observe(state)
    np.testing.assert_array_equal(OraclePlannerPolicy(user_model, 0.0).act(obs, state=state)[0],
                                  OracleGreedyPolicy(user_model).act(obs, state=state)[0])


def test_planner_is_deterministic() -> None:
    """Two planners built from the same seed tune to the same weight on the same validation rewards
    and act alike; acting twice on one state gives the same slates."""
    user_model = tiny("clickbait")
    a = make_policy("oracle-planner", user_model, 100, SEED, validation_users=40, grid=[0.0, 1.0])
    b = make_policy("oracle-planner", user_model, 100, SEED, validation_users=40, grid=[0.0, 1.0])
    drop = {"tuning_s"}
    assert {k: v for k, v in a.tuning.items() if k not in drop} == {k: v for k, v in b.tuning.items() if k not in drop}
    state = advanced_state(user_model, 100)
    obs = user_model.observe(state)
    first = a.act(obs, state=state)[0]
    np.testing.assert_array_equal(first, a.act(obs, state=state)[0])
    np.testing.assert_array_equal(first, b.act(obs, state=state)[0])


@pytest.mark.parametrize(("preset", "overrides"), [
    ("default", {"slate_size": 3}),
    ("default", {"slate_size": 3, "choice_model": "cascade"}),
    ("default", {"action_mode": "candidates", "n_candidates": 10}),
    ("clickbait", {"action_mode": "candidates", "n_candidates": 8, "slate_size": 3}),
    ("recsim-ie", {}),
])
def test_slates_and_candidates_act_validly(preset: str, overrides: dict[str, Any]) -> None:
    """Actions lie in the action space, a slate holds distinct items best first (its first item is
    the planned score's argmax), propensities are 1, and the model steps on them."""
    user_model = tiny(preset, **overrides)
    state = advanced_state(user_model, 120)
    policy = OraclePlannerPolicy(user_model, 1.0)
    actions, prop = policy.act(user_model.observe(state), state=state)
    assert actions.shape == (120, *user_model.action_space.shape)
    assert all(user_model.action_space.contains(a) for a in actions)
    np.testing.assert_array_equal(prop, np.ones(actions.shape))
    slate = actions.reshape(120, -1)
    items = user_model.slate_items(state, slate)
    assert all(len(set(row)) == len(row) for row in items)
    universe = np.asarray(state.cand) if user_model.m else np.arange(user_model.cfg.n_items)[None, :]
    np.testing.assert_array_equal(slate[:, 0], np.argmax(policy.scores(state, universe), axis=1))
    user_model.step(state, actions)


def test_the_planners_channels_are_the_simulators() -> None:
    """The rules the planner plans with are the step's: users who click and whose session goes on
    lose 1 - refund(q) patience and move their satisfaction to ``satisfied(s, q)``; at session ends
    the churn frequency is ``churn_prob`` and the gaps have mean ``mean_gap`` (of the satisfaction
    at the end), each within Z_REQUIRED standard errors over a few thousand session ends of users
    shown random items."""
    user_model = tiny("clickbait", horizon_days=3650.0)  # no life reaches it: no gap is cut short (censored)
    cfg, n = user_model.cfg, 2000
    future = ShopFuture(user_model)
    policy = RandomPolicy(user_model.action_space, n, seed=SEED)
    state = user_model.init(user_keys(eval_seeds(SEED, n)), np.zeros(n, dtype=np.int64))
    churn_seen, churn_expected, gap_ratio, clicks = [], [], [], 0
    for _ in range(40):
        after, out = user_model.step(state, policy.act(user_model.observe(state))[0])
        done = out.terminated | out.truncated
        went_on = (out.click_pos >= 0) & (after.session == state.session) & ~done
        q = user_model.world.quality[out.items[went_on, 0]]
        np.testing.assert_allclose(after.patience[went_on], state.patience[went_on] - 1.0 + future.refund(q))
        np.testing.assert_allclose(after.satisfaction[went_on], future.satisfied(state.satisfaction[went_on], q))
        clicks += int(went_on.sum())
        ended = (after.session != state.session) | done
        churn_seen.append(out.terminated[ended])
        churn_expected.append(future.churn_prob(after.satisfaction[ended]))
        back = after.session != state.session
        gap = after.time[back] - state.time[back] - cfg.request_minutes / MINUTES_PER_DAY - cfg.gap_min_days
        gap_ratio.append(gap / (future.mean_gap(after.satisfaction[back]) - cfg.gap_min_days))  # Exp(1)
        state = take_rows(after, np.flatnonzero(~done))
    seen, expected, ratio = np.concatenate(churn_seen), np.concatenate(churn_expected), np.concatenate(gap_ratio)
    assert clicks > 500 and seen.size > 1000 and ratio.size > 1000 and not out.truncated.any()
    churn_se = np.sqrt((expected * (1.0 - expected)).sum()) / seen.size
    assert abs(seen.mean() - expected.mean()) < Z_REQUIRED * churn_se, (seen.mean(), expected.mean(), churn_se)
    assert abs(ratio.mean() - 1.0) < Z_REQUIRED / np.sqrt(ratio.size), ratio.mean()


@pytest.mark.parametrize("options", [{"future_weight": -1.0}, {"future_weight": float("nan")}, {"grid": []},
                                     {"grid": [0.0, -1.0]}, {"validation_users": 0}, {"lookahead": 1.0}])
def test_bad_options_are_one_line_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="oracle-planner|option"):
        make_policy("oracle-planner", tiny("bandit"), 10, SEED, **options)


def test_a_given_weight_skips_tuning() -> None:
    policy = make_policy("oracle-planner", tiny("clickbait"), 10, SEED, future_weight=1.5)
    assert isinstance(policy, OraclePlannerPolicy) and policy.future_weight == 1.5 and policy.tuning == {}


def test_scoring_in_chunks_equals_the_cached_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch too large for the static-score cache is scored in chunks of rows, to the same slates."""
    user_model = tiny("default", slate_size=2)
    state = advanced_state(user_model, 90)
    obs = user_model.observe(state)
    cached = OraclePlannerPolicy(user_model, 1.0).act(obs, state=state)[0]
    monkeypatch.setattr(planner_module, "_CACHE_ELEMENTS", 10)
    monkeypatch.setattr(planner_module, "_CHUNK_ELEMENTS", 25 * user_model.cfg.n_items)  # chunks of 25 users
    np.testing.assert_array_equal(OraclePlannerPolicy(user_model, 1.0).act(obs, state=state)[0], cached)
