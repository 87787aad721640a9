"""Statistical tests of the ShopSim dynamics against the model's own definitions.

Each test steps thousands of users of the batched model at once and compares what happened with
what the model says should happen: choice frequencies with ``choice_probs``, drift moments with
the Ornstein-Uhlenbeck transition, jump counts with the migration hazard, and so on. Tolerances
come from the sampling error of the quantity tested: a count must lie within ``Z_MAX`` standard
errors of its expectation (binomial or Poisson-binomial variance), exact updates must hold to
float rounding. Seeds are fixed, so a failure is a change in the dynamics, not bad luck: at 4.5
sigma a correct model fails a given check with probability below 1e-5.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from scipy.special import softmax

from driftrec.envs.kernels import MAX_PATIENCE_REFUND
from driftrec.envs.model import build_model
from driftrec.envs.presets import preset_config
from driftrec.envs.rng import user_keys
from driftrec.envs.shop import ShopModel, ShopState
from driftrec.envs.state import StepOutput, take_rows

Z_MAX = 4.5
SEED = 7_000

# Sessions of one request, no churn, a long life, gaps independent of satisfaction: every step
# is a session start after an Exp(gap_mean_days) gap, so drift tests cover many days in few steps.
FAST_SESSIONS: dict[str, Any] = {
    "patience_mean": 0.5, "patience_quality": 0.0, "churn_bias": -30.0, "horizon_days": 3650.0,
    "gap_satisfaction": 0.0,
}


# ----------------------------------------------------------------------------- helpers
def make(preset: str, overrides: Mapping[str, Any] | None = None) -> ShopModel:
    """The ShopSim model of a preset with overrides."""
    model = build_model(preset_config(preset, overrides))
    assert isinstance(model, ShopModel)
    return model


def users(model: ShopModel, n: int, seed: int = SEED) -> ShopState:
    """Fresh users seeded ``seed + i``."""
    return model.init(user_keys(seed + np.arange(n)), np.zeros(n, dtype=np.int64))


def clones(state: ShopState, row: int, n: int, seed: int) -> ShopState:
    """``n`` copies of user ``row`` that differ only in their random stream."""
    copies = take_rows(state, np.full(n, row))
    copies.key = user_keys(seed + np.arange(n))
    return copies


def random_slates(model: ShopModel, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, model.cfg.n_items, size=(n, model.k))


def step(model: ShopModel, state: ShopState, items: np.ndarray) -> StepOutput:
    """One in-place step; the output."""
    return model.step(state, items, inplace=True)[1]


def assert_counts(observed: np.ndarray, expected: np.ndarray, variance: np.ndarray, what: str) -> None:
    """Every count within Z_MAX standard errors of its expectation."""
    observed, expected, variance = (np.atleast_1d(np.asarray(x, dtype=np.float64))
                                    for x in (observed, expected, variance))
    certain = variance == 0.0  # a cell of probability 0 or 1 must match exactly
    assert np.array_equal(observed[certain], expected[certain]), f"{what}: impossible outcome"
    z = np.where(certain, 0.0, (observed - expected) / np.sqrt(np.where(certain, 1.0, variance)))
    assert np.all(np.abs(z) < Z_MAX), (f"{what}: observed {observed.round(1).tolist()} vs expected "
                                       f"{expected.round(1).tolist()} (z = {z.round(2).tolist()})")


def assert_multinomial(observed: np.ndarray, probs: np.ndarray, what: str) -> None:
    """Counts of one multinomial draw (n = observed.sum()) match ``probs`` cell by cell."""
    n = observed.sum()
    assert_counts(observed, n * probs, n * probs * (1.0 - probs), what)


def assert_poisson_binomial(hits: np.ndarray, probs: np.ndarray, what: str) -> None:
    """Independent Bernoulli outcomes ``hits`` (rows x cells) with probabilities ``probs``: column sums."""
    assert_counts(hits.sum(axis=0), probs.sum(axis=0), (probs * (1.0 - probs)).sum(axis=0), what)


def one_hot(index: np.ndarray, width: int) -> np.ndarray:
    """(n, width) 0/1 rows; index -1 gives a row of zeros."""
    out = np.zeros((len(index), width))
    rows = np.flatnonzero(index >= 0)
    out[rows, index[rows]] = 1.0
    return out


# ----------------------------------------------------------------------------- choice
@pytest.mark.parametrize("choice_model", ["mnl", "cascade"])
@pytest.mark.parametrize("duplicate", [False, True])
def test_click_frequencies_match_choice_probs(choice_model: str, duplicate: bool) -> None:
    """Clones of one mid-life user of `default` (fatigue, events and drift all live), shown one
    fixed slate of 3: click frequencies per position and no-click equal ``choice_probs``."""
    model = make("default", {"slate_size": 3, "choice_model": choice_model})
    rng = np.random.default_rng(1)
    state = users(model, 8)
    for _ in range(40):
        step(model, state, random_slates(model, 8, rng))
    user = take_rows(state, np.arange(1))
    util = model.utility(user, np.arange(model.cfg.n_items)[None, :])[0]
    # utilities near u_0 - 0.5, u_0 and u_0 + 1 (rising, against the position decay): every
    # position and no-click get a sizeable share under both choice models, so every cell is tested
    targets = model.cfg.no_click_utility + np.array([-0.5, 0.0, 1.0])
    slate = np.abs(util[None, :] - targets[:, None]).argmin(axis=1)
    if duplicate:  # a repeated item shows only at its first position and is never clicked at the second
        slate[2] = slate[0]
    n = 20_000
    batch = clones(state, 0, n, seed=100)
    probs = model.choice_probs(batch, np.tile(slate, (n, 1)))
    np.testing.assert_allclose(probs, probs[:1].repeat(n, axis=0), rtol=1e-12)  # clones are identical
    out = step(model, batch, np.tile(slate, (n, 1)))
    counts = np.bincount(np.where(out.click, out.click_pos, model.k), minlength=model.k + 1)
    p = probs[0]
    assert p[:model.k][np.flatnonzero(~out.shown[0])].sum() == 0.0
    assert p.min(where=p > 0, initial=1.0) > 0.05, f"slate gives a degenerate cell: {p}"
    assert_multinomial(counts, p, f"{choice_model} click counts per position, then no click")


def test_funnel_frequencies_match_the_logits() -> None:
    """After a click: P(cart) = sigmoid(cart_bias + cart_quality q) and P(purchase | cart) =
    sigmoid(purchase_bias + purchase_quality q - price_sens (rel_price - 1))."""
    model = make("stationary", {"no_click_utility": -20.0})  # nearly every request is a click
    w, cfg = model.world, model.cfg
    n = 60_000
    state = users(model, n)
    items = np.random.default_rng(2).integers(0, cfg.n_items, size=(n, 1))
    out = step(model, state, items)
    hit = out.click
    assert hit.mean() > 0.9 and not (out.cart & ~hit).any()
    items, price_sens = items[hit], state.price_sens[hit]  # price sensitivity never changes
    out = take_rows(out, np.flatnonzero(hit))
    q, rel = w.quality[items[:, 0]], w.rel_price[items[:, 0]]
    p_cart = 1.0 / (1.0 + np.exp(-(cfg.cart_bias + cfg.cart_quality * q)))
    p_buy = 1.0 / (1.0 + np.exp(-(cfg.purchase_bias + cfg.purchase_quality * q - price_sens * (rel - 1.0))))
    assert_poisson_binomial(out.cart[:, None], p_cart[:, None], "carts after clicks")
    in_cart = out.cart
    assert not (out.purchase & ~in_cart).any(), "a purchase without add-to-cart"
    assert_poisson_binomial(out.purchase[in_cart, None], p_buy[in_cart, None], "purchases after carts")


def test_position_bias_in_click_through() -> None:
    """Slates of 5 random items: CTR falls with position as the model predicts; with exchangeable
    items (every utility equal) the CTR ratio of position k to position 0 is position_decay**k."""
    decay = 0.8
    rng = np.random.default_rng(3)
    n = 50_000
    # real catalog, random slates: each position's clicks match the mean model probability, and fall
    model = make("stationary", {"slate_size": 5, "position_decay": decay})
    state = users(model, n)
    slates = random_slates(model, n, rng)
    probs = model.choice_probs(state, slates)[:, :5]
    clicks = one_hot(step(model, state, slates).click_pos, 5)
    assert_poisson_binomial(clicks, probs, "clicks per position, random slates")
    c = clicks.sum(axis=0)
    drop = (c[:-1] - c[1:]) / np.sqrt(c[:-1] + c[1:])  # multinomial: var(c_k - c_k+1) <= c_k + c_k+1
    assert np.all(drop > Z_MAX), f"CTR does not fall clearly with position: clicks {c}, z {drop.round(1)}"
    # exchangeable items: P(click k) = w_k / (exp(u_0) + sum_j w_j) exactly, so CTR_k / CTR_0 = w_k
    flat = make("stationary", {"slate_size": 5, "position_decay": decay, "interest_scale": 0.0,
                               "appeal_scale": 0.0, "price_sensitivity": 0.0})
    state = users(flat, n)
    slates = (rng.integers(0, flat.cfg.n_items, size=(n, 1)) + np.arange(5)) % flat.cfg.n_items  # distinct
    c = one_hot(step(flat, state, slates).click_pos, 5).sum(axis=0)
    log_ratio = np.log(c[1:] / c[0])
    se = np.sqrt(1.0 / c[1:] + 1.0 / c[0])  # delta method for log(c_k / c_0) of one multinomial
    z = (log_ratio - np.arange(1, 5) * np.log(decay)) / se
    assert np.all(np.abs(z) < Z_MAX), f"CTR ratios {np.exp(log_ratio).round(3)} vs {decay ** np.arange(1, 5)}"


# ----------------------------------------------------------------------------- drift
def test_gradual_drift_is_an_exact_ou_transition() -> None:
    """At each session start, interest - base moves by the exact OU transition over the elapsed
    time: x' = x exp(-theta dt) + sd(dt) z with sd^2 = sigma^2 (1 - exp(-2 theta dt)) / (2 theta),
    so the standardised residual is N(0, 1) and the stationary variance is sigma^2 / (2 theta)."""
    sigma, theta = 0.3, 0.5
    # gaps of 0.5 day (theta dt ~ 0.25): both the decay of the old deviation and the new noise weigh
    model = make("stationary", {**FAST_SESSIONS, "drift_gradual": sigma, "gradual_reversion": theta,
                                "gap_mean_days": 0.5})
    n, d = 4_000, model.dim
    rng = np.random.default_rng(4)
    state = users(model, n)
    stationary_var = sigma**2 / (2.0 * theta)
    residuals, kept = [], []  # standardised residuals, and the part of the old deviation kept
    for _ in range(40):  # about 20 days: from x = 0 the variance is within e^-20 of stationary
        interest0, t0, session0 = state.interest.copy(), state.drift_time.copy(), state.session.copy()
        x0 = interest0 - state.base
        step(model, state, random_slates(model, n, rng))
        started = state.session > session0
        dt = (state.drift_time - t0)[started, None]
        mean = x0[started] * np.exp(-theta * dt)
        sd = np.sqrt(stationary_var * (1.0 - np.exp(-2.0 * theta * dt)))
        residuals.append(((state.interest - state.base)[started] - mean) / sd)
        kept.append(mean / sd)
        assert np.array_equal(state.interest[~started], interest0[~started])
    r = np.concatenate(residuals).ravel()
    assert abs(r.mean()) < Z_MAX / np.sqrt(r.size), f"OU residual mean {r.mean():.4f}"
    assert abs(r.var() - 1.0) < Z_MAX * np.sqrt(2.0 / r.size), f"OU residual variance {r.var():.4f}"
    # the noise is independent of the past: a wrong decay leaves the kept part in the residual
    corr = np.corrcoef(r, np.concatenate(kept).ravel())[0, 1]
    assert abs(corr) < Z_MAX / np.sqrt(r.size), f"OU residual correlates with the old deviation: {corr:.4f}"
    # stationary variance per dimension, after a long run (users and dimensions independent)
    x = state.interest - state.base
    var = x.var(axis=0)
    se = stationary_var * np.sqrt(2.0 / (n - 1))
    assert np.all(np.abs(var - stationary_var) < Z_MAX * se), (
        f"variance per dimension {var.round(4)} vs sigma^2/(2 theta) = {stationary_var}")
    pooled_se = stationary_var * np.sqrt(2.0 / (n * d - 1))
    assert abs(x.var() - stationary_var) < Z_MAX * pooled_se, f"pooled variance {x.var():.4f}"


@pytest.mark.parametrize(("preset", "overrides"), [
    ("stationary", {}),
    ("default", {"drift_gradual": 0.0, "drift_migration": 0.0, "drift_seasonal": 0.0, "drift_bubble": 0.0,
                 "drift_fatigue": 0.0}),
])
def test_no_drift_keeps_interest_fixed(preset: str, overrides: dict[str, Any]) -> None:
    """With every drift strength at 0, a long life leaves interest, base, segment and fatigue as born."""
    model = make(preset, {**FAST_SESSIONS, **overrides})
    n = 500
    rng = np.random.default_rng(5)
    state = users(model, n)
    born = take_rows(state, np.arange(n))
    probe = rng.integers(0, model.cfg.n_items, size=(n, 4))
    util0 = model.utility(state, probe)
    for _ in range(100):  # about 150 days of sessions
        step(model, state, random_slates(model, n, rng))
    assert state.time.min() > 60.0  # months of sessions for every user
    assert np.array_equal(state.interest, born.interest)
    assert np.array_equal(state.base, born.base)
    assert np.array_equal(state.segment, born.segment)
    assert not state.fatigue.any()
    np.testing.assert_array_equal(model.utility(state, probe), util0)  # no calendar boost either


def test_migration_jumps_follow_the_hazard() -> None:
    """A session start after ``dt`` days moves the user to another segment with probability
    1 - exp(-lambda dt); the target is uniform over the other segments; base and interest shift by
    the difference of the segment interests (the user keeps their offset)."""
    lam = 0.3
    model = make("stationary", {**FAST_SESSIONS, "drift_migration": lam})
    seg_interest, n_seg = model.world.segment_interest, model.cfg.n_segments
    n = 4_000
    rng = np.random.default_rng(6)
    state = users(model, n)
    p_jump, jumped, offsets = [], [], []
    for _ in range(20):
        seg0, base0, off0 = state.segment.copy(), state.base.copy(), state.interest - state.base
        t0, session0 = state.drift_time.copy(), state.session.copy()
        step(model, state, random_slates(model, n, rng))
        started = state.session > session0
        moved = state.segment != seg0
        assert not (moved & ~started).any(), "a migration outside a session start"
        dt = (state.drift_time - t0)[started]
        p_jump.append(-np.expm1(-lam * dt))
        jumped.append(moved[started])
        offsets.append((state.segment - seg0)[moved] % n_seg)
        np.testing.assert_allclose(state.base - base0, seg_interest[state.segment] - seg_interest[seg0], atol=1e-12)
        np.testing.assert_allclose(state.interest - state.base, off0, atol=1e-12)
    p, hit = np.concatenate(p_jump), np.concatenate(jumped)
    assert_poisson_binomial(hit[:, None], p[:, None], "segment jumps at session starts")
    target = np.bincount(np.concatenate(offsets), minlength=n_seg)[1:]
    assert_multinomial(target, np.full(n_seg - 1, 1.0 / (n_seg - 1)), "migration target (offset mod segments)")


def test_fatigue_accumulates_per_impression_and_halves_per_half_life() -> None:
    """Each shown impression adds ``drift_fatigue`` to its category (a duplicate is not shown);
    then all boredom decays by 0.5 ** (elapsed / half_life) over the request and any gap."""
    strength, half_life = 0.3, 0.05
    model = make("stationary", {"slate_size": 3, "drift_fatigue": strength, "fatigue_half_life_days": half_life,
                                "churn_bias": -30.0, "horizon_days": 3650.0})  # every user lives on
    n, c = 3_000, model.n_cat
    rng = np.random.default_rng(7)
    state = users(model, n)
    state.fatigue[:] = rng.uniform(0.0, 2.0, size=(n, c))
    state.patience[: n // 2] = 0.1  # half the users end their session: the decay spans a gap too
    slates = random_slates(model, n, rng)
    slates[: n // 3, 2] = slates[: n // 3, 0]  # duplicates
    f0, t0 = state.fatigue.copy(), state.time.copy()
    out = step(model, state, slates)
    shown_per_cat = np.zeros((n, c))
    np.add.at(shown_per_cat, (np.repeat(np.arange(n), 3), model.world.category[slates].ravel()), out.shown.ravel())
    assert not out.shown[: n // 3, 2].any() and out.shown[:, 0].all()
    expected = (f0 + strength * shown_per_cat) * (0.5 ** ((state.time - t0) / half_life))[:, None]
    np.testing.assert_allclose(state.fatigue, expected, rtol=1e-12)
    # exposure to one category only: every other category halves per half-life of elapsed time
    cat0_items = np.arange(model.world.cat_count[0])[:3]
    f1, t1 = state.fatigue.copy(), state.time.copy()
    for _ in range(50):
        step(model, state, np.tile(cat0_items, (n, 1)))
    halvings = (state.time - t1) / half_life
    assert np.median(halvings) > 1.0
    np.testing.assert_allclose(state.fatigue[:, 1:], f1[:, 1:] * (0.5**halvings)[:, None], rtol=1e-9)


def test_consumption_pulls_interest_toward_the_clicked_topic() -> None:
    """A click moves interest exactly ``drift_bubble`` of the way to the clicked item's topic; no
    click leaves it alone. Gradual drift acts only at session starts, so within a session (patience
    kept high) the bubble is the only move, even with the OU switched on."""
    bubble = 0.15
    model = make("bubble", {"drift_gradual": 0.3, "slate_size": 2})
    topic = model.world.topic
    n = 5_000
    rng = np.random.default_rng(8)
    state = users(model, n)
    state.patience[:] = 1e6
    clicks = 0
    for _ in range(10):
        before = state.interest.copy()
        slates = random_slates(model, n, rng)
        out = step(model, state, slates)
        assert not (out.terminated | out.truncated).any() and (state.session == 0).all()
        hit = out.click
        clicked = slates[np.flatnonzero(hit), out.click_pos[hit]]
        np.testing.assert_allclose(state.interest[hit], before[hit] + bubble * (topic[clicked] - before[hit]),
                                   rtol=1e-12, atol=1e-14)
        assert np.array_equal(state.interest[~hit], before[~hit])
        clicks += hit.sum()
    assert clicks > n  # the check above ran on many clicks


def test_patience_moves_by_quality_and_every_request_costs() -> None:
    """A request costs one unit of patience; a click refunds patience_quality * quality, at most
    MAX_PATIENCE_REFUND < 1, so even a user shown only great items ends the session."""
    model = make("clickbait")
    w, gain = model.world, model.cfg.patience_quality
    n = 5_000
    state = users(model, n)
    state.patience[:] = 1e6
    best = np.full((n, 1), int(np.argmax(w.quality)))
    slates = np.where(np.arange(n)[:, None] % 2 == 0, best, random_slates(model, n, np.random.default_rng(10)))
    before = state.patience.copy()
    out = step(model, state, slates)
    q = np.where(out.click, w.quality[slates[:, 0]], 0.0)
    np.testing.assert_allclose(state.patience, before + np.minimum(gain * q, MAX_PATIENCE_REFUND) - 1.0, rtol=1e-15)
    # both branches ran: capped refunds (the best item is rarely clicked: clickbait) and penalties
    assert MAX_PATIENCE_REFUND < 1.0 and (gain * q > MAX_PATIENCE_REFUND).sum() > 100 and (q < 0).sum() > 100


# ----------------------------------------------------------------------------- seasonal and organic
def test_calendar_event_boosts_its_category() -> None:
    """``utility`` adds drift_seasonal * (sum of the boosts of the events covering the day) to an
    item of the event's category; and the same users click that category more on an event day
    than on a quiet day, as the model predicts (common random numbers: same streams both days)."""
    model = make("seasonal")
    w, strength = model.world, model.cfg.drift_seasonal
    holiday = next(e for e in w.events if e.kind == "holiday")
    cat, day = holiday.category, holiday.start_day
    covering = [e for e in w.events if e.category == cat and e.start_day <= day < e.end_day]
    quiet = next(d for d in range(w.boost.shape[0]) if not any(
        e.category == cat and e.start_day <= d < e.end_day for e in w.events))
    n = 20_000
    items = np.full((n, 1), w.cat_start[cat])
    at_event, at_quiet = users(model, n), users(model, n)
    at_event.time[:], at_quiet.time[:] = day + 0.5, quiet + 0.5
    boost = model.utility(at_event, items) - model.utility(at_quiet, items)
    np.testing.assert_allclose(boost, strength * sum(e.boost for e in covering), rtol=1e-12)
    p_event, p_quiet = model.choice_probs(at_event, items)[:, 0], model.choice_probs(at_quiet, items)[:, 0]
    click_event, click_quiet = step(model, at_event, items).click, step(model, at_quiet, items).click
    assert_poisson_binomial(click_event[:, None], p_event[:, None], "clicks on event day")
    assert_poisson_binomial(click_quiet[:, None], p_quiet[:, None], "clicks on quiet day")
    lift = click_event.astype(float) - click_quiet
    assert lift.mean() > Z_MAX * lift.std() / np.sqrt(n), f"event lift {lift.mean():.4f} not significant"


def test_organic_search_follows_interest() -> None:
    """Before the next request a live user searches with probability search_prob, in a category
    drawn from softmax(interest . centroid / search_temperature); a search leads to a view with
    probability view_prob, of an item of the searched category."""
    model = make("stationary")  # no drift: the interest searched with is the state's
    cfg, w = model.cfg, model.world
    n = 60_000
    state = users(model, n)
    out = step(model, state, random_slates(model, n, np.random.default_rng(9)))
    alive = ~(out.terminated | out.truncated)
    searched = out.search_cat >= 0
    assert not (searched & ~alive).any()
    assert_multinomial(np.array([searched.sum(), (alive & ~searched).sum()]),
                       np.array([cfg.search_prob, 1.0 - cfg.search_prob]), "searches among live users")
    probs = softmax(state.interest[searched] @ w.centroid.T / cfg.search_temperature, axis=1)
    assert_poisson_binomial(one_hot(out.search_cat[searched], model.n_cat), probs, "searched categories")
    viewed = out.view_item >= 0
    assert not (viewed & ~searched).any()
    assert_multinomial(np.array([viewed.sum(), (searched & ~viewed).sum()]),
                       np.array([cfg.view_prob, 1.0 - cfg.view_prob]), "views among searches")
    assert np.array_equal(w.category[out.view_item[viewed]], out.search_cat[viewed])
