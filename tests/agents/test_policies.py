"""Reference policies: popularity ranks by counts, the logging policy's propensities are exact,
and the oracle's expected rewards are the simulator's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftrec.agents.policies import (
    LoggingPolicy,
    OracleGreedyPolicy,
    Policy,
    PopularityPolicy,
    RandomPolicy,
    burn_in_events,
    popularity_scores,
    top_k_distinct,
    top_k_items,
)
from driftrec.agents.registry import POLICIES, make_policy
from driftrec.envs.config import ConfigError
from driftrec.envs.events import EVENT_SCHEMA, EventRecorder, load_events
from driftrec.envs.rng import user_keys
from driftrec.envs.rollout import burn_in_seeds, eval_seeds, rollout, train_seeds
from driftrec.envs.state import take_rows
from driftrec.envs.user_model import user_model_for
from driftrec.experiments.cli import main

CANDIDATES = {"action_mode": "candidates", "n_candidates": 10}


def hand_made_log() -> pd.DataFrame:
    """Items 3 (2 clicks + 1 purchase = 3), 5 (3 clicks = 3), 1 (1 click + 1 purchase = 2), 8 (1 click);
    impressions, carts, searches and views must not count."""
    rows = [(3, "click"), (3, "click"), (3, "cart"), (3, "purchase"),
            (5, "click"), (5, "click"), (5, "click"),
            (1, "click"), (1, "purchase"),
            (8, "click"),
            (9, "impression"), (9, "impression"), (9, "impression"), (9, "impression"), (9, "cart"),
            (-1, "search"), (7, "view"), (7, "view"), (7, "view"), (7, "view")]
    return pd.DataFrame({"user_id": np.arange(len(rows)), "item_id": [r[0] for r in rows],
                         "behaviour": [r[1] for r in rows]})


def advanced_state(user_model: Any, n: int, steps: int, seed: int = 0) -> Any:
    """Users ``eval_seeds(seed, n)`` after ``steps`` random requests (boredom, time, drift under way)."""
    state = user_model.init(user_keys(eval_seeds(seed, n)), np.zeros(n, dtype=np.int64))
    policy = RandomPolicy(user_model.action_space, n, seed=seed)
    for _ in range(steps):
        state, _ = user_model.step(state, policy.act(user_model.observe(state))[0], inplace=True)
    return state


# ------------------------------------------------------------------------------------- interface
def test_the_base_policy_hooks_do_nothing_and_act_is_abstract() -> None:
    policy = Policy()
    assert policy.reset(3) is None and policy.keep_rows(np.arange(2)) is None and policy.update(pd.DataFrame()) is None
    assert not policy.reads_hidden_state and not policy.uses_mask
    with pytest.raises(NotImplementedError):
        policy.act(np.zeros((2, 3)))


def test_registry_builds_every_reference_policy() -> None:
    user_model = user_model_for("stationary", {"horizon_days": 1.0})
    assert list(POLICIES) == ["random", "popularity", "oracle-greedy", "oracle-planner", "logging"]
    built = {name: make_policy(name, user_model, 4, seed=0, **({"burn_in_users": 5} if name in ("popularity", "logging")
                                                            else {}))
             for name in POLICIES}
    assert isinstance(built["random"], RandomPolicy) and isinstance(built["popularity"], PopularityPolicy)
    assert isinstance(built["oracle-greedy"], OracleGreedyPolicy) and isinstance(built["logging"], LoggingPolicy)
    assert built["oracle-greedy"].reads_hidden_state
    assert not any(built[n].reads_hidden_state for n in ("random", "popularity", "logging"))  # catalog mode
    logging = make_policy("logging", user_model, 4, seed=0, epsilon=0.5, events=hand_made_log())
    assert isinstance(logging, LoggingPolicy) and logging.epsilon == 0.5
    assert logging.popularity.ranking[0] == 3


def test_make_policy_rejects_options_a_policy_does_not_take() -> None:
    user_model = user_model_for("stationary")
    with pytest.raises(ConfigError, match=r"policy 'random' has no option 'epsilon' \(takes no options\)"):
        make_policy("random", user_model, 3, seed=0, epsilon=0.1)
    with pytest.raises(ConfigError, match=r"policy 'popularity' has no option 'epsilon' \(takes events, burn_in"):
        make_policy("popularity", user_model, 3, seed=0, epsilon=0.1)
    with pytest.raises(ConfigError, match=r"unknown policy 'nope'; choose one of: random, popularity"):
        make_policy("nope", user_model, 3)


def test_top_k_helpers_break_ties_by_index_and_skip_repeated_items() -> None:
    score = np.array([[1.0, 3.0, 3.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(top_k_items(score, 1), [[1], [0]])
    np.testing.assert_array_equal(top_k_items(score, 3), [[1, 2, 0], [0, 1, 2]])
    items = np.array([[40, 41, 41, 42], [7, 7, 7, 7]])
    # row 0: item 41 twice (columns 1 and 2) counts once; row 1 has one distinct item: it repeats
    np.testing.assert_array_equal(top_k_distinct(score, items, 2), [[1, 0], [0, 1]])
    np.testing.assert_array_equal(top_k_distinct(score, items, 3), [[1, 0, 3], [0, 1, 2]])


# ------------------------------------------------------------------------------------- popularity
def test_popularity_ranks_items_by_clicks_plus_purchases() -> None:
    np.testing.assert_array_equal(popularity_scores(hand_made_log(), 10), [0, 2, 0, 3, 0, 3, 0, 0, 1, 0])
    user_model = user_model_for("stationary", {"n_items": 10, "n_categories": 3, "slate_size": 4})
    policy = PopularityPolicy(user_model, hand_made_log())
    # 3 and 5 tie at 3: the lower id first; then 1 (2), 8 (1), then the zeros by id
    np.testing.assert_array_equal(policy.ranking, [3, 5, 1, 8, 0, 2, 4, 6, 7, 9])
    actions, prop = policy.act(np.zeros((6, 5), dtype=np.float32))
    np.testing.assert_array_equal(actions, np.tile([3, 5, 1, 8], (6, 1)))
    np.testing.assert_array_equal(prop, 1.0)
    single = PopularityPolicy(user_model_for("stationary", {"n_items": 10, "n_categories": 3}), hand_made_log())
    actions, prop = single.act(np.zeros((2, 5), dtype=np.float32))
    assert actions.shape == prop.shape == (2,) and (actions == 3).all()


def test_popularity_rejects_logs_that_do_not_fit_the_catalog() -> None:
    user_model = user_model_for("stationary", {"n_items": 6, "n_categories": 3})
    with pytest.raises(ValueError, match=r"event log row 5: item_id 8 is not in the catalog \[0, 6\)"):
        PopularityPolicy(user_model, pd.DataFrame({"item_id": [1, 2, 3, 1, 1, 8], "behaviour": ["click"] * 6}))
    with pytest.raises(ValueError, match="no column 'behaviour'"):
        PopularityPolicy(user_model, pd.DataFrame({"item_id": [1]}))


def test_popularity_in_candidates_mode_picks_the_best_ranked_candidates() -> None:
    user_model = user_model_for("default", {**CANDIDATES, "slate_size": 3})
    scores = np.random.default_rng(0).random(user_model.cfg.n_items)
    policy = PopularityPolicy(user_model).fit_scores(scores)
    assert policy.reads_hidden_state  # reads state.cand, the candidates' item ids
    state = advanced_state(user_model, 50, 3)
    actions, prop = policy.act(user_model.observe(state), state=state)
    chosen = np.take_along_axis(state.cand, actions, axis=1)
    best = np.sort(scores[state.cand], axis=1)[:, ::-1][:, :3]
    np.testing.assert_array_equal(scores[chosen], best)
    np.testing.assert_array_equal(prop, 1.0)
    with pytest.raises(ValueError, match="state.cand"):
        policy.act(user_model.observe(state))


# ------------------------------------------------------------------------------------- logging
@pytest.mark.parametrize("epsilon", [0.3, 0.8])
def test_logging_propensities_are_the_exact_choice_frequencies(epsilon: float) -> None:
    user_model = user_model_for("stationary", {"n_items": 12, "n_categories": 3, "slate_size": 2})
    policy = LoggingPolicy(user_model, seed=4, epsilon=epsilon, events=hand_made_log())
    n = 60_000
    obs = np.zeros((n, user_model.observation_space.shape[0]), dtype=np.float32)
    actions, prop = policy.act(obs)
    dist = policy.distribution(obs)
    assert dist.shape == (n, 2, 12)
    np.testing.assert_allclose(dist.sum(axis=2), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(prop, np.take_along_axis(dist, actions[:, :, None], axis=2)[:, :, 0])
    top = [3, 5]  # the popularity slate: position 0 shows item 3, position 1 item 5
    for k in range(2):
        want = np.full(12, epsilon / 12)
        want[top[k]] += 1 - epsilon
        np.testing.assert_allclose(dist[0, k], want, rtol=1e-12)
        freq = np.bincount(actions[:, k], minlength=12) / n
        sd = np.sqrt(want * (1 - want) / n)
        assert (np.abs(freq - want) < 4.5 * sd).all(), (k, freq, want)
        np.testing.assert_allclose(prop[:, k], want[actions[:, k]], rtol=1e-12)


def test_logging_epsilon_edges_are_popularity_and_random() -> None:
    user_model = user_model_for("stationary", {"n_items": 12, "n_categories": 3})
    obs = np.zeros((5000, user_model.observation_space.shape[0]), dtype=np.float32)
    greedy, prop = LoggingPolicy(user_model, seed=1, epsilon=0.0, events=hand_made_log()).act(obs)
    assert (greedy == 3).all() and (prop == 1.0).all()
    uniform, prop = LoggingPolicy(user_model, seed=1, epsilon=1.0, events=hand_made_log()).act(obs)
    np.testing.assert_allclose(prop, 1 / 12, rtol=1e-12)
    freq = np.bincount(uniform, minlength=12) / len(uniform)
    assert np.abs(freq - 1 / 12).max() < 4.5 * np.sqrt(1 / 12 * 11 / 12 / 5000)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="'epsilon' must be in \\[0, 1\\]"):
            LoggingPolicy(user_model, epsilon=bad, events=hand_made_log())


def test_logging_propensities_reach_the_event_log() -> None:
    user_model = user_model_for("default", {"horizon_days": 1.0})
    policy = LoggingPolicy(user_model, seed=0, epsilon=0.3, burn_in_users=50)
    recorder = EventRecorder(user_model)
    rollout(user_model, policy, train_seeds(0, 100), recorder=recorder)
    events = recorder.to_table().to_pandas()
    shown = events[events["behaviour"] == "impression"]
    top = policy.popularity.ranking[0]
    want = 0.3 / user_model.cfg.n_items + 0.7 * (shown["item_id"].to_numpy() == top)
    np.testing.assert_allclose(shown["propensity"].to_numpy(), want, rtol=1e-12)
    # the popular item is shown about 70% + 0.3 / 500 of the time
    share = (shown["item_id"] == top).mean()
    assert abs(share - (0.7 + 0.3 / 500)) < 4.5 * np.sqrt(0.3 * 0.7 / len(shown))


def test_logging_in_candidates_mode_mixes_over_the_candidates() -> None:
    user_model = user_model_for("default", {**CANDIDATES, "slate_size": 2})
    policy = LoggingPolicy(user_model, seed=2, epsilon=0.4, burn_in_users=30)
    assert policy.reads_hidden_state
    state = advanced_state(user_model, 3000, 2)
    actions, prop = policy.act(user_model.observe(state), state=state)
    greedy = policy.popularity.greedy(3000, state)
    np.testing.assert_allclose(prop, 0.4 / 10 + 0.6 * (actions == greedy), rtol=1e-12)
    share = (actions == greedy).mean()
    assert abs(share - (0.6 + 0.04)) < 4.5 * np.sqrt(0.64 * 0.36 / 6000)


def test_burn_in_uses_its_own_users_and_is_deterministic() -> None:
    user_model = user_model_for("stationary", {"horizon_days": 2.0})
    log = burn_in_events(user_model, seed=9, n_users=20)
    assert set(log["user_id"]) <= set(burn_in_seeds(9, 20).tolist()) and log["user_id"].nunique() > 15
    again = burn_in_events(user_model, seed=9, n_users=20)
    pd.testing.assert_frame_equal(log, again)
    a = make_policy("popularity", user_model, 1, seed=9, burn_in_users=20)
    assert isinstance(a, PopularityPolicy)
    np.testing.assert_array_equal(a.scores, popularity_scores(log, user_model.cfg.n_items))
    with pytest.raises(ConfigError, match="'burn_in_users' must be >= 1"):
        make_policy("logging", user_model, 1, seed=9, burn_in_users=0)


# ------------------------------------------------------------------------------------- oracle
ORACLE_CONFIGS = {
    "default": ("default", {}),
    "slate-cascade-revenue": ("default", {"slate_size": 3, "choice_model": "cascade", "reward_cart": 0.5,
                                          "reward_revenue": 0.05}),
    "candidates": ("default", CANDIDATES),
    "stationary": ("stationary", {}),
    "recsim-ie": ("recsim-ie", {}),
}


@pytest.mark.parametrize("name", [n for n in ORACLE_CONFIGS if n != "recsim-ie"])
def test_oracle_scores_equal_the_models_one_item_choice_probabilities(name: str) -> None:
    preset, overrides = ORACLE_CONFIGS[name]
    user_model = user_model_for(preset, overrides)
    oracle = OracleGreedyPolicy(user_model)
    state = advanced_state(user_model, 40, 25)  # boredom built up, time past day 0 for some
    items = np.asarray(state.cand) if user_model.m else np.broadcast_to(np.arange(user_model.cfg.n_items), (40, 500))
    got = oracle.expected_rewards(state)
    # reference: model.choice_probs of each one-item slate (the MNL or cascade of envs/choice.py over
    # ShopModel.utility), a different path from the oracle's cached static scores and one-item sigmoid
    want = np.stack([oracle.slate_expected_reward(state, items[:, j:j + 1]) for j in range(items.shape[1])], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(ORACLE_CONFIGS))
def test_oracle_expected_reward_matches_the_simulated_reward(name: str) -> None:
    """The oracle's exact expected reward of what it shows, summed over many requests, matches the
    reward the simulator pays (within 4.5 standard errors): its math is the simulator's."""
    preset, overrides = ORACLE_CONFIGS[name]
    user_model = user_model_for(preset, overrides)
    oracle = OracleGreedyPolicy(user_model)
    n, steps = 2000, 15
    state = user_model.init(user_keys(eval_seeds(1, n)), np.zeros(n, dtype=np.int64))
    diffs, expected = [], []
    for _ in range(steps):
        actions, _ = oracle.act(user_model.observe(state), state=state)
        items = user_model.slate_items(state, actions)
        if user_model.k == 1:  # the oracle's own score of the item it shows (column = item id or candidate index)
            exp = oracle.expected_rewards(state)[np.arange(n), np.asarray(actions).reshape(n)]
            np.testing.assert_allclose(exp, oracle.slate_expected_reward(state, items), rtol=1e-10)
        else:  # a slate: the items compete, so its exact value comes from the choice model
            exp = oracle.slate_expected_reward(state, items)
        state, out = user_model.step(state, actions, inplace=True)
        diffs.append(out.reward - exp)
        expected.append(exp)
    d = np.concatenate(diffs)
    se = d.std() / np.sqrt(d.size)
    assert np.mean(expected) > 20 * se  # the rewards are far from 0 at this precision: the check has power
    assert abs(d.mean()) < 4.5 * se, (d.mean(), se)


@pytest.mark.parametrize("name", ["default", "slate-cascade-revenue", "stationary"])
def test_oracle_cached_actions_are_the_best_items(name: str) -> None:
    preset, overrides = ORACLE_CONFIGS[name]
    user_model = user_model_for(preset, overrides)
    oracle, fresh = OracleGreedyPolicy(user_model), OracleGreedyPolicy(user_model)
    n = 300
    state = user_model.init(user_keys(eval_seeds(2, n)), np.zeros(n, dtype=np.int64))
    oracle.reset(n)
    for step in range(40):
        if step == 20:  # the batch shrinks, as the rollout does when users finish
            keep = np.arange(0, n, 3)
            state, n = take_rows(state, keep), len(keep)
            oracle.keep_rows(keep)
        actions, prop = oracle.act(user_model.observe(state), state=state)
        actions = actions.reshape(n, -1)
        scores = fresh.expected_rewards(state)
        np.testing.assert_array_equal(actions, top_k_items(scores, user_model.k))
        best = np.sort(scores, axis=1)[:, ::-1][:, :user_model.k]
        np.testing.assert_array_equal(np.take_along_axis(scores, actions, axis=1), best)
        assert (prop == 1).all()
        state, _ = user_model.step(state, actions, inplace=True)


def test_oracle_needs_the_state() -> None:
    user_model = user_model_for("default")
    with pytest.raises(ValueError, match="pass state="):
        OracleGreedyPolicy(user_model).act(np.zeros((2, user_model.observation_space.shape[0]), dtype=np.float32))


def test_oracle_on_recsim_ie_picks_the_likeliest_distinct_candidates() -> None:
    user_model = user_model_for("recsim-ie")
    state = advanced_state(user_model, 200, 5)
    actions, _ = OracleGreedyPolicy(user_model).act(user_model.observe(state), state=state)
    cats = user_model.world.category[state.cand]
    weight = np.take_along_axis(state.interest, cats, axis=1) + 1.0
    chosen = np.take_along_axis(weight, actions, axis=1)
    items = np.take_along_axis(state.cand, actions, axis=1)
    distinct = np.array([len(set(row)) for row in state.cand])
    ok = distinct >= 2
    assert (items[ok, 0] != items[ok, 1]).all()
    # the best candidate's weight comes first; nothing distinct beats the second
    np.testing.assert_allclose(chosen[:, 0], weight.max(axis=1))
    assert (chosen[:, 0] >= chosen[:, 1]).all()


# ------------------------------------------------------------------------------------- through the CLI
def test_simulate_serves_the_reference_policies(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    base = ["simulate", "--preset", "default", "--users", "15", "--days", "1", "--seed", "2"]
    logs = tmp_path / "logs.parquet"
    log = hand_made_log().assign(session_id=0, timestamp=np.datetime64("2026-01-01", "ms"), category=0, position=0,
                                 price=1.0, reward=0.0, propensity=np.nan)
    pq.write_table(pa.Table.from_pandas(log[EVENT_SCHEMA.names], preserve_index=False).cast(EVENT_SCHEMA), logs)

    out = tmp_path / "logging.parquet"
    assert main([*base, "--policy", "logging", "--epsilon", "0.5", "--policy-logs", str(logs), "--out", str(out)]) == 0
    assert "policy logging" in capsys.readouterr().out
    shown = load_events(out).query("behaviour == 'impression'")
    want = 0.5 / 500 + 0.5 * (shown["item_id"].to_numpy() == 3)  # item 3 tops the hand-made log
    np.testing.assert_allclose(shown["propensity"].to_numpy(), want, rtol=1e-12)

    out = tmp_path / "popular.parquet"
    assert main([*base, "--policy", "popularity", "--policy-logs", str(logs), "--out", str(out)]) == 0
    assert set(load_events(out).query("behaviour == 'impression'")["item_id"]) == {3}
    out = tmp_path / "oracle.parquet"
    assert main([*base, "--policy", "oracle-greedy", "--out", str(out)]) == 0
    assert (load_events(out)["propensity"].dropna() == 1.0).all()
    capsys.readouterr()

    for extra, needle in [(["--policy", "random", "--epsilon", "0.1"], "--epsilon is for the logging policy"),
                          (["--policy", "oracle-greedy", "--policy-logs", str(logs)], "--policy-logs is for"),
                          (["--policy", "logging", "--epsilon", "2"], "'epsilon' must be in [0, 1]"),
                          (["--policy", "popularity", "--policy-logs", str(tmp_path / "none.parquet")],
                           "no such file")]:
        bad = tmp_path / "bad.parquet"
        assert main([*base, *extra, "--out", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("driftrec: error: ") and err.count("\n") == 1 and needle in err, err
        assert not bad.exists()
