"""Long-term structure: chasing clicks loses, weighing quality beyond the next request wins, and
on ``bandit`` (the control) nothing beats the myopic optimum.

Two oracles read the hidden state and recommend one item per request from the whole catalog:
``click`` shows the item with the highest click probability, ``value`` the one with the highest
expected immediate reward P(click) * (reward_click + reward_cart P(cart | click) + reward_purchase
P(purchase | click)), the funnel probabilities computed from the item's quality and the user's
interest as the simulator does. Both are myopic; the difference is only whether quality counts. On
``clickbait`` and ``default`` the click-chaser must get more clicks per request but less reward
over each user's whole life, because bad clicks shorten sessions, lower satisfaction, lengthen
return gaps and raise churn. The helpers here are written from the model's documented formulas,
apart from the rules of :mod:`driftrec.envs.kernels`, and checked against ``user_model.choice_probs``.

Then the library's own oracle-greedy (the myopic reference) against the same policy with a bonus
for item quality, P(click) * quality, added to its score: a policy that weighs what a click does
to the user's future. It must earn clearly more on ``default`` and not more on ``bandit``.

Users are paired with common random numbers: the same seeds give the same users and the same
per-request uniforms under both policies, so the paired per-user difference has a small variance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from scipy.special import expit

from driftrec.agents.policies import OracleGreedyPolicy
from driftrec.envs.presets import preset_config
from driftrec.envs.rng import user_keys
from driftrec.envs.rollout import eval_seeds, rollout
from driftrec.envs.shop import ShopModel, ShopState
from driftrec.envs.state import take_rows
from driftrec.envs.user_model import build_user_model

# 2000 paired users put the CTR difference beyond 5 standard errors on both presets (a few seconds each)
N_USERS = 2000
SEED = 20_240_601
Z_REQUIRED = 4.0  # the difference must lie beyond this many standard errors


# ----------------------------------------------------------------------------- oracle helpers
def catalog_utilities(user_model: ShopModel, state: ShopState, dtype: type = np.float64) -> np.ndarray:
    """(N, n_items) utility of every catalog item shown alone, as ``user_model.utility`` computes it.

    One matrix product of per-user and per-item features (interest / topic, 1 / appeal, price
    sensitivity / relative price, event boost minus boredom / category one-hot) instead of
    ``user_model.utility(state, all_items)``, then the satiety of the few items each user is sated
    with; ``test_catalog_helpers_match_the_model`` keeps the two equal. The oracles score in
    float32, which halves their cost; a policy loses nothing by it.
    """
    cfg, w = user_model.cfg, user_model.world
    n = len(state.t)
    per_category = np.zeros((n, user_model.n_cat))
    if cfg.drift_fatigue > 0:
        per_category -= state.fatigue
    if cfg.drift_seasonal > 0:
        per_category += w.boost[np.minimum(state.time.astype(np.int64), w.boost.shape[0] - 1)]
    user = np.hstack([cfg.interest_scale * state.interest, np.ones((n, 1)), -state.price_sens[:, None], per_category])
    # einsum, not @: OpenBLAS threads make this small product ten times slower on a busy 2-core box
    util = np.einsum("nf,fi->ni", user.astype(dtype, copy=False), _item_features(user_model, dtype))
    rows, slots = np.nonzero(state.sated_item >= 0)
    level = state.sated_level[rows, slots] * 0.5 ** ((state.time[rows] - state.sated_time[rows, slots])
                                                     / cfg.satiation_half_life_days)
    np.subtract.at(util, (rows, state.sated_item[rows, slots]), level.astype(dtype))
    return util


def _item_features(user_model: ShopModel, dtype: type) -> np.ndarray:
    """(D + 2 + C, I) item side of :func:`catalog_utilities`, built once per model and dtype."""
    cache = user_model.__dict__.setdefault("_test_item_features", {})
    if dtype not in cache:
        w = user_model.world
        one_hot = (w.category[None, :] == np.arange(user_model.n_cat)[:, None]).astype(np.float64)
        cache[dtype] = np.vstack([w.topic.T, w.appeal[None, :], w.rel_price[None, :], one_hot]).astype(dtype)
    return cache[dtype]


def catalog_click_probs(user_model: ShopModel, state: ShopState, dtype: type = np.float64) -> np.ndarray:
    """(N, n_items) P(click) of each item as a one-item slate: sigmoid(u - u_0) under MNL (position
    weight 1) and under the cascade alike."""
    return expit(catalog_utilities(user_model, state, dtype) - dtype(user_model.cfg.no_click_utility))


def catalog_funnel(user_model: ShopModel, state: ShopState) -> tuple[np.ndarray, np.ndarray]:
    """P(cart | click) and P(purchase | click), both (N, I), of every item from the funnel logits."""
    cfg, w = user_model.cfg, user_model.world
    dot = state.interest @ w.topic.T
    cart = expit(cfg.cart_bias + cfg.cart_quality * w.quality + cfg.cart_interest * dot)
    buy = expit(cfg.purchase_bias + cfg.purchase_quality * w.quality + cfg.purchase_interest * dot
                - state.price_sens[:, None] * (w.rel_price - 1.0))
    return cart, cart * buy


def click_oracle(user_model: ShopModel, state: ShopState) -> np.ndarray:
    """Item with the highest click probability for each user (argmax of utility: P is monotone)."""
    return catalog_utilities(user_model, state, np.float32).argmax(axis=1)


def expected_reward_per_click(user_model: ShopModel, state: ShopState) -> np.ndarray:
    """(N, I) expected reward of a click on each item: reward_click + the funnel's expected rest."""
    cfg, w = user_model.cfg, user_model.world
    p_cart, p_buy = catalog_funnel(user_model, state)
    return (cfg.reward_click + cfg.reward_cart * p_cart
            + p_buy * (cfg.reward_purchase + cfg.reward_revenue * w.price))


def value_oracle(user_model: ShopModel, state: ShopState) -> np.ndarray:
    """Item with the highest expected immediate reward P(click) * reward per click for each user."""
    return (catalog_click_probs(user_model, state) * expected_reward_per_click(user_model, state)).argmax(axis=1)


class QualityWeighing(OracleGreedyPolicy):
    """oracle-greedy's score plus ``bonus`` * P(click) * quality: it values what a click's quality
    does to the user's future (patience, satisfaction, return, churn), which the myopic score ignores."""

    def __init__(self, user_model: ShopModel, bonus: float):
        super().__init__(user_model)
        self.bonus = bonus

    def act(self, obs, mask=None, *, state=None):  # noqa: ANN001, ANN201
        logit, value = self.user_model.static_scores(state, self._catalog)
        reward = self.user_model.rewards_from_static(state, self._catalog, logit, value)  # P(click) * value
        score = reward * (1.0 + self.bonus * self.user_model.world.quality / value)
        return np.argmax(score, axis=1), np.ones(len(score))


@dataclasses.dataclass
class Lives:
    """Per-user totals over whole lives (index = user)."""

    reward: np.ndarray
    clicks: np.ndarray
    requests: np.ndarray
    churned: np.ndarray


Policy = Callable[[ShopModel, ShopState], np.ndarray]


def live(preset: str, policy: Policy, n_users: int = N_USERS, seed: int = SEED) -> Lives:
    """Run every user's whole life (to churn or the horizon) under ``policy(model, state) -> items``."""
    user_model = build_user_model(preset_config(preset))
    state = user_model.init(user_keys(seed + np.arange(n_users)), np.zeros(n_users, dtype=np.int64))
    lives = Lives(np.zeros(n_users), np.zeros(n_users), np.zeros(n_users), np.zeros(n_users, dtype=bool))
    alive = np.arange(n_users)  # user index of each row of the shrinking batch
    while alive.size:
        state, out = user_model.step(state, policy(user_model, state), inplace=True)
        lives.reward[alive] += out.reward
        lives.clicks[alive] += out.click
        lives.requests[alive] += 1
        lives.churned[alive] |= out.terminated
        done = out.terminated | out.truncated
        if done.any():  # drop finished users so the oracles score only the living
            keep = np.flatnonzero(~done)
            alive, state = alive[keep], take_rows(state, keep)
    return lives


def paired_z(diff: np.ndarray) -> tuple[float, float]:
    """Mean of paired differences and its standard error."""
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("preset", ["clickbait", "default"])
def test_catalog_helpers_match_the_model(preset: str) -> None:
    """The oracles' fast catalog-wide probabilities equal ``user_model.choice_probs`` of one-item slates."""
    user_model = build_user_model(preset_config(preset))
    n = 64
    state = user_model.init(user_keys(SEED + np.arange(n)), np.zeros(n, dtype=np.int64))
    rng = np.random.default_rng(0)
    for _ in range(30):  # move the users into sessions with fatigue, events and drift
        state, _ = user_model.step(state, rng.integers(0, user_model.cfg.n_items, size=(n, 1)), inplace=True)
    probs = catalog_click_probs(user_model, state)
    for item in rng.integers(0, user_model.cfg.n_items, size=20):
        slate = np.full((n, 1), item)
        np.testing.assert_allclose(probs[:, item], user_model.choice_probs(state, slate)[:, 0], rtol=1e-10, atol=1e-14)
    # the click oracle (float32) picks the exact float64 argmax; ties closer than float32 rounding
    # would be a harmless exception
    np.testing.assert_array_equal(click_oracle(user_model, state), probs.argmax(axis=1))
    # the funnel: the value of each item equals the library oracle's expected reward of a click
    items = np.broadcast_to(np.arange(user_model.cfg.n_items), (n, user_model.cfg.n_items))
    oracle = OracleGreedyPolicy(user_model)
    np.testing.assert_allclose(expected_reward_per_click(user_model, state), oracle.click_values(
        state, items), rtol=1e-12)
    assert (state.sated_item >= 0).any(), "no user is sated with anything: satiety went untested"


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["clickbait", "default"])
def test_click_chasing_wins_clicks_and_loses_long_term_reward(preset: str) -> None:
    """Paired users, whole lives: the click oracle's CTR (a user's clicks per request, averaged over
    users) is higher and its reward per user lower than the value oracle's, each by more than
    Z_REQUIRED standard errors. (Pooled over all requests the click oracle's CTR can be the lower
    one: users who click its bad items end their sessions sooner, so its requests over-represent
    the users who click least.)"""
    chaser = live(preset, click_oracle)
    weigher = live(preset, value_oracle)
    ctr, ctr_se = paired_z(chaser.clicks / chaser.requests - weigher.clicks / weigher.requests)
    gain, gain_se = paired_z(weigher.reward - chaser.reward)
    summary = (f"{preset}: CTR per user {(chaser.clicks / chaser.requests).mean():.3f} (click oracle) vs "
               f"{(weigher.clicks / weigher.requests).mean():.3f} (value oracle); reward per user "
               f"{chaser.reward.mean():.1f} vs {weigher.reward.mean():.1f}")
    assert ctr > Z_REQUIRED * ctr_se, f"click oracle's CTR is not clearly higher: {ctr:.4f} +- {ctr_se:.4f}; {summary}"
    assert gain > Z_REQUIRED * gain_se, f"value oracle does not win long-term: {gain:.2f} +- {gain_se:.2f}; {summary}"


@pytest.mark.slow
def test_weighing_quality_beats_the_myopic_oracle_except_on_bandit() -> None:
    """Whole 30-day lives of the same 1000 held-out users: on ``default`` oracle-greedy plus a bonus
    for quality (1 reward per unit of quality of a click, fixed beforehand, not tuned) earns more
    per user than oracle-greedy by more than Z_REQUIRED standard errors of the paired difference;
    on ``bandit``, where the myopic optimum is the optimum, it earns clearly less."""
    seeds = eval_seeds(SEED, N_USERS)
    gains = {}
    for preset in ("default", "bandit"):
        user_model = build_user_model(preset_config(preset))
        greedy = rollout(user_model, OracleGreedyPolicy(user_model), seeds).reward
        weighing = rollout(user_model, QualityWeighing(user_model, bonus=1.0), seeds).reward
        gains[preset] = paired_z(weighing - greedy) + (greedy.mean(),)
    gain, se, base = gains["default"]
    assert gain > Z_REQUIRED * se, f"default: weighing quality gains {gain:.2f} +- {se:.2f} over {base:.2f}"
    gain, se, base = gains["bandit"]
    assert gain < -Z_REQUIRED * se, f"bandit: weighing quality gains {gain:.2f} +- {se:.2f} over {base:.2f}"
