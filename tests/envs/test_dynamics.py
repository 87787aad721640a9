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

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from scipy.special import softmax

from driftrec.envs.kernels import FATIGUE_FLOOR
from driftrec.envs.presets import preset_config
from driftrec.envs.rng import user_keys
from driftrec.envs.shop import ShopModel, ShopState
from driftrec.envs.state import StepOutput, take_rows
from driftrec.envs.user_model import build_user_model

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
    user_model = build_user_model(preset_config(preset, overrides))
    assert isinstance(user_model, ShopModel)
    return user_model


def users(user_model: ShopModel, n: int, seed: int = SEED) -> ShopState:
    """Fresh users seeded ``seed + i``."""
    return user_model.init(user_keys(seed + np.arange(n)), np.zeros(n, dtype=np.int64))


def clones(state: ShopState, row: int, n: int, seed: int) -> ShopState:
    """``n`` copies of user ``row`` that differ only in their random stream."""
    copies = take_rows(state, np.full(n, row))
    copies.key = user_keys(seed + np.arange(n))
    return copies


def random_slates(user_model: ShopModel, n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, user_model.cfg.n_items, size=(n, user_model.k))


def step(user_model: ShopModel, state: ShopState, items: np.ndarray) -> StepOutput:
    """One in-place step; the output."""
    return user_model.step(state, items, inplace=True)[1]


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
    user_model = make("default", {"slate_size": 3, "choice_model": choice_model})
    rng = np.random.default_rng(1)
    state = users(user_model, 8)
    for _ in range(40):
        step(user_model, state, random_slates(user_model, 8, rng))
    user = take_rows(state, np.arange(1))
    util = user_model.utility(user, np.arange(user_model.cfg.n_items)[None, :])[0]
    # utilities near u_0 - 0.5, u_0 and u_0 + 1 (rising, against the position decay): every
    # position and no-click get a sizeable share under both choice models, so every cell is tested
    targets = user_model.cfg.no_click_utility + np.array([-0.5, 0.0, 1.0])
    slate = np.abs(util[None, :] - targets[:, None]).argmin(axis=1)
    if duplicate:  # a repeated item shows only at its first position and is never clicked at the second
        slate[2] = slate[0]
    n = 20_000
    batch = clones(state, 0, n, seed=100)
    probs = user_model.choice_probs(batch, np.tile(slate, (n, 1)))
    np.testing.assert_allclose(probs, probs[:1].repeat(n, axis=0), rtol=1e-12)  # clones are identical
    out = step(user_model, batch, np.tile(slate, (n, 1)))
    counts = np.bincount(np.where(out.click, out.click_pos, user_model.k), minlength=user_model.k + 1)
    p = probs[0]
    assert p[:user_model.k][np.flatnonzero(~out.shown[0])].sum() == 0.0
    assert p.min(where=p > 0, initial=1.0) > 0.05, f"slate gives a degenerate cell: {p}"
    assert_multinomial(counts, p, f"{choice_model} click counts per position, then no click")


def test_funnel_frequencies_match_the_logits() -> None:
    """After a click: P(cart) = sigmoid(cart_bias + cart_quality q + cart_interest d) and P(purchase |
    cart) = sigmoid(purchase_bias + purchase_quality q + purchase_interest d - price_sens (rel_price -
    1)), d = interest . topic. Checked within quartiles of d, so a missing or mis-signed interest term
    (whose effect averages out over random items) cannot hide in the total."""
    user_model = make("stationary", {"no_click_utility": -20.0, "cart_bias": -1.0, "purchase_bias": 0.0,
                                "cart_interest": 1.0, "purchase_interest": 0.8})  # nearly every request is a click
    w, cfg = user_model.world, user_model.cfg
    n = 60_000
    state = users(user_model, n)
    items = np.random.default_rng(2).integers(0, cfg.n_items, size=(n, 1))
    out = step(user_model, state, items)
    hit = out.click
    assert hit.mean() > 0.9 and not (out.cart & ~hit).any()
    items, price_sens = items[hit], state.price_sens[hit]  # price sensitivity never changes
    dot = (state.interest[hit] * w.topic[items[:, 0]]).sum(axis=1)  # no drift in stationary: interest as shown
    out = take_rows(out, np.flatnonzero(hit))
    q, rel = w.quality[items[:, 0]], w.rel_price[items[:, 0]]
    p_cart = 1.0 / (1.0 + np.exp(-(cfg.cart_bias + cfg.cart_quality * q + cfg.cart_interest * dot)))
    p_buy = 1.0 / (1.0 + np.exp(-(cfg.purchase_bias + cfg.purchase_quality * q + cfg.purchase_interest * dot
                                  - price_sens * (rel - 1.0))))
    quartile = np.searchsorted(np.quantile(dot, [0.25, 0.5, 0.75]), dot)
    in_bin = one_hot(quartile, 4).astype(bool)
    assert_poisson_binomial(out.cart[:, None] & in_bin, p_cart[:, None] * in_bin, "carts after clicks, by interest")
    in_cart = out.cart
    assert not (out.purchase & ~in_cart).any(), "a purchase without add-to-cart"
    assert_poisson_binomial(out.purchase[in_cart, None] & in_bin[in_cart], p_buy[in_cart, None] * in_bin[in_cart],
                            "purchases after carts, by interest")
    # the interest term is real: the most interested quarter fills carts clearly more often
    rate = [out.cart[quartile == k].mean() for k in (0, 3)]
    assert rate[1] > rate[0] + 0.1, f"cart rate by interest quartile: {rate}"


def test_position_bias_in_click_through() -> None:
    """Slates of 5 random items: CTR falls with position as the model predicts; with exchangeable
    items (every utility equal) the CTR ratio of position k to position 0 is position_decay**k."""
    decay = 0.8
    rng = np.random.default_rng(3)
    n = 50_000
    # real catalog, random slates: each position's clicks match the mean model probability, and fall
    # (a low no-click utility gives every position enough clicks to compare neighbours)
    user_model = make("stationary", {"slate_size": 5, "position_decay": decay, "no_click_utility": 1.5})
    state = users(user_model, n)
    slates = random_slates(user_model, n, rng)
    probs = user_model.choice_probs(state, slates)[:, :5]
    clicks = one_hot(step(user_model, state, slates).click_pos, 5)
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
    user_model = make("stationary", {**FAST_SESSIONS, "drift_gradual": sigma, "gradual_reversion": theta,
                                "gap_mean_days": 0.5})
    n, d = 4_000, user_model.dim
    rng = np.random.default_rng(4)
    state = users(user_model, n)
    stationary_var = sigma**2 / (2.0 * theta)
    residuals, kept = [], []  # standardised residuals, and the part of the old deviation kept
    for _ in range(40):  # about 20 days: from x = 0 the variance is within e^-20 of stationary
        interest0, t0, session0 = state.interest.copy(), state.drift_time.copy(), state.session.copy()
        x0 = interest0 - state.base
        step(user_model, state, random_slates(user_model, n, rng))
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
                 "bubble_reversion": 0.0, "drift_fatigue": 0.0}),
])
def test_no_drift_keeps_interest_fixed(preset: str, overrides: dict[str, Any]) -> None:
    """With every drift strength at 0, a long life leaves interest, base, segment and fatigue as born
    (satiation, which is not drift but moves an item's utility, is off too)."""
    user_model = make(preset, {**FAST_SESSIONS, **overrides, "satiation_click": 0.0, "satiation_purchase": 0.0})
    n = 500
    rng = np.random.default_rng(5)
    state = users(user_model, n)
    born = take_rows(state, np.arange(n))
    probe = rng.integers(0, user_model.cfg.n_items, size=(n, 4))
    util0 = user_model.utility(state, probe)
    for _ in range(100):  # about 150 days of sessions
        step(user_model, state, random_slates(user_model, n, rng))
    assert state.time.min() > 60.0  # months of sessions for every user
    assert np.array_equal(state.interest, born.interest)
    assert np.array_equal(state.base, born.base)
    assert np.array_equal(state.segment, born.segment)
    assert not state.fatigue.any()
    np.testing.assert_array_equal(user_model.utility(state, probe), util0)  # no calendar boost either


def test_migration_jumps_follow_the_hazard() -> None:
    """A session start after ``dt`` days moves the user to another segment with probability
    1 - exp(-lambda dt); the target is uniform over the other segments; base and interest shift by
    the difference of the segment interests (the user keeps their offset)."""
    lam = 0.3
    user_model = make("stationary", {**FAST_SESSIONS, "drift_migration": lam})
    seg_interest, n_seg = user_model.world.segment_interest, user_model.cfg.n_segments
    n = 4_000
    rng = np.random.default_rng(6)
    state = users(user_model, n)
    p_jump, jumped, offsets = [], [], []
    for _ in range(20):
        seg0, base0, off0 = state.segment.copy(), state.base.copy(), state.interest - state.base
        t0, session0 = state.drift_time.copy(), state.session.copy()
        step(user_model, state, random_slates(user_model, n, rng))
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
    user_model = make("stationary", {"slate_size": 3, "drift_fatigue": strength, "fatigue_half_life_days": half_life,
                                "churn_bias": -30.0, "horizon_days": 3650.0})  # every user lives on
    n, c = 3_000, user_model.n_cat
    rng = np.random.default_rng(7)
    state = users(user_model, n)
    state.fatigue[:] = rng.uniform(0.0, 2.0, size=(n, c))
    state.patience[: n // 2] = 0.1  # half the users end their session: the decay spans a gap too
    slates = random_slates(user_model, n, rng)
    slates[: n // 3, 2] = slates[: n // 3, 0]  # duplicates
    f0, t0 = state.fatigue.copy(), state.time.copy()
    out = step(user_model, state, slates)
    shown_per_cat = np.zeros((n, c))
    np.add.at(shown_per_cat, (np.repeat(np.arange(n), 3), user_model.world.category[slates].ravel()), out.shown.ravel())
    assert not out.shown[: n // 3, 2].any() and out.shown[:, 0].all()
    expected = (f0 + strength * shown_per_cat) * (0.5 ** ((state.time - t0) / half_life))[:, None]
    # a gap of days halves boredom hundreds of times: below FATIGUE_FLOOR it is dropped to 0
    np.testing.assert_allclose(state.fatigue, expected, rtol=1e-12, atol=FATIGUE_FLOOR)
    assert not ((state.fatigue > 0.0) & (state.fatigue < FATIGUE_FLOOR)).any()
    assert (state.fatigue == 0.0).any() and (state.fatigue > 1e-3).any()  # both branches ran
    # exposure to one category only: every other category halves per half-life of elapsed time
    cat0_items = np.arange(user_model.world.cat_count[0])[:3]
    f1, t1 = state.fatigue.copy(), state.time.copy()
    for _ in range(50):
        step(user_model, state, np.tile(cat0_items, (n, 1)))
    halvings = (state.time - t1) / half_life
    assert np.median(halvings) > 1.0
    np.testing.assert_allclose(state.fatigue[:, 1:], f1[:, 1:] * (0.5**halvings)[:, None], rtol=1e-9,
                               atol=FATIGUE_FLOOR)


def test_consumption_turns_interest_toward_the_clicked_topic_and_keeps_its_length() -> None:
    """A click turns the direction of interest ``drift_bubble`` of the way (along the chord) toward
    the clicked item's unit topic, x' = |x| unit((1 - b) x / |x| + b t), so its length is kept and
    it points closer to the topic; no click leaves it alone. Gradual drift and reversion act only
    at session starts, so within a session (patience kept high) the bubble is the only move."""
    user_model = make("bubble", {"drift_gradual": 0.3, "slate_size": 2, "no_click_utility": 1.5})  # many clicks
    bubble, topic = user_model.cfg.drift_bubble, user_model.world.topic
    assert bubble > 0 and user_model.cfg.bubble_reversion > 0
    n = 5_000
    rng = np.random.default_rng(8)
    state = users(user_model, n)
    state.patience[:] = 1e6
    clicks = 0
    for _ in range(10):
        before = state.interest.copy()
        slates = random_slates(user_model, n, rng)
        out = step(user_model, state, slates)
        assert not (out.terminated | out.truncated).any() and (state.session == 0).all()
        hit = out.click
        t = topic[slates[np.flatnonzero(hit), out.click_pos[hit]]]
        x = before[hit]
        length = np.linalg.norm(x, axis=1, keepdims=True)
        turned = (1.0 - bubble) * x / length + bubble * t
        want = length * turned / np.linalg.norm(turned, axis=1, keepdims=True)
        np.testing.assert_allclose(state.interest[hit], want, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.linalg.norm(state.interest[hit], axis=1), length[:, 0], rtol=1e-12)
        cos_before = (x * t).sum(axis=1) / length[:, 0]
        cos_after = (state.interest[hit] * t).sum(axis=1) / length[:, 0]
        assert (cos_after >= cos_before - 1e-12).all()
        assert np.array_equal(state.interest[~hit], before[~hit])
        clicks += hit.sum()
    assert clicks > n  # the checks above ran on many clicks


def reverted(x: np.ndarray, base: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The reversion's move from interest x toward base (keep = exp(-rate * elapsed), (n, 1)): the
    direction turns 1 - keep of the way (along the chord) toward base's, the length moves 1 - keep of
    the way toward |base|."""
    nx, nb = np.linalg.norm(x, axis=1, keepdims=True), np.linalg.norm(base, axis=1, keepdims=True)
    turned = keep * x / nx + (1.0 - keep) * base / nb
    return (keep * nx + (1.0 - keep) * nb) * turned / np.linalg.norm(turned, axis=1, keepdims=True)


def test_reversion_pulls_interest_back_to_base_on_its_own() -> None:
    """At each session start interest moves toward base by the reversion over the elapsed time
    (``reverted``: direction and length each 1 - exp(-bubble_reversion * elapsed) of the way) exactly,
    with the Ornstein-Uhlenbeck noise off, and reaches base in the long run; with the noise on, the
    OU transition then acts on what the reversion left (the two compose: the residual against that
    mean is N(0, 1) and uncorrelated with the old deviation)."""
    rho, theta, sigma = 0.4, 0.3, 0.2
    no_clicks = {**FAST_SESSIONS, "no_click_utility": 20.0, "gap_mean_days": 0.5, "bubble_reversion": rho}
    n = 4_000
    rng = np.random.default_rng(11)
    user_model = make("stationary", no_clicks)
    state = users(user_model, n)
    state.interest += rng.normal(0.0, 1.0, size=state.interest.shape)
    gap0 = np.linalg.norm(state.interest - state.base, axis=1)
    for _ in range(10):
        x0, t0, session0 = state.interest.copy(), state.drift_time.copy(), state.session.copy()
        out = step(user_model, state, random_slates(user_model, n, rng))
        assert not out.click.any()
        started = state.session > session0
        keep = np.exp(-rho * (state.drift_time - t0))[:, None]
        want = np.where(started[:, None], reverted(x0, state.base, keep), x0)
        np.testing.assert_allclose(state.interest, want, rtol=1e-12, atol=1e-12)
    gap = np.linalg.norm(state.interest - state.base, axis=1)
    assert np.median(gap / gap0) < 0.2, "reversion did not bring interest most of the way back to base"
    # with the OU on: residual against the OU mean of what the reversion left has mean 0, variance 1
    user_model = make("stationary", {**no_clicks, "drift_gradual": sigma, "gradual_reversion": theta})
    state = users(user_model, n)
    state.interest += 2.0 * rng.normal(0.0, 1.0, size=state.interest.shape)
    residuals, scale = [], []
    for _ in range(5):
        x0, t0, session0 = state.interest.copy(), state.drift_time.copy(), state.session.copy()
        step(user_model, state, random_slates(user_model, n, rng))
        started = state.session > session0  # a user with patience left did not start a session
        dt = (state.drift_time - t0)[started, None]
        base = state.base[started]
        sd = sigma * np.sqrt((1.0 - np.exp(-2.0 * theta * dt)) / (2.0 * theta))
        mean = (reverted(x0[started], base, np.exp(-rho * dt)) - base) * np.exp(-theta * dt)
        residuals.append(((state.interest[started] - base) - mean) / sd)
        scale.append((x0[started] - base) / sd)
    r = np.concatenate(residuals).ravel()
    assert abs(r.mean()) < Z_MAX / np.sqrt(r.size) and abs(r.var() - 1.0) < Z_MAX * np.sqrt(2.0 / r.size)
    corr = np.corrcoef(r, np.concatenate(scale).ravel())[0, 1]  # a missing reversion leaves x0 in r
    assert abs(corr) < Z_MAX / np.sqrt(r.size), f"residual correlates with the old deviation: {corr:.4f}"


def test_patience_moves_by_quality_and_every_request_costs() -> None:
    """A request costs one unit of patience; a click refunds patience_quality * quality, at most
    patience_refund_max < 1, so even a user shown only great items ends the session."""
    user_model = make("clickbait", {"no_click_utility": 1.5})  # frequent clicks: both branches below are exercised
    w, gain, cap = user_model.world, user_model.cfg.patience_quality, user_model.cfg.patience_refund_max
    n = 5_000
    state = users(user_model, n)
    state.patience[:] = 1e6
    best = np.full((n, 1), int(np.argmax(w.quality)))
    slates = np.where(np.arange(n)[:, None] % 2 == 0, best, random_slates(user_model, n, np.random.default_rng(10)))
    before = state.patience.copy()
    out = step(user_model, state, slates)
    q = np.where(out.click, w.quality[slates[:, 0]], 0.0)
    np.testing.assert_allclose(state.patience, before + np.minimum(gain * q, cap) - 1.0, rtol=1e-15)
    # both branches ran: capped refunds (the best item is rarely clicked: clickbait) and penalties
    assert cap < 1.0 and (gain * q > cap).sum() > 100 and (q < 0).sum() > 100


# ----------------------------------------------------------------------------- seasonal and organic
def test_calendar_event_boosts_its_category() -> None:
    """``utility`` adds drift_seasonal * (sum of the boosts of the events covering the day) to an
    item of the event's category; and the same users click that category more on an event day
    than on a quiet day, as the model predicts (common random numbers: same streams both days)."""
    user_model = make("seasonal")
    w, strength = user_model.world, user_model.cfg.drift_seasonal
    holiday = next(e for e in w.events if e.kind == "holiday")
    cat, day = holiday.category, holiday.start_day
    covering = [e for e in w.events if e.category == cat and e.start_day <= day < e.end_day]
    quiet = next(d for d in range(w.boost.shape[0]) if not any(
        e.category == cat and e.start_day <= d < e.end_day for e in w.events))
    n = 20_000
    items = np.full((n, 1), w.cat_start[cat])
    at_event, at_quiet = users(user_model, n), users(user_model, n)
    at_event.time[:], at_quiet.time[:] = day + 0.5, quiet + 0.5
    boost = user_model.utility(at_event, items) - user_model.utility(at_quiet, items)
    np.testing.assert_allclose(boost, strength * sum(e.boost for e in covering), rtol=1e-12)
    p_event, p_quiet = user_model.choice_probs(at_event, items)[:, 0], user_model.choice_probs(at_quiet, items)[:, 0]
    click_event, click_quiet = step(user_model, at_event, items).click, step(user_model, at_quiet, items).click
    assert_poisson_binomial(click_event[:, None], p_event[:, None], "clicks on event day")
    assert_poisson_binomial(click_quiet[:, None], p_quiet[:, None], "clicks on quiet day")
    lift = click_event.astype(float) - click_quiet
    assert lift.mean() > Z_MAX * lift.std() / np.sqrt(n), f"event lift {lift.mean():.4f} not significant"


def test_promotions_last_promo_days_on_average() -> None:
    """Promotions start at promo_rate per day and last a whole number of days with mean promo_days
    (a geometric length >= 1: the calendar has daily resolution, which is why promo_days >= 1)."""
    lengths = []
    for seed in range(40):
        cfg = preset_config("seasonal", {"world_seed": seed, "promo_days": 4.0, "promo_rate": 0.5,
                                         "horizon_days": 400.0})
        promos = [e for e in build_user_model(cfg).world.events if e.kind == "promotion"]
        lengths += [e.end_day - e.start_day for e in promos if e.end_day < 400]  # not cut by the horizon
    lengths = np.array(lengths)
    assert lengths.min() >= 1 and lengths.size > 5_000
    se = np.sqrt(4.0 * 3.0 / lengths.size)  # geometric(1/4): variance (1 - p) / p^2 = 12
    assert abs(lengths.mean() - 4.0) < Z_MAX * se, f"mean promotion length {lengths.mean():.3f}"


def test_organic_search_follows_interest() -> None:
    """Before the next request a live user searches with probability search_prob, in a category
    drawn from softmax(interest . centroid / search_temperature); a search leads to a view with
    probability view_prob, of an item of the searched category."""
    user_model = make("stationary")  # no drift: the interest searched with is the state's
    cfg, w = user_model.cfg, user_model.world
    n = 60_000
    state = users(user_model, n)
    out = step(user_model, state, random_slates(user_model, n, np.random.default_rng(9)))
    alive = ~(out.terminated | out.truncated)
    searched = out.search_cat >= 0
    assert not (searched & ~alive).any()
    assert_multinomial(np.array([searched.sum(), (alive & ~searched).sum()]),
                       np.array([cfg.search_prob, 1.0 - cfg.search_prob]), "searches among live users")
    probs = softmax(state.interest[searched] @ w.centroid.T / cfg.search_temperature, axis=1)
    assert_poisson_binomial(one_hot(out.search_cat[searched], user_model.n_cat), probs, "searched categories")
    viewed = out.view_item >= 0
    assert not (viewed & ~searched).any()
    assert_multinomial(np.array([viewed.sum(), (searched & ~viewed).sum()]),
                       np.array([cfg.view_prob, 1.0 - cfg.view_prob]), "views among searches")
    assert np.array_equal(w.category[out.view_item[viewed]], out.search_cat[viewed])


# ----------------------------------------------------------------------------- satiation
def test_a_purchase_sates_and_the_satiety_halves_every_half_life() -> None:
    """Buying item i lowers its utility by satiation_click + satiation_purchase (a click without a
    purchase by satiation_click), exactly; the loss then halves every satiation_half_life_days; and
    the same users click the item as often as choice_probs (which includes satiety) predicts at 0,
    1, 2 and 3 half-lives after the purchase, more often the longer ago it was."""
    half_life = 2.0
    always_buy = {"no_click_utility": -20.0, "cart_bias": 20.0, "purchase_bias": 20.0,
                  "satiation_half_life_days": half_life, "churn_bias": -30.0, "horizon_days": 3650.0}
    user_model = make("stationary", always_buy)
    cfg = user_model.cfg
    n = 4_000
    state = users(user_model, n)
    item = np.full((n, 1), 7)
    before = user_model.utility(state, item)[:, 0]
    t0 = state.time.copy()
    out = step(user_model, state, item)
    assert out.purchase.all()
    loss = cfg.satiation_click + cfg.satiation_purchase
    np.testing.assert_array_equal(state.sated_item[:, 0], 7)
    np.testing.assert_array_equal(state.sated_time[:, 0], t0)
    # satiety is the only term that moved (stationary: no drift, no boredom, no events)
    now = user_model.utility(state, item)[:, 0] + loss * 0.5 ** ((state.time - t0) / half_life)
    np.testing.assert_allclose(now, before, rtol=1e-12, atol=1e-12)
    clicked_only = make("stationary", {**always_buy, "cart_bias": -20.0})
    other = users(clicked_only, 50)
    u0 = clicked_only.utility(other, item[:50])[:, 0]
    step(clicked_only, other, item[:50])
    np.testing.assert_allclose(clicked_only.utility(other, item[:50])[:, 0] + cfg.satiation_click
                               * 0.5 ** (other.time / half_life), u0, rtol=1e-12, atol=1e-12)
    # the decay, seen through the users' clicks: clones of one sated user, k half-lives later
    sampler = make("stationary", {"satiation_half_life_days": half_life, "no_click_utility": 0.0})
    sated = take_rows(state, np.zeros(20_000, dtype=np.int64))
    rates = []
    for k in range(4):
        batch = dataclasses.replace(sated, key=user_keys(100 + k * 20_000 + np.arange(20_000)),
                                    time=sated.sated_time[:, 0] + k * half_life)
        batch = take_rows(batch, np.arange(20_000))  # own arrays
        util = sampler.utility(batch, item[:1].repeat(20_000, axis=0))[0, 0]
        expected_loss = loss * 0.5**k
        base = util + expected_loss
        np.testing.assert_allclose(base, before[0], rtol=1e-12)
        probs = sampler.choice_probs(batch, item[:1].repeat(20_000, axis=0))
        clicks = step(sampler, batch, item[:1].repeat(20_000, axis=0)).click
        assert_multinomial(np.array([clicks.sum(), (~clicks).sum()]), probs[0], f"clicks {k} half-lives later")
        rates.append(clicks.mean())
    assert all(b > a + 0.02 for a, b in zip(rates, rates[1:], strict=False)), f"click rate by half-lives: {rates}"


def test_satiety_remembers_the_most_sated_items() -> None:
    """A user who buys more distinct items than there are satiety slots keeps the most sated ones:
    a new item takes over the slot whose satiety is lowest now; buying an item again raises its own
    slot (current satiety + the new amount)."""
    from driftrec.envs.shop import SATIETY_SLOTS

    user_model = make("stationary", {"no_click_utility": -20.0, "cart_bias": 20.0, "purchase_bias": 20.0,
                                "churn_bias": -30.0, "horizon_days": 3650.0})
    cfg = user_model.cfg
    state = users(user_model, 1)
    for item in range(SATIETY_SLOTS):
        step(user_model, state, np.array([[item]]))
    assert sorted(state.sated_item[0]) == list(range(SATIETY_SLOTS))
    oldest = int(state.sated_item[0][np.argmin(state.sated_time[0])])
    step(user_model, state, np.array([[100]]))  # a new item: the least sated (the oldest purchase) goes
    assert 100 in state.sated_item[0] and oldest not in state.sated_item[0]
    slot = int(np.flatnonzero(state.sated_item[0] == 100)[0])
    level, since = state.sated_level[0, slot], state.sated_time[0, slot]
    step(user_model, state, np.array([[100]]))  # bought again: the same slot, current satiety + amount
    assert state.sated_item[0, slot] == 100 and (state.sated_item[0] == 100).sum() == 1
    elapsed = state.sated_time[0, slot] - since
    amount = cfg.satiation_click + cfg.satiation_purchase
    np.testing.assert_allclose(state.sated_level[0, slot],
                               level * 0.5 ** (elapsed / cfg.satiation_half_life_days) + amount, rtol=1e-12)


# ----------------------------------------------------------------------------- bubble, long run
def test_bubble_focuses_users_and_keeps_their_interest_strong() -> None:
    """On `bubble`, 400 random requests leave the mean |interest| at least 0.8 of its start (the
    bubble keeps length, the reversion moves toward a base of similar length); and users shown only
    one category's items (with clicks frequent enough for the bubble to act) turn toward its
    centroid: the mean cosine rises by far more than its standard error, at undiminished length."""
    long_life = {"horizon_days": 3650.0, "churn_bias": -30.0}
    user_model = make("bubble", long_life)
    n = 2_000
    rng = np.random.default_rng(12)
    state = users(user_model, n)
    start = np.linalg.norm(state.interest, axis=1).mean()
    for _ in range(400):
        step(user_model, state, random_slates(user_model, n, rng))
    kept = np.linalg.norm(state.interest, axis=1).mean() / start
    assert kept >= 0.8, f"mean |interest| kept {kept:.3f} of its start after 400 random requests"

    focused = make("bubble", {**long_life, "no_click_utility": 0.0})
    state = users(focused, n)
    w = focused.world
    cat = 3
    items = w.cat_start[cat] + np.arange(w.cat_count[cat])
    centroid = w.centroid[cat]
    cos0 = (state.interest @ centroid) / np.linalg.norm(state.interest, axis=1)
    norm0 = np.linalg.norm(state.interest, axis=1).mean()
    for _ in range(60):
        step(focused, state, rng.choice(items, size=(n, 1)))
    cos1 = (state.interest @ centroid) / np.linalg.norm(state.interest, axis=1)
    lift = cos1 - cos0
    assert lift.mean() > Z_MAX * lift.std(ddof=1) / np.sqrt(n) and lift.mean() > 0.2, f"focus {lift.mean():.3f}"
    assert np.linalg.norm(state.interest, axis=1).mean() > 0.8 * norm0


# ----------------------------------------------------------------------------- bandit
def test_bandit_lives_do_not_depend_on_what_is_shown() -> None:
    """On `bandit` nothing a recommendation does outlives its request: the same users shown random
    items or each user's single best item make their requests at the same times, in the same
    sessions, end their lives at the same step, search the same categories, and keep their
    interest; only clicks and rewards differ. So the myopic optimum is the optimum."""
    user_model = make("bandit", {"horizon_days": 20.0, "churn_bias": -3.0})
    n = 1_000
    rng = np.random.default_rng(13)
    a, b = users(user_model, n), users(user_model, n)
    born = a.interest.copy()
    items = np.broadcast_to(np.arange(user_model.cfg.n_items), (n, user_model.cfg.n_items))
    best = user_model.utility(a, items).argmax(axis=1)
    ended = np.zeros(n, dtype=bool)
    clicks = np.zeros((2, n))
    for _ in range(150):
        out_a = step(user_model, a, random_slates(user_model, n, rng))
        out_b = step(user_model, b, best[:, None])
        for name in ("time", "session", "terminated", "truncated", "search_cat", "view_item", "organic_time"):
            np.testing.assert_array_equal(getattr(out_a, name)[~ended], getattr(out_b, name)[~ended], err_msg=name)
        clicks += [out_a.click & ~ended, out_b.click & ~ended]
        ended |= out_a.terminated | out_a.truncated
    assert ended.mean() > 0.9 and (out_a.terminated[ended].any())
    np.testing.assert_array_equal(a.interest, born)
    np.testing.assert_array_equal(b.interest, born)
    assert clicks[1].sum() > 3 * clicks[0].sum()  # what is shown still matters now
