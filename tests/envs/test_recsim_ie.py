"""recsim-ie: one test (or more) per rule re-derived from RecSim's interest-evolution source
(google-research/recsim: environments/interest_evolution.py, choice_model.py, simulator/environment.py),
plus conformance with both env checkers. Seeds are fixed; statistical checks use explicit binomial /
standard-error tolerances (4 to 5 sigma), so a wrong rule fails and a right one never flakes. The
trajectory tests compare whole lives, bit for bit, with a line-by-line transcription of RecSim's
IEvUserModel fed the same uniforms."""

from __future__ import annotations

import dataclasses
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from scipy import stats

from driftrec.envs import ConfigError, ShopSimEnv, SimConfig, make_vec_env, user_model_for
from driftrec.envs import rng as rngs
from driftrec.envs.recsim_ie import RecSimIEModel, RecSimIEState
from driftrec.envs.state import CLICK, PAD, copy_state

# RecSim's constants, written as its source evaluates them
ALPHA = 0.9 * (1.0 / 3.4)  # UtilityModelUserSampler: user_update_alpha = alpha * utility_range
MEANS = np.concatenate((np.linspace(-3.0, 0, int(20 * 0.7)), np.linspace(0, 3.0, int(20 * 0.3))))


def _model(**overrides: object) -> RecSimIEModel:
    return user_model_for("recsim-ie", overrides)


def _users(user_model: RecSimIEModel, n: int, seed: int = 0) -> RecSimIEState:
    return user_model.init(rngs.user_keys(seed + np.arange(n)), np.zeros(n, dtype=np.int64))


def _slate(n: int, first: int = 0, second: int = 1) -> np.ndarray:
    return np.tile(np.array([first, second], dtype=np.int64), (n, 1))


def _formula(interest: np.ndarray, items: np.ndarray, category: np.ndarray) -> np.ndarray:
    """DESIGN.md's choice rule for a slate of 2, written out independently of the module:
    (N, 3). A document repeated in the slate is shown (and counted) once."""
    n, k = items.shape
    cats = category[items]
    shown = np.column_stack([np.ones(n, dtype=bool), items[:, 1] != items[:, 0]])
    weight = np.zeros((n, k))
    for j in range(k):
        weight[:, j] = (interest[np.arange(n), cats[:, j]] + 1.0) * shown[:, j]
    denom = weight.sum(axis=1) + 2.0
    return np.column_stack([weight / denom[:, None], 2.0 / denom])


# ----------------------------------------------------------------------------- preset and config
def test_preset_shape_of_the_problem() -> None:
    m = _model()
    assert (m.k, m.m, m.cfg.n_items) == (2, 10, 1000)
    assert m.action_space == gym.spaces.MultiDiscrete([10, 10])
    assert m.observation_space.shape == (20 + 10 * 20,)
    assert _model(slate_size=1).action_space == gym.spaces.Discrete(10)


@pytest.mark.parametrize(("overrides", "key"), [
    ({"action_mode": "catalog"}, "action_mode"),
    ({"n_categories": 10}, "n_categories"),
    ({"topic_dim": 8}, "topic_dim"),
    ({"n_items": 8}, "n_candidates"),  # 10 distinct candidates need 10 documents
    ({"slate_size": 11}, "slate_size"),  # RecSim's Environment asserts slate_size <= num_candidates
])
def test_unsupported_config_raises_one_line_error_naming_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{key}'") as err:
        _model(**overrides)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        ShopSimEnv("recsim-ie", **overrides)


def test_recsim_model_refuses_another_models_config() -> None:
    cfg = dataclasses.replace(_model().cfg, model="shop")
    with pytest.raises(ConfigError, match="'model'"):
        RecSimIEModel(cfg)


# ----------------------------------------------------------------------------- documents
def test_corpus_quality_is_normal_around_the_cluster_means() -> None:
    m = _model(n_items=40_000)
    w = m.world
    np.testing.assert_allclose(w.cluster_mean, MEANS, rtol=0, atol=1e-15)
    assert w.category.dtype == np.int64 and np.all(np.diff(w.category) >= 0)
    counts = np.bincount(w.category, minlength=20)
    assert counts.size == 20 and stats.chisquare(counts).pvalue > 1e-4  # cluster uniform over 20
    for c in range(20):
        q = w.quality[w.category == c]
        assert abs(q.mean() - MEANS[c]) < 5 * 0.1 / math.sqrt(q.size), c
        assert abs(q.std() - 0.1) < 5 * 0.1 / math.sqrt(2 * q.size), c
    np.testing.assert_array_equal(w.length, 4.0)
    np.testing.assert_array_equal(w.price, 0.0)
    assert not w.quality.flags.writeable
    # the world is a function of world_seed only
    np.testing.assert_array_equal(_model(n_items=40_000).world.quality, w.quality)
    assert not np.array_equal(_model(n_items=40_000, world_seed=1).world.quality, w.quality)


def test_cluster_means_split_trashy_and_nutritious_like_recsim() -> None:
    """UtilityModelVideoSampler: linspace(-3, 0, int(20 * 0.7)) then linspace(0, 3, int(20 * 0.3))."""
    np.testing.assert_array_equal(_model().world.cluster_mean, MEANS)
    assert MEANS.size == 20 and np.all(MEANS[:14] <= 0.0) and np.all(MEANS[14:] >= 0.0)
    assert MEANS[0] == -3.0 and MEANS[13] == 0.0 and MEANS[14] == 0.0 and MEANS[19] == 3.0
    np.testing.assert_allclose(np.diff(MEANS[:14]), 3.0 / 13, rtol=1e-12)
    np.testing.assert_allclose(np.diff(MEANS[14:]), 3.0 / 5, rtol=1e-12)


@pytest.mark.parametrize(("n_items", "n_cand"), [(1000, 10), (12, 10)])  # sparse (redraws) and dense (permutation)
def test_candidates_are_distinct_documents_uniform_over_ordered_samples(n_items: int, n_cand: int) -> None:
    """RecSim's candidates are n_candidates different documents: a uniform ordered sample of the
    corpus without replacement, fresh every request, from the user's own stream."""
    m = _model(n_items=n_items, n_candidates=n_cand)
    n, steps = 2000, 10
    s = _users(m, n)
    draws = []
    for _ in range(steps):
        assert s.cand.shape == (n, n_cand) and s.cand.min() >= 0 and s.cand.max() < n_items
        draws.append(s.cand.copy())
        s, out = m.step(s, _slate(n))
        np.testing.assert_array_equal(out.items, draws[-1][:, :2])  # the action indexes the candidates
        assert not np.array_equal(s.cand, draws[-1])  # fresh candidates every request
    cand = np.concatenate(draws)
    assert all(len(set(row)) == n_cand for row in cand)  # no document twice in a request
    for pos in range(n_cand):  # every position is uniform over the corpus
        assert stats.chisquare(np.bincount(cand[:, pos], minlength=n_items)).pvalue > 1e-4, pos
    if n_items <= 20:  # ordered pairs of positions: uniform over the pairs of different documents
        pair = np.bincount(cand[:, 0] * n_items + cand[:, 1], minlength=n_items * n_items)
        assert stats.chisquare(pair.reshape(n_items, n_items)[~np.eye(n_items, dtype=bool)]).pvalue > 1e-4
    above = np.mean(cand[:, 1] > cand[:, 0])
    assert abs(above - 0.5) < 5 * math.sqrt(0.25 / len(cand))
    # a user's candidates do not depend on its batch
    np.testing.assert_array_equal(_users(m, 1, seed=5).cand, _users(m, 6).cand[5:])


# ----------------------------------------------------------------------------- users
def test_interest_is_uniform_and_redrawn_each_life() -> None:
    m = _model()
    n = 5000
    s = _users(m, n)
    u = s.interest
    assert u.shape == (n, 20) and u.min() >= -1.0 and u.max() <= 1.0
    assert abs(u.mean()) < 5 * math.sqrt(1 / 3 / u.size)
    assert abs(u.var() - 1 / 3) < 5 * math.sqrt(4 / 45 / u.size)  # Var(U^2) for U ~ Uniform(-1, 1) is 4/45
    assert stats.kstest(u.ravel(), stats.uniform(-1, 2).cdf).pvalue > 1e-4
    old = u.copy()
    m.reset_where(s, np.arange(n) % 2 == 0)  # autoreset of half the slots: their next life
    np.testing.assert_array_equal(s.interest[1::2], old[1::2])
    new = s.interest[0::2]
    assert np.all(s.episode[0::2] == 1) and np.all(np.any(new != old[0::2], axis=1))
    assert abs(np.corrcoef(new.ravel(), old[0::2].ravel())[0, 1]) < 5 / math.sqrt(new.size)
    assert new.min() >= -1.0 and new.max() <= 1.0
    np.testing.assert_allclose(s.budget, 200.0, rtol=0, atol=0)


def test_interest_is_observable() -> None:
    m = _model()
    s = _users(m, 64)
    obs = m.observe(s)
    np.testing.assert_array_equal(obs[:, m.layout["interest"]], s.interest.astype(np.float32))
    onehot = obs[:, m.layout["candidates"]].reshape(64, 10, 20)
    np.testing.assert_array_equal(onehot.argmax(axis=2), m.world.category[s.cand])
    np.testing.assert_array_equal(onehot.sum(axis=2), 1.0)


# ----------------------------------------------------------------------------- choice
def test_choice_probs_follow_the_formula() -> None:
    m = _model()
    s = _users(m, 500)
    items = s.cand[:, :2]
    probs = m.choice_probs(s, items)
    want = _formula(s.interest, items, m.world.category)
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-14)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-14)


def test_click_frequencies_match_the_formula() -> None:
    m = _model()
    n = 40_000
    s = _users(m, n, seed=7)
    items = s.cand[:, :2]
    p = _formula(s.interest, items, m.world.category)
    _, out = m.step(s, _slate(n))
    outcome = np.where(out.click_pos >= 0, out.click_pos, 2)
    for col in range(3):  # position 0, position 1, no click: Poisson-binomial mean and sd
        observed = np.sum(outcome == col)
        mean, sd = p[:, col].sum(), math.sqrt(np.sum(p[:, col] * (1 - p[:, col])))
        assert abs(observed - mean) < 4.5 * sd, (col, observed, mean)


def test_position_plays_no_role() -> None:
    m = _model()
    s = _users(m, 300)
    items = s.cand[:, :2]
    swapped = m.choice_probs(s, items[:, ::-1])
    np.testing.assert_allclose(swapped, m.choice_probs(s, items)[:, [1, 0, 2]], rtol=0, atol=1e-15)
    # and the sampled outcome: swapping the slate swaps the clicked position of each user
    n = 20_000
    s = _users(m, n, seed=3)
    _, a = m.step(s, _slate(n, 0, 1))
    _, b = m.step(s, _slate(n, 1, 0))
    p = m.choice_probs(s, s.cand[:, :2])
    for out, col in ((a, 0), (b, 1)):  # clicks on candidate 0, whichever position shows it
        observed = np.sum(out.click_pos == col)
        mean, sd = p[:, 0].sum(), math.sqrt(np.sum(p[:, 0] * (1 - p[:, 0])))
        assert abs(observed - mean) < 4.5 * sd


def test_duplicate_in_slate_is_shown_once_and_counted_once() -> None:
    """Deliberate deviation 2: RecSim would show a repeated candidate twice (two weights)."""
    m = _model()
    n = 20_000
    s = _users(m, n, seed=11)
    doc = s.cand[:, :1]
    probs = m.choice_probs(s, np.hstack([doc, doc]))
    w = s.interest[np.arange(n), m.world.category[doc[:, 0]]] + 1.0
    np.testing.assert_allclose(probs[:, 0], w / (w + 2.0), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(probs[:, 1], 0.0)
    _, out = m.step(s, _slate(n, 0, 0))
    np.testing.assert_array_equal(out.shown, np.tile([True, False], (n, 1)))
    assert not np.any(out.click_pos == 1)
    observed, mean = np.sum(out.click_pos == 0), probs[:, 0].sum()
    assert abs(observed - mean) < 4.5 * math.sqrt(np.sum(probs[:, 0] * (1 - probs[:, 0])))


# ----------------------------------------------------------------------------- response
@pytest.mark.parametrize("u_c", [-0.5, 0.4])
def test_interest_update_after_a_click(u_c: float) -> None:
    m = _model()
    n = 20_000
    s = _users(m, n, seed=5)
    s.interest[:] = u_c  # every topic at u_c: clicks are frequent and both branches are known
    before = s.interest.copy()
    s2, out = m.step(s, _slate(n))
    clicked = out.click_pos >= 0
    a = 0.3 * (1 - abs(u_c))
    up, down = np.clip(u_c + a * (1 - u_c), -1, 1), np.clip(u_c - a * (1 - u_c), -1, 1)
    rows = np.flatnonzero(clicked)
    cat = m.world.category[out.items[rows, out.click_pos[rows]]]
    new = s2.interest[rows, cat]
    is_up = np.abs(new - up) < 1e-12
    assert np.all(is_up | (np.abs(new - down) < 1e-12))  # exactly one of the two branches
    changed = s2.interest != before
    assert np.all(changed.sum(axis=1) == clicked)  # only the clicked topic moves, only on a click
    p_up = (u_c + 1) / 2
    assert abs(is_up.mean() - p_up) < 5 * math.sqrt(p_up * (1 - p_up) / rows.size)


def test_interest_update_branch_frequency_tracks_the_interest() -> None:
    """P(increase) = (u_c + 1) / 2 for users with varied interests (logistic-free linear check)."""
    m = _model()
    n = 60_000
    s = _users(m, n, seed=9)
    s2, out = m.step(s, _slate(n))
    rows = np.flatnonzero(out.click_pos >= 0)
    cat = m.world.category[out.items[rows, out.click_pos[rows]]]
    uc = s.interest[rows, cat]
    rose = s2.interest[rows, cat] > uc
    moved = s2.interest[rows, cat] != uc  # u_c = 1 exactly never happens; a = 0 only there
    assert moved.all()
    p = (uc + 1) / 2
    assert abs(rose.sum() - p.sum()) < 4.5 * math.sqrt(np.sum(p * (1 - p)))
    # and conditional on the interest: high interests rise more often than low ones
    high = uc > 0.5
    assert rose[high].mean() > 0.7 and rose[uc < -0.5].mean() < 0.3


def test_budget_arithmetic_is_exact() -> None:
    m = _model()
    n = 4000
    s = _users(m, n, seed=2)
    s.budget[:] = np.where(np.arange(n) % 2 == 0, 150.0, 2.5)  # watch 4 minutes, or what is left
    _, out = m.step(s, _slate(n))
    s2 = m.step(s, _slate(n))[0]
    click = out.click_pos >= 0
    assert 0 < click.sum() < n
    item = out.items[np.arange(n), np.maximum(out.click_pos, 0)]
    w = np.minimum(s.budget, 4.0)
    want = np.where(click, s.budget - w + ALPHA * w * m.world.quality[item], s.budget - 0.5)
    np.testing.assert_array_equal(s2.budget, want)
    np.testing.assert_array_equal(out.reward, np.where(click, w, 0.0))  # reward = watch time
    np.testing.assert_array_equal(out.watch, out.reward)
    np.testing.assert_allclose(s2.time, np.where(click, w, 0.5) / 1440.0, rtol=1e-15, atol=0)
    assert not out.cart.any() and not out.purchase.any()
    assert np.all(out.search_cat == -1) and np.all(out.view_item == -1) and np.all(out.session == 0)
    np.testing.assert_array_equal(out.time, 0.0)


def test_episode_terminates_when_the_budget_is_spent() -> None:
    m = _model()
    n = 4000
    s = _users(m, n, seed=4)
    s.budget[:] = np.where(np.arange(n) % 2 == 0, 0.5, 0.3)
    s2, out = m.step(s, _slate(n))
    click = out.click_pos >= 0
    # no click: 0.5 - 0.5 = 0 and 0.3 - 0.5 < 0 both end; a click refills only with positive quality
    np.testing.assert_array_equal(out.terminated, s2.budget <= 0.0)
    assert np.all(out.terminated[~click])
    item = out.items[np.arange(n), np.maximum(out.click_pos, 0)]
    np.testing.assert_array_equal(out.terminated[click], m.world.quality[item[click]] <= 0.0)
    assert not out.truncated.any()
    # a fresh user is nowhere near the end
    _, out = m.step(_users(m, n), _slate(n))
    assert not out.terminated.any()


def test_a_life_ends_and_its_budget_adds_up() -> None:
    """Whole episodes: the budget left is 200 minus the watch time and step costs, plus refills."""
    m = _model()
    n = 64
    s = _users(m, n, seed=12)
    budget = np.full(n, 200.0)
    done = np.zeros(n, dtype=bool)
    steps = 0
    rng = np.random.default_rng(0)
    while not done.all():
        s, out = m.step(s, rng.integers(0, 10, size=(n, 2)), inplace=True)
        click = out.click_pos >= 0
        item = out.items[np.arange(n), np.maximum(out.click_pos, 0)]
        live = ~done
        budget[live] = np.where(click, budget - out.watch + ALPHA * out.watch * m.world.quality[item],
                                budget - 0.5)[live]
        assert np.all(out.reward[live] <= 4.0)
        done |= out.terminated
        steps += 1
        assert steps < 2000
    assert np.all(budget <= 0.0)
    assert not out.truncated.any()


def _recsim_step(u: np.ndarray, budget: float, features: np.ndarray, quality: np.ndarray, length: np.ndarray,
                 u_choice: float, u_flip: float) -> tuple[np.ndarray, float, int | None, float]:
    """One request of RecSim's IEvUserModel for one user, transcribed line by line from
    interest_evolution.py (simulate_response, _generate_click_response, update_state) and
    choice_model.py (MultinomialProportionalChoiceModel, NormalizableChoiceModel.choose_item), with
    UtilityModelUserSampler's constants; RecSim's global np.random draws are replaced by the given
    uniforms. Returns (interest, budget, clicked position or None, watch time)."""
    no_click_mass, min_normalizer, step_penalty = 1.0, -1.0, 0.5
    user_quality_factor, document_quality_factor, user_update_alpha = 0.0, 1.0, 0.9 * (1.0 / 3.4)
    # score_documents + choose_item (np.random.choice: cdf, normalised, searchsorted right)
    scores = np.array([np.dot(u, doc) for doc in features])
    all_scores = np.append(scores, no_click_mass) - min_normalizer
    all_probs = all_scores / np.sum(all_scores)
    cdf = all_probs.cumsum()
    cdf /= cdf[-1]
    selected = int(cdf.searchsorted(u_choice, side="right"))
    if selected == len(all_probs) - 1:
        return u, budget - step_penalty, None, 0.0
    watch_time = min(budget, length[selected])
    # update_state
    doc = features[selected]
    expected_utility = all_scores[selected]  # choice_model.scores[0] of the clicked document alone
    target = doc - u
    mask = doc
    alpha = (-0.3 / 1.0) * np.absolute(u) + 0.3  # compute_alpha(u, x_intercept=1.0, y_intercept=0.3)
    update = alpha * mask * target
    positive_update_prob = np.dot((u + 1.0) / 2, mask)
    u = u + update if u_flip < positive_update_prob else u - update
    u = np.clip(u, -1.0, 1.0)
    received_utility = user_quality_factor * expected_utility + document_quality_factor * quality[selected]
    budget -= watch_time
    budget += user_update_alpha * watch_time * received_utility
    return u, budget, selected, watch_time


def _policy(name: str, user_model: RecSimIEModel, s: RecSimIEState, rng: np.random.Generator) -> np.ndarray:
    """(N, 2) distinct candidate indices (RecSim would count a repeated one twice): the two best by
    hidden quality, by interest, or two at random."""
    if name == "quality":
        return np.argsort(-user_model.world.quality[s.cand], axis=1, kind="stable")[:, :2]
    if name == "interest":
        weight = np.take_along_axis(s.interest, user_model.world.category[s.cand], axis=1)
        return np.argsort(-weight, axis=1, kind="stable")[:, :2]
    return np.argsort(rng.random(s.cand.shape), axis=1)[:, :2]


@pytest.mark.parametrize("policy", ["quality", "interest", "random"])
def test_whole_lives_match_a_transcription_of_recsim_bit_for_bit(policy: str) -> None:
    """Choice, watch time, interest update and budget refill, in RecSim's order, for whole lives.
    A quality-seeking policy stretches the budget (every click refills 0.2647 * w * quality), so a
    deviation in the budget or quality rules shows there first."""
    m = _model()
    n = 16
    s = _users(m, n, seed=40)
    rng = np.random.default_rng(1)
    eye = np.eye(20)
    ref_u, ref_b = s.interest.copy(), s.budget.copy()
    alive = np.ones(n, dtype=bool)
    steps = np.zeros(n, dtype=np.int64)
    clicks = np.zeros(n, dtype=np.int64)
    while alive.any():
        action = _policy(policy, m, s, rng)
        items = np.take_along_axis(s.cand, action, axis=1)
        draws = rngs.uniforms(s.key, rngs.STREAM_STEP, s.t, 2)  # the model's (choice, flip) uniforms
        s2, out = m.step(s, action)
        for i in np.flatnonzero(alive):
            ui, bi, sel, watch = _recsim_step(ref_u[i], float(ref_b[i]), eye[m.world.category[items[i]]],
                                              m.world.quality[items[i]], m.world.length[items[i]],
                                              draws[i, 0], draws[i, 1])
            ref_u[i], ref_b[i] = ui, bi
            assert out.click_pos[i] == (-1 if sel is None else sel), (i, steps[i])
            assert out.reward[i] == watch and out.terminated[i] == (bi <= 0)  # is_terminal: budget <= 0
            clicks[i] += sel is not None
        np.testing.assert_array_equal(s2.interest[alive], ref_u[alive])
        np.testing.assert_array_equal(s2.budget[alive], ref_b[alive])
        steps += alive
        alive &= ~out.terminated
        s = s2
        assert steps.max() < 5000
    assert clicks.sum() > 10 * n and not out.truncated.any()
    if policy == "quality":  # good documents refill: more than the 200 / 4 = 50 clicks a budget buys without
        assert clicks.mean() > 55


def test_quality_seeking_outlives_interest_seeking() -> None:
    """The budget rule at work: with the same users, showing the best documents makes lives longer
    than showing the most clicked ones (whose clusters are mostly trashy)."""
    m = _model()
    n = 200
    lives = {}
    for policy in ("quality", "interest"):
        s = _users(m, n, seed=60)
        rng = np.random.default_rng(0)
        steps = np.zeros(n)
        alive = np.ones(n, dtype=bool)
        while alive.any():
            s, out = m.step(s, _policy(policy, m, s, rng), inplace=True)
            steps += alive
            alive &= ~out.terminated
        lives[policy] = steps.mean()
    assert lives["quality"] > 2 * lives["interest"], lives


def test_truncated_at_the_horizon() -> None:
    m = _model(horizon_days=0.1, recsim_budget=1e6)  # 144 minutes of time, budget never runs out
    n = 16
    s = _users(m, n)
    ended = np.zeros(n, dtype=bool)
    for _ in range(300):  # at least 0.5 minutes per step: 288 steps reach 144 minutes
        s, out = m.step(s, _slate(n), inplace=True)
        assert not out.terminated.any()
        np.testing.assert_array_equal(out.truncated, s.time >= 0.1)
        ended |= out.truncated
    assert ended.all()


# ----------------------------------------------------------------------------- expected values (oracle)
def test_click_values_are_the_watch_time_of_a_click() -> None:
    m = _model()
    n = 20_000
    s = _users(m, n, seed=13)
    s.budget[:] = np.where(np.arange(n) % 3 == 0, 2.5, np.where(np.arange(n) % 3 == 1, 0.0, 150.0))
    values = m.click_values(s, s.cand)
    assert values.shape == (n, 10)
    np.testing.assert_array_equal(values, np.minimum(s.budget, 4.0)[:, None] * np.ones(10))
    _, out = m.step(s, _slate(n))
    clicked = np.flatnonzero(out.click_pos >= 0)
    assert clicked.size > 1000
    # the step's reward given a click is exactly the click value of the clicked document
    np.testing.assert_array_equal(out.reward[clicked], values[clicked, out.click_pos[clicked]])


def test_one_item_expected_rewards_match_choice_probs_and_the_step() -> None:
    m = _model()
    n = 40_000
    s = _users(m, n, seed=17)
    s.budget[:] = np.where(np.arange(n) % 2 == 0, 1.5, 100.0)
    expected = m.one_item_expected_rewards(s, s.cand)
    assert expected.shape == (n, 10)
    values = m.click_values(s, s.cand)
    for x in range(10):  # P(click of the one-document slate) exactly as choice_probs gives it, times its value
        p = m.choice_probs(s, s.cand[:, x:x + 1])[:, 0]
        np.testing.assert_array_equal(expected[:, x], p * values[:, x])
    rows = np.arange(5, 300, 7)  # a subset of users, items already restricted to them
    np.testing.assert_array_equal(m.one_item_expected_rewards(s, s.cand[rows], rows=rows), expected[rows])
    np.testing.assert_array_equal(m.one_item_expected_rewards(s, s.cand[10:20], rows=slice(10, 20)), expected[10:20])
    # and the step of a one-document slate: its mean reward is the sum of the expected rewards
    one = _model(slate_size=1)
    s1 = _users(one, n, seed=17)
    s1.budget[:] = s.budget
    x = 3
    want = one.one_item_expected_rewards(s1, s1.cand[:, x:x + 1])[:, 0]
    _, out = one.step(s1, np.full(n, x))
    p, v = want / np.minimum(s1.budget, 4.0), np.minimum(s1.budget, 4.0)
    sd = math.sqrt(np.sum(v * v * p * (1 - p)))
    assert abs(out.reward.sum() - want.sum()) < 4.5 * sd


# ----------------------------------------------------------------------------- the keys it reads
def _other_value(field: dataclasses.Field) -> object:
    """A valid value of a SimConfig knob other than its default."""
    meta, default = field.metadata, field.default
    if meta.get("choices"):
        return next(c for c in meta["choices"] if c != default)
    if isinstance(default, bool):
        return not default
    value = meta["lo"] if meta["lo"] != default else meta["hi"]
    return int(value) if isinstance(default, int) else float(value)


def _fingerprint(user_model: RecSimIEModel, steps: int, n: int = 6) -> list:
    """Spaces, corpus and a short seeded run of ``user_model``: what a change of config could change."""
    s = _users(user_model, n, seed=70)
    rng = np.random.default_rng(2)
    obs = user_model.observe(s)
    run = [repr(user_model.observation_space), repr(user_model.action_space), user_model.world.quality.tobytes(), obs]
    for _ in range(steps):
        s, out = user_model.step(s, rng.integers(0, user_model.m, size=(n, user_model.k)), inplace=True)
        run += [out.reward, out.terminated, out.truncated, user_model.observe(s)]
    return run


def _same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, dict):
            if x.keys() != y.keys() or not all(np.array_equal(x[k], y[k]) for k in x):
                return False
        elif not np.array_equal(np.asarray(x), np.asarray(y)):
            return False
    return True


# a non-default value of each key the model reads, and the base it shows its effect on
READ_CHANGES = {
    "model": ("shop", {}), "obs_mode": ("oracle", {}), "action_mode": ("catalog", {}), "slate_size": (1, {}),
    "n_candidates": (5, {}), "history_len": (3, {"obs_mode": "history"}),
    "horizon_days": (0.1, {"recsim_budget": 1e6}), "world_seed": (1, {}), "n_items": (500, {}),
    "n_categories": (10, {}), "topic_dim": (8, {}), "recsim_budget": (20.0, {"obs_mode": "oracle"}),
}


def test_reads_lists_the_keys_that_change_the_model() -> None:
    """Each key in READS changes the spaces, the corpus or a run (or is checked, a ConfigError
    naming it); every other SimConfig key, set to a non-default value, changes nothing (or is
    refused, naming it)."""
    base = _model().cfg
    assert set(READ_CHANGES) == RecSimIEModel.READS
    assert RecSimIEModel.READS <= {f.name for f in dataclasses.fields(SimConfig)}
    for key, (value, context) in READ_CHANGES.items():
        cfg = dataclasses.replace(base, **context)
        ref = _fingerprint(RecSimIEModel(cfg), steps=300 if key == "horizon_days" else 5)
        try:
            changed = RecSimIEModel(dataclasses.replace(cfg, **{key: value}))
        except ConfigError as err:
            assert f"'{key}'" in str(err), key
            continue
        assert not _same(_fingerprint(changed, steps=300 if key == "horizon_days" else 5), ref), key
    ref = _fingerprint(RecSimIEModel(base), steps=20)
    for field in dataclasses.fields(SimConfig):
        if field.name in RecSimIEModel.READS:
            continue
        try:
            other = RecSimIEModel(dataclasses.replace(base, **{field.name: _other_value(field)}))
        except ConfigError as err:  # a check that refuses keys the model ignores: fine too
            assert f"'{field.name}'" in str(err), field.name
            continue
        assert _same(_fingerprint(other, steps=20), ref), field.name


# ----------------------------------------------------------------------------- purity and batching
def test_step_is_pure_and_users_do_not_depend_on_their_batch() -> None:
    m = _model()
    s = _users(m, 8, seed=100)
    keep = copy_state(s)
    action = np.random.default_rng(1).integers(0, 10, size=(8, 2))
    a, out_a = m.step(s, action)
    for f in ("interest", "budget", "cand", "t"):
        np.testing.assert_array_equal(getattr(s, f), getattr(keep, f))
    alone = _users(m, 1, seed=103)
    b, out_b = m.step(alone, action[3:4])
    np.testing.assert_array_equal(a.interest[3:4], b.interest)
    np.testing.assert_array_equal(out_a.reward[3:4], out_b.reward)
    np.testing.assert_array_equal(a.cand[3:4], b.cand)


def test_bad_action_is_a_one_line_error() -> None:
    m = _model()
    s = _users(m, 2)
    with pytest.raises(ValueError, match="candidate index 10 not in"):
        m.step(s, np.array([[0, 10], [1, 2]]))


# ----------------------------------------------------------------------------- observations
@pytest.mark.parametrize("mode", ["features", "oracle", "history"])
def test_observations_lie_in_their_space(mode: str) -> None:
    m = _model(obs_mode=mode, history_len=5)
    n = 32
    s = _users(m, n)
    s.budget[:8] = 3.0  # some users end during the run: their terminal observation too
    rng = np.random.default_rng(0)
    space = m.observation_space
    for _ in range(30):
        obs = m.observe(s)
        for i in range(n):
            row = {k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i]
            assert space.contains(row), (mode, i)
        s, out = m.step(s, rng.integers(0, 10, size=(n, 2)), inplace=True)
    if mode == "oracle":
        obs = m.observe(s)
        np.testing.assert_array_equal(obs[:, m.layout["hidden_quality"]], m.world.quality[s.cand].astype(np.float32))
        np.testing.assert_array_equal(obs[:, m.layout["hidden_budget"]][:, 0],
                                      np.maximum(s.budget, 0.0).astype(np.float32))


def test_history_lists_the_clicked_documents_oldest_first() -> None:
    m = _model(obs_mode="history", history_len=4)
    s = _users(m, 1, seed=21)
    clicked: list[int] = []
    for _ in range(40):
        s, out = m.step(s, np.array([[0, 1]]), inplace=True)
        if out.click_pos[0] >= 0:
            clicked.append(int(out.items[0, out.click_pos[0]]))
        obs = m.observe(s)
        last = clicked[-4:]
        want_ids = [1000] * (4 - len(last)) + last
        np.testing.assert_array_equal(obs["item_ids"][0], want_ids)
        np.testing.assert_array_equal(obs["behaviours"][0], [PAD] * (4 - len(last)) + [CLICK] * len(last))
    assert len(clicked) > 4  # the ring buffer wrapped


# ----------------------------------------------------------------------------- shells and checkers
@pytest.mark.parametrize("mode", ["features", "oracle", "history"])
def test_gymnasium_and_sb3_env_checkers_pass(mode: str) -> None:
    from gymnasium.utils.env_checker import check_env as gym_check
    from stable_baselines3.common.env_checker import check_env as sb3_check

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checker warning is a failure here
        gym_check(ShopSimEnv("recsim-ie", obs_mode=mode), skip_render_check=True)
        sb3_check(ShopSimEnv("recsim-ie", obs_mode=mode), warn=True)


def test_single_env_episode_and_seeding() -> None:
    env = ShopSimEnv("recsim-ie")
    obs1, _ = env.reset(seed=3)
    obs2, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs1, obs2)
    obs3, _ = env.reset()  # the next life of the same stream: a new interest
    assert not np.array_equal(obs3[:20], obs1[:20])
    total, steps, terminated, truncated = 0.0, 0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        total += reward
        steps += 1
    assert terminated and not truncated
    assert 0 < total and steps < 2000


def test_vec_env_autoresets_recsim_users() -> None:
    venv = make_vec_env("recsim-ie", n_users=8, seed=0)
    venv.reset()
    ends = 0
    for _ in range(600):
        obs, reward, done, infos = venv.step(np.tile([0, 1], (8, 1)))
        assert obs.shape == (8, 220) and reward.dtype == np.float32
        for i in np.flatnonzero(done):
            assert infos[i]["terminal_observation"].shape == (220,)
            ends += 1
    assert ends > 0
