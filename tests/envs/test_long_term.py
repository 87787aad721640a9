"""Long-term structure of the ``clickbait`` and ``default`` presets: chasing clicks loses.

Two oracles read the hidden state and recommend one item per request from the whole catalog:
``click`` shows the item with the highest click probability, ``value`` the one with the highest
expected immediate reward P(click) * (reward_click + reward_cart P(cart | click) + reward_purchase
P(purchase | click)), the funnel probabilities computed from the item's quality as the simulator
does. Both are myopic; the difference is only whether quality counts. On these presets the
click-chaser must get more clicks per request but less reward over each user's whole life, because
bad clicks shorten sessions, lower satisfaction, lengthen return gaps and raise churn.

Users are paired with common random numbers: the same seeds give the same users and the same
per-request uniforms under both policies, so the paired per-user difference has a small variance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
from scipy.special import expit

from driftrec.envs.model import build_model
from driftrec.envs.presets import preset_config
from driftrec.envs.rng import user_keys
from driftrec.envs.shop import ShopModel, ShopState
from driftrec.envs.state import take_rows

# 1000 paired users put both differences beyond 25 standard errors on both presets; 2000 would
# double a run of 7-15 s per preset (the value oracle keeps users for up to ~7000 requests).
N_USERS = 1000
SEED = 20_240_601
Z_REQUIRED = 4.0  # the difference must lie beyond this many standard errors


# ----------------------------------------------------------------------------- oracle helpers
def catalog_utilities(model: ShopModel, state: ShopState, dtype: type = np.float64) -> np.ndarray:
    """(N, n_items) utility of every catalog item shown alone, as ``model.utility`` computes it.

    One matrix product of per-user and per-item features (interest / topic, 1 / appeal, price
    sensitivity / relative price, event boost minus boredom / category one-hot) instead of
    ``model.utility(state, all_items)``, whose (N, I, D) gather of topics costs 20 times more;
    ``test_catalog_helpers_match_the_model`` keeps the two equal. The oracles score in float32,
    which halves their cost; a policy loses nothing by it.
    """
    cfg, w = model.cfg, model.world
    n = len(state.t)
    per_category = np.zeros((n, model.n_cat))
    if cfg.drift_fatigue > 0:
        per_category -= state.fatigue
    if cfg.drift_seasonal > 0:
        per_category += w.boost[np.minimum(state.time.astype(np.int64), w.boost.shape[0] - 1)]
    user = np.hstack([cfg.interest_scale * state.interest, np.ones((n, 1)), -state.price_sens[:, None], per_category])
    # einsum, not @: OpenBLAS threads make this small product ten times slower on a busy 2-core box
    return np.einsum("nf,fi->ni", user.astype(dtype, copy=False), _item_features(model, dtype))


def _item_features(model: ShopModel, dtype: type) -> np.ndarray:
    """(D + 2 + C, I) item side of :func:`catalog_utilities`, built once per model and dtype."""
    cache = model.__dict__.setdefault("_test_item_features", {})
    if dtype not in cache:
        w = model.world
        one_hot = (w.category[None, :] == np.arange(model.n_cat)[:, None]).astype(np.float64)
        cache[dtype] = np.vstack([w.topic.T, w.appeal[None, :], w.rel_price[None, :], one_hot]).astype(dtype)
    return cache[dtype]


def catalog_click_probs(model: ShopModel, state: ShopState, dtype: type = np.float64) -> np.ndarray:
    """(N, n_items) P(click) of each item as a one-item slate: sigmoid(u - u_0) under MNL (position
    weight 1) and under the cascade alike."""
    return expit(catalog_utilities(model, state, dtype) - dtype(model.cfg.no_click_utility))


def catalog_funnel(model: ShopModel, state: ShopState) -> tuple[np.ndarray, np.ndarray]:
    """P(cart | click) (1, I) and P(purchase | click) (N, I) of every item, from the funnel logits."""
    cfg, w = model.cfg, model.world
    cart = expit(cfg.cart_bias + cfg.cart_quality * w.quality)[None, :]
    buy = expit(cfg.purchase_bias + cfg.purchase_quality * w.quality
                - state.price_sens[:, None] * (w.rel_price - 1.0))
    return cart, cart * buy


def click_oracle(model: ShopModel, state: ShopState) -> np.ndarray:
    """Item with the highest click probability for each user (argmax of utility: P is monotone)."""
    return catalog_utilities(model, state, np.float32).argmax(axis=1)


def expected_reward_per_click(model: ShopModel, state: ShopState) -> np.ndarray:
    """(N, I) expected reward of a click on each item: reward_click + the funnel's expected rest."""
    cfg, w = model.cfg, model.world
    p_cart, p_buy = catalog_funnel(model, state)
    return (cfg.reward_click + cfg.reward_cart * p_cart
            + p_buy * (cfg.reward_purchase + cfg.reward_revenue * w.price))


class ValueOracle:
    """Item with the highest expected immediate reward P(click) * reward per click for each user.

    The reward per click depends on the user only through their price sensitivity, fixed for a
    life, so it is computed once per user (keyed by ``user_id``) and only P(click) each request.
    """

    def __init__(self) -> None:
        self._ids = np.zeros(0, dtype=np.int64)
        self._per_click = np.zeros((0, 0))

    def __call__(self, model: ShopModel, state: ShopState) -> np.ndarray:
        rows = np.minimum(np.searchsorted(self._ids, state.user_id), max(self._ids.size - 1, 0))
        if self._ids.size == 0 or not np.array_equal(self._ids[rows], state.user_id):
            order = np.argsort(state.user_id)
            self._ids = state.user_id[order]
            self._per_click = expected_reward_per_click(model, state)[order].astype(np.float32)
            rows = np.searchsorted(self._ids, state.user_id)
        return (catalog_click_probs(model, state, np.float32) * self._per_click[rows]).argmax(axis=1)


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
    model = build_model(preset_config(preset))
    state = model.init(user_keys(seed + np.arange(n_users)), np.zeros(n_users, dtype=np.int64))
    lives = Lives(np.zeros(n_users), np.zeros(n_users), np.zeros(n_users), np.zeros(n_users, dtype=bool))
    alive = np.arange(n_users)  # user index of each row of the shrinking batch
    while alive.size:
        state, out = model.step(state, policy(model, state), inplace=True)
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


def ratio_diff(num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray) -> tuple[float, float]:
    """sum(num_a)/sum(den_a) - sum(num_b)/sum(den_b) over paired users, with its delta-method SE.

    Each ratio's influence per user is (num - R den) / mean(den); pairing subtracts them per user.
    """
    ra, rb = num_a.sum() / den_a.sum(), num_b.sum() / den_b.sum()
    infl = (num_a - ra * den_a) / den_a.mean() - (num_b - rb * den_b) / den_b.mean()
    return float(ra - rb), float(infl.std(ddof=1) / np.sqrt(infl.size))


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("preset", ["clickbait", "default"])
def test_catalog_helpers_match_the_model(preset: str) -> None:
    """The oracles' fast catalog-wide probabilities equal ``model.choice_probs`` of one-item slates."""
    model = build_model(preset_config(preset))
    n = 64
    state = model.init(user_keys(SEED + np.arange(n)), np.zeros(n, dtype=np.int64))
    rng = np.random.default_rng(0)
    for _ in range(30):  # move the users into sessions with fatigue, events and drift
        state, _ = model.step(state, rng.integers(0, model.cfg.n_items, size=(n, 1)), inplace=True)
    probs = catalog_click_probs(model, state)
    for item in rng.integers(0, model.cfg.n_items, size=20):
        slate = np.full((n, 1), item)
        np.testing.assert_allclose(probs[:, item], model.choice_probs(state, slate)[:, 0], rtol=1e-10, atol=1e-14)
    # the oracles (float32, the value oracle's per-user cache) pick the exact float64 argmax, also
    # after users leave the batch; ties closer than float32 rounding would be a harmless exception
    np.testing.assert_array_equal(click_oracle(model, state), probs.argmax(axis=1))
    oracle = ValueOracle()
    direct = (probs * expected_reward_per_click(model, state)).argmax(axis=1)
    np.testing.assert_array_equal(oracle(model, state), direct)
    some = np.arange(0, n, 3)
    np.testing.assert_array_equal(oracle(model, take_rows(state, some)), direct[some])


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["clickbait", "default"])
def test_click_chasing_wins_clicks_and_loses_long_term_reward(preset: str) -> None:
    """Paired users, whole lives: the click oracle's CTR (clicks per request, pooled) is higher and
    its reward per user lower than the value oracle's, each by more than Z_REQUIRED standard errors."""
    chaser = live(preset, click_oracle)
    weigher = live(preset, ValueOracle())
    ctr, ctr_se = ratio_diff(chaser.clicks, chaser.requests, weigher.clicks, weigher.requests)
    gain, gain_se = paired_z(weigher.reward - chaser.reward)
    summary = (f"{preset}: CTR {chaser.clicks.sum() / chaser.requests.sum():.3f} (click oracle) vs "
               f"{weigher.clicks.sum() / weigher.requests.sum():.3f} (value oracle); reward per user "
               f"{chaser.reward.mean():.1f} vs {weigher.reward.mean():.1f}")
    assert ctr > Z_REQUIRED * ctr_se, f"click oracle's CTR is not clearly higher: {ctr:.4f} +- {ctr_se:.4f}; {summary}"
    assert gain > Z_REQUIRED * gain_se, f"value oracle does not win long-term: {gain:.2f} +- {gain_se:.2f}; {summary}"
