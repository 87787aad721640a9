"""Compiled code of ShopSim: its rules, the step as named parts, init and observe.

Why compiled: a step is a few dozen scalar operations per user. As numpy calls over the batch each
operation pays a fixed dispatch cost, which dominates for small batches (the single-user env) and
still costs half the time at N = 4096. Numba runs the same per-user arithmetic as one loop.

Why one module: numba's disk cache is invalidated only when the file that defines a cached
function changes, not when a function it calls from another file does; the rules, the parts and
the loops that inline them live here together so a cached kernel can never run stale rules.

The kernels are pure in the sense of the style guide: all state is in the arrays passed in (the
step writes the new state into them; ``ShopModel.step`` copies first unless told otherwise), all
randomness comes from the user's counter-based stream (the same splitmix64 streams as
:mod:`driftrec.envs.rng`, bit for bit: ``tests/envs/test_kernels.py``), and no global state is read
or written. Knobs arrive as one record ``p`` and arrays by name (:mod:`driftrec.envs.binding`).

## The rules, each written once
The step, the numpy-facing helpers of :class:`~driftrec.envs.shop.ShopModel` (``utility``,
``choice_probs``, ``one_item_expected_rewards``) and the oracle policies (oracle-planner calls the
session rules on arrays: ``churn_prob(model.params[0], s)``) all use these, so the formula a policy
plans with is the formula the simulator samples from. Item i has category c_i, unit topic t_i,
appeal a_i, quality q_i, price x_i and relative price r_i = x_i / price_mean; for the user,
d_i = interest . t_i and s is the price sensitivity.

| rule | formula |
|---|---|
| ``utility`` | interest_scale d_i + a_i - s r_i - fatigue[c_i] + boost[day, c_i] - satiety_i |
| P(click), one-item slate | sigmoid(utility - no_click_utility) (MNL at position weight 1, and cascade) |
| ``cart_prob`` | sigmoid(cart_bias + cart_quality q_i + cart_interest d_i) |
| ``purchase_prob`` | sigmoid(purchase_bias + purchase_quality q_i + purchase_interest d_i - s (r_i - 1)) |
| ``click_value`` | reward_click + P(cart) (reward_cart + P(purchase) (reward_purchase + reward_revenue x_i)) |
| ``satiety`` | level of i's satiety slot * 2 ** (-(now - slot time) / satiation_half_life_days) |
| ``patience_refund`` | min(patience_quality q_i, patience_refund_max): patience a click gives back |
| ``satisfied`` | s + satisfaction_rate (q_i - s): satisfaction after a click |
| ``churn_prob`` | sigmoid(churn_bias - churn_satisfaction s): at a session's end |
| ``gap_scale`` | gap_mean_days exp(-gap_satisfaction s): the next session starts gap_min_days + Exp(gap_scale) later |

## One request, part by part
``step_users`` runs these named parts for each user, in this order (DESIGN.md, "The simulator"):

1. ``_slate_utility``: the utility of each slate position (a repeated item is shown once);
2. ``_choose``: click probabilities (multinomial logit with position bias, or cascade) and one draw;
3. ``_remember_impressions``: decayed impression counts and boredom (``drift_fatigue``);
4. ``_funnel``: click -> add-to-cart -> purchase, and the reward;
5. ``_remember_click``: history, satiety, satisfaction, and the filter bubble (``drift_bubble``);
6. ``_end_request``: patience; at the end of a session churn or a return gap; boredom decays;
7. ``_start_session``: patience refills, then the drift processes over the elapsed time:
   ``_migrate`` (``drift_migration``), ``_revert`` (``bubble_reversion``), ``_wander``
   (``drift_gradual``); seasonal drift is the calendar's boost inside the utility;
8. ``_organic``: an organic search (and view) before the next request.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from driftrec.envs.rng import STREAM_CANDIDATES, STREAM_INIT, STREAM_SESSION, STREAM_STEP

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 2.0**-53
LN2 = math.log(2.0)
MINUTES_PER_DAY = 1440.0
FATIGUE_FLOOR = 1e-12  # boredom (utility) below this is dropped to 0 (see _end_request)

NO_REFCOUNT = {"cache": True, "_nrt": False}
"""Options of every compiled loop of the simulator: cached on disk, and compiled without numba's
reference counting (NRT). The loops allocate nothing (scratch space is passed in), so every array
they touch is borrowed; with NRT on, each array handed to an inlined part costs an atomic increment
and decrement per call, which made the step as named parts 2.5x slower than as one loop (measured
at 4,096 users). Numba refuses an allocation in a loop so compiled: no part starts allocating unnoticed."""

# behaviour codes (see driftrec.envs.state)
_SEARCH, _VIEW, _CLICK, _CART, _PURCHASE = 1, 2, 4, 5, 6
# columns of a user's per-step uniforms
_U_CHOICE, _U_CART, _U_BUY, _U_CHURN, _U_GAP, _U_SEARCH, _U_SEARCH_CAT, _U_VIEW, _U_VIEW_ITEM, _U_MIGRATE = range(10)


# ----------------------------------------------------------------------------- the rules
@njit(cache=True, inline="always")
def sigmoid(x):  # noqa: ANN001, ANN201
    """Logistic function, overflow-free for any finite x (a number, or an array from Python)."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@njit(cache=True, inline="always")
def interest_dot(interest, i, topic, it):  # noqa: ANN001, ANN201
    """interest[i] . topic[it]: how much user row i likes item it's topic (before interest_scale)."""
    dot = 0.0
    for j in range(topic.shape[1]):
        dot += interest[i, j] * topic[it, j]
    return dot


@njit(cache=True, inline="always")
def static_utility(p, dot, appeal, price_sens, rel_price):  # noqa: ANN001, ANN201
    """The part of an item's utility that moves only with the user's interest and price
    sensitivity: interest_scale * dot + appeal - price_sens * rel_price."""
    return p.interest_scale * dot + appeal - price_sens * rel_price


@njit(cache=True, inline="always")
def satiety(p, i, it, now, sated_item, sated_level, sated_time):  # noqa: ANN001, ANN201
    """Utility user row i has lost to satiation with item ``it`` at time ``now``: the level its slot
    was last set to, halved every ``satiation_half_life_days`` since then (0 when not sated).
    Slots fill in order and an item holds at most one, so the scan stops at the first empty slot."""
    for s in range(sated_item.shape[1]):
        held = sated_item[i, s]
        if held == it:
            return _decayed(p, sated_level[i, s], sated_time[i, s], now)
        if held < 0:
            break
    return 0.0


@njit(cache=True, inline="always")
def _decayed(p, level, since, now):  # noqa: ANN001, ANN202
    """A satiety ``level`` set at ``since``, at time ``now``: halved every satiation_half_life_days."""
    return level * math.exp(-LN2 * (now - since) / p.satiation_half_life_days)


@njit(cache=True, inline="always")
def utility(p, i, it, day, now, topic, appeal, rel_price, category, boost, interest, price_sens, fatigue,  # noqa: ANN001, ANN201
            sated_item, sated_level, sated_time):
    """(utility, interest . topic) of showing item ``it`` to user row i on ``day`` at time ``now``:
    the static part plus the calendar boost of its category, minus boredom and satiety."""
    dot = interest_dot(interest, i, topic, it)
    c = category[it]
    u = static_utility(p, dot, appeal[it], price_sens[i], rel_price[it]) + boost[day, c] - fatigue[i, c]
    return u - satiety(p, i, it, now, sated_item, sated_level, sated_time), dot


@njit(cache=True, inline="always")
def cart_prob(p, dot, quality):  # noqa: ANN001, ANN201
    """P(add-to-cart | click): quality and interest raise it."""
    return sigmoid(p.cart_bias + p.cart_quality * quality + p.cart_interest * dot)


@njit(cache=True, inline="always")
def purchase_prob(p, dot, quality, price_sens, rel_price):  # noqa: ANN001, ANN201
    """P(purchase | cart): quality and interest raise it, a price above the mean lowers it."""
    return sigmoid(p.purchase_bias + p.purchase_quality * quality + p.purchase_interest * dot
                   - price_sens * (rel_price - 1.0))


@njit(cache=True, inline="always")
def click_value(p, dot, quality, price_sens, rel_price, price):  # noqa: ANN001, ANN201
    """Expected reward of a request given that the user clicks the item (the funnel's value)."""
    buy = purchase_prob(p, dot, quality, price_sens, rel_price)
    return p.reward_click + cart_prob(p, dot, quality) * (
        p.reward_cart + buy * (p.reward_purchase + p.reward_revenue * price))


@njit(cache=True, inline="always")
def patience_refund(p, quality):  # noqa: ANN001, ANN201
    """Requests of patience a click on an item of ``quality`` gives back (a bad item takes some
    away), at most ``patience_refund_max`` < 1, so every session ends."""
    return np.minimum(p.patience_quality * quality, p.patience_refund_max)


@njit(cache=True, inline="always")
def satisfied(p, satisfaction, quality):  # noqa: ANN001, ANN201
    """Satisfaction after a click on an item of ``quality``: an EMA of the quality clicked."""
    return satisfaction + p.satisfaction_rate * (quality - satisfaction)


@njit(cache=True, inline="always")
def churn_prob(p, satisfaction):  # noqa: ANN001, ANN201
    """P(churn) at the end of a session: satisfaction lowers it."""
    return sigmoid(p.churn_bias - p.churn_satisfaction * satisfaction)


@njit(cache=True, inline="always")
def gap_scale(p, satisfaction):  # noqa: ANN001, ANN201
    """Mean of the exponential part of the gap before the next session (which adds it to
    ``gap_min_days``): satisfaction shortens it."""
    return p.gap_mean_days * np.exp(-p.gap_satisfaction * satisfaction)


# ----------------------------------------------------------------------------- random streams
@njit(cache=True, inline="always")
def _mix(x: np.uint64) -> np.uint64:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


@njit(cache=True, inline="always")
def _base(key: np.uint64, stream: int, counter: int) -> np.uint64:
    return _mix(key ^ _mix(np.uint64(counter) * np.uint64(64) + np.uint64(stream)))


@njit(cache=True, inline="always")
def _unif(base: np.uint64, col: int) -> float:
    """Column ``col`` of the stream at ``base``: equals ``rng.uniforms(...)[:, col]``."""
    bits = _mix(base + np.uint64(col + 1) * _GOLDEN)
    return float(bits >> np.uint64(11)) * _TO_UNIT


@njit(cache=True, inline="always")
def _normal_pair(base: np.uint64, pair: int) -> tuple[float, float]:
    """Two independent standard normals by Marsaglia's polar method from columns 64 * pair + 2 * try
    (+ 1): a uniform point of the square is kept once inside the unit disc (p = pi / 4), one log and
    one square root per pair, no sine or cosine; after 31 misses (p < 1e-20) Box-Muller on a last pair."""
    col = 64 * pair
    for _ in range(31):
        x = 2.0 * _unif(base, col) - 1.0
        y = 2.0 * _unif(base, col + 1) - 1.0
        s = x * x + y * y
        if 0.0 < s < 1.0:
            f = math.sqrt(-2.0 * math.log(s) / s)
            return x * f, y * f
        col += 2
    r = math.sqrt(-2.0 * math.log1p(-_unif(base, col)))
    angle = 2.0 * math.pi * _unif(base, col + 1)
    return r * math.cos(angle), r * math.sin(angle)


@njit(**NO_REFCOUNT)
def stream_uniforms(key, stream, counter, out):  # noqa: ANN001, ANN201
    """out[i, c] = uniform c of the compiled stream at (key[i], stream, counter[i]): ``rng.uniforms``
    bit for bit (tested)."""
    for i in range(key.shape[0]):
        b = _base(key[i], stream, counter[i])
        for c in range(out.shape[1]):
            out[i, c] = _unif(b, c)


@njit(cache=True, inline="always")
def _draw(cum, u):  # noqa: ANN001
    """Index drawn from a cumulative distribution (last entry ~1) with one uniform."""
    last = cum.shape[0] - 1
    for j in range(last):
        if u < cum[j]:
            return j
    return last


# ----------------------------------------------------------------------------- lives
@njit(**NO_REFCOUNT)
def start_lives(rows, params, segment_cum, age_cum, gender_cum, income_cum, segment_interest,  # noqa: ANN001
                segment_price_sens,
                slot_key, episode, key, t, user_id, segment, demo, base, interest, price_sens, patience_base,
                patience, satisfaction, fatigue, counts, hist_item, hist_cat, hist_beh, hist_n, time, drift_time,
                session, session_step, sated_item, sated_level, sated_time, search_interest, search_weight):
    """In place: the users in ``rows`` start the ``episode[i]``-th life of their slot stream. Every
    per-user field is rewritten, so a fresh batch (``np.empty`` arrays, all rows) and an autoreset
    (some rows of a running batch) go through the same code."""
    p = params[0]
    d = base.shape[1]
    n_age, n_gender = age_cum.shape[1], gender_cum.shape[1]
    for i in rows:
        # episode key: equals rng.episode_key(slot_key, episode)
        k = _mix(slot_key[i] ^ _mix(np.uint64(episode[i]) * _GOLDEN + _GOLDEN))
        key[i] = k
        user_id[i] = np.int64(k >> np.uint64(1))
        t[i] = 0
        b = _base(k, STREAM_INIT, 0)
        seg = _draw(segment_cum, _unif(b, 0))
        segment[i] = seg
        demo[i, :] = 0.0
        demo[i, _draw(age_cum[seg], _unif(b, 1))] = 1.0
        demo[i, n_age + _draw(gender_cum[seg], _unif(b, 2))] = 1.0
        demo[i, n_age + n_gender + _draw(income_cum[seg], _unif(b, 3))] = 1.0
        z_sens, z_patience = _normal_pair(b, 1)  # pair 0's columns hold the four draws above
        price_sens[i] = segment_price_sens[seg] * math.exp(0.3 * z_sens)
        patience_base[i] = p.patience_mean * math.exp(0.3 * z_patience - 0.045)  # mean patience_mean
        patience[i] = patience_base[i]
        spread = p.segment_spread * 2.0 / math.sqrt(d)
        for j in range(0, d, 2):
            z0, z1 = _normal_pair(b, 2 + j // 2)
            base[i, j] = interest[i, j] = segment_interest[seg, j] + spread * z0
            if j + 1 < d:
                base[i, j + 1] = interest[i, j + 1] = segment_interest[seg, j + 1] + spread * z1
        satisfaction[i] = 0.0
        fatigue[i, :] = 0.0
        counts[i, :] = 0.0
        hist_item[i, :] = -1
        hist_cat[i, :] = -1
        hist_beh[i, :] = 0
        hist_n[i] = 0
        time[i] = 0.0
        drift_time[i] = 0.0
        session[i] = 0
        session_step[i] = 0
        sated_item[i, :] = -1
        sated_level[i, :] = 0.0
        sated_time[i, :] = 0.0
        search_interest[i, :] = 0.0
        search_weight[i, :] = -1.0  # the search weights are not computed yet


@njit(**NO_REFCOUNT)
def candidates(rows, candidate_perm, block_start, block_size, key, t, cand):  # noqa: ANN001
    """M distinct candidates for each user in ``rows``: one uniform pick from each block of a fixed
    permutation of the catalog."""
    m = cand.shape[1]
    for i in rows:
        b = _base(key[i], STREAM_CANDIDATES, t[i])
        for j in range(m):
            cand[i, j] = candidate_perm[block_start[j] + int(_unif(b, j) * block_size[j])]


@njit(**NO_REFCOUNT)
def slate_items(action, cand, limit, items):  # noqa: ANN001
    """Write the (N, K) item ids of an action batch into ``items`` (candidate indices go through
    ``cand`` when it has columns); return the flat index of the first out-of-range action, or -1."""
    n, k_slate = items.shape
    use_cand = cand.shape[1] > 0
    for i in range(n):
        for k in range(k_slate):
            a = action[i, k]
            if a < 0 or a >= limit:
                return i * k_slate + k
            items[i, k] = cand[i, a] if use_cand else a
    return -1


# ----------------------------------------------------------------------------- the step
@njit(**NO_REFCOUNT)
def step_users(items, scratch, params, cascade, pos_w,  # noqa: ANN001
               category, topic, appeal, quality, price, rel_price, cat_start, cat_count, centroid, boost,
               segment_interest,
               key, t, segment, base, interest, price_sens, patience_base, patience, satisfaction, fatigue, counts,
               hist_item, hist_cat, hist_beh, hist_n, time, drift_time, session, session_step, sated_item,
               sated_level, sated_time, search_interest, search_weight,
               out_reward, out_terminated, out_truncated, out_shown, out_click_pos, out_cart, out_purchase,
               out_time, out_session, out_search_cat, out_view_item, out_organic_time, out_organic_session):
    """One request for every user: the parts listed in the module doc, in order. ``scratch``: (3, K)
    float64 working space (see NO_REFCOUNT); ``cascade``: whether ``choice_model`` is the cascade."""
    p = params[0]
    n, k_slate = items.shape
    n_days = boost.shape[0]
    util, dots, prob = scratch[0], scratch[1], scratch[2]
    dt_request = p.request_minutes / MINUTES_PER_DAY
    fatigue_on = p.drift_fatigue > 0.0
    step_decay = math.exp(-LN2 * dt_request / p.fatigue_half_life_days) if fatigue_on else 1.0
    for i in range(n):
        b = _base(key[i], STREAM_STEP, t[i])
        now = time[i]
        out_time[i] = now
        out_session[i] = session[i]
        day = min(int(now), n_days - 1)

        top = _slate_utility(p, i, items, day, now, pos_w, topic, appeal, rel_price, category, boost, interest,
                             price_sens, fatigue, sated_item, sated_level, sated_time, util, dots, out_shown)
        choice = _choose(p, i, cascade, util, top, pos_w, prob, out_shown, _unif(b, _U_CHOICE))
        _remember_impressions(p, i, items, category, out_shown, counts, fatigue)
        reward, q = 0.0, 0.0
        is_cart, is_buy = False, False
        if choice < k_slate:
            it = items[i, choice]
            q = quality[it]
            reward, is_cart, is_buy = _funnel(p, i, b, it, dots[choice], quality, price, rel_price, price_sens)
            _remember_click(p, i, it, now, is_cart, is_buy, q, category, topic, counts, hist_item, hist_cat,
                            hist_beh, hist_n, interest, satisfaction, sated_item, sated_level, sated_time)
            out_click_pos[i] = choice
        else:
            out_click_pos[i] = -1
        out_cart[i] = is_cart
        out_purchase[i] = is_buy
        out_reward[i] = reward

        end, term, trunc = _end_request(p, i, b, q, dt_request, step_decay, fatigue_on, patience, session_step, t,
                                        satisfaction, time, fatigue)
        out_terminated[i] = term
        out_truncated[i] = trunc
        if end and not term and not trunc:
            _start_session(p, i, b, key, segment, base, interest, patience_base, patience, time, drift_time,
                           session, session_step, segment_interest)
        _organic(p, i, b, not term and not trunc, centroid, cat_start, cat_count, interest, counts, hist_item,
                 hist_cat, hist_beh, hist_n, search_interest, search_weight, out_search_cat, out_view_item)
        out_organic_time[i] = time[i]
        out_organic_session[i] = session[i]


@njit(cache=True, inline="always")
def _slate_utility(p, i, items, day, now, pos_w, topic, appeal, rel_price, category, boost, interest,  # noqa: ANN001
                   price_sens, fatigue, sated_item, sated_level, sated_time, util, dots, shown):
    """util[k] and interest . topic dots[k] of each slate position (a repeated item is shown only at its
    first); returns max(no_click_utility, the largest clickable utility): the scale the MNL subtracts."""
    top = p.no_click_utility
    for k in range(items.shape[1]):
        it = items[i, k]
        dup = False
        for j in range(k):
            if items[i, j] == it:
                dup = True
        shown[i, k] = not dup
        u, dot = utility(p, i, it, day, now, topic, appeal, rel_price, category, boost, interest, price_sens,
                               fatigue, sated_item, sated_level, sated_time)
        util[k] = u
        dots[k] = dot
        if not dup and pos_w[k] > 0.0:  # a hidden position must not set the scale (0 / 0)
            top = max(top, u)
    return top


@njit(cache=True, inline="always")
def _choose(p, i, cascade, util, top, pos_w, prob, shown, u_choice):  # noqa: ANN001
    """Click probabilities of the slate positions (MNL with position bias, or cascade) and the
    chosen position drawn with one uniform; K means no click."""
    k_slate = util.shape[0]
    if cascade:
        before = 1.0
        for k in range(k_slate):
            attract = 0.0
            if shown[i, k]:
                attract = 1.0 / (1.0 + math.exp(-(util[k] - p.no_click_utility)))
            prob[k] = pos_w[k] * attract * before
            before *= 1.0 - attract
    else:
        denom = math.exp(p.no_click_utility - top)
        for k in range(k_slate):
            wk = math.exp(util[k] - top) * pos_w[k] if shown[i, k] and pos_w[k] > 0.0 else 0.0
            prob[k] = wk
            denom += wk
        for k in range(k_slate):
            prob[k] /= denom
    acc = 0.0
    for k in range(k_slate):
        acc += prob[k]
        if u_choice < acc:
            return k
    return k_slate


@njit(cache=True, inline="always")
def _remember_impressions(p, i, items, category, shown, counts, fatigue):  # noqa: ANN001
    """Memory of what was shown: per-category impression counts decay then count the slate, and
    each shown item adds boredom to its category (``drift_fatigue``)."""
    for j in range(counts.shape[1]):
        counts[i, j] *= p.count_decay
    for k in range(items.shape[1]):
        if shown[i, k]:
            c = category[items[i, k]]
            counts[i, c] += 1.0
            fatigue[i, c] += p.drift_fatigue


@njit(cache=True, inline="always")
def _funnel(p, i, b, it, dot, quality, price, rel_price, price_sens):  # noqa: ANN001
    """A click may lead to add-to-cart, then to purchase (cart_prob, purchase_prob);
    returns (reward, cart, purchase)."""
    q = quality[it]
    is_cart = _unif(b, _U_CART) < cart_prob(p, dot, q)
    is_buy = False
    if is_cart:
        is_buy = _unif(b, _U_BUY) < purchase_prob(p, dot, q, price_sens[i], rel_price[it])
    reward = p.reward_click + p.reward_cart * is_cart + p.reward_purchase * is_buy
    if is_buy:
        reward += p.reward_revenue * price[it]
    return reward, is_cart, is_buy


@njit(cache=True, inline="always")
def _remember_click(p, i, it, now, is_cart, is_buy, q, category, topic, counts, hist_item, hist_cat, hist_beh,  # noqa: ANN001
                    hist_n, interest, satisfaction, sated_item, sated_level, sated_time):
    """What a click leaves behind: counts and history, satiety with the item, the pull of its
    topic on interest (filter bubble), and satisfaction moving toward its quality."""
    n_cat = counts.shape[1] // 4  # impressions, clicks, purchases, organic per category
    c = category[it]
    counts[i, n_cat + c] += 1.0
    _remember(i, it, c, _CLICK, hist_item, hist_cat, hist_beh, hist_n)
    if is_cart:
        _remember(i, it, c, _CART, hist_item, hist_cat, hist_beh, hist_n)
    if is_buy:
        counts[i, 2 * n_cat + c] += 1.0
        _remember(i, it, c, _PURCHASE, hist_item, hist_cat, hist_beh, hist_n)
    amount = p.satiation_click + (p.satiation_purchase if is_buy else 0.0)
    if amount > 0.0:
        _sate(p, i, it, now, amount, sated_item, sated_level, sated_time)
    if p.drift_bubble > 0.0:
        _drift_bubble(p, i, it, topic, interest)
    satisfaction[i] = satisfied(p, satisfaction[i], q)


@njit(cache=True, inline="always")
def _remember(i, item, cat, code, hist_item, hist_cat, hist_beh, hist_n):  # noqa: ANN001
    slot = hist_n[i] % hist_item.shape[1]
    hist_item[i, slot] = item
    hist_cat[i, slot] = cat
    hist_beh[i, slot] = code
    hist_n[i] += 1


@njit(cache=True, inline="always")
def _sate(p, i, it, now, amount, sated_item, sated_level, sated_time):  # noqa: ANN001
    """Raise the user's satiety with item ``it`` by ``amount`` (utility). A user remembers the S items
    they are most sated with: the item's own slot, else the first empty one, else the least sated now."""
    slot = -1
    low = math.inf
    for s in range(sated_item.shape[1]):
        held = sated_item[i, s]
        if held == it or held < 0:  # slots fill in order: an empty slot ends the items held
            slot = s
            break
        level = _decayed(p, sated_level[i, s], sated_time[i, s], now)
        if level < low:
            low, slot = level, s
    current = satiety(p, i, it, now, sated_item, sated_level, sated_time)
    sated_item[i, slot] = it
    sated_level[i, slot] = current + amount
    sated_time[i, slot] = now


@njit(cache=True, inline="always")
def _drift_bubble(p, i, it, topic, interest):  # noqa: ANN001
    """Consumption-induced drift: the direction of interest turns ``drift_bubble`` of the way (along
    the chord) toward the clicked item's unit topic, and its length is kept: a bubble focuses a
    user, it does not make them indifferent."""
    _turn(i, interest, topic, it, 1.0, p.drift_bubble, 1.0, 0.0)


@njit(cache=True, inline="always")
def _turn(i, interest, target, t, target_norm, pull, keep_length, add_length):  # noqa: ANN001
    """interest[i] := (keep_length |x| + add_length) unit((1 - pull) unit(x) + pull target[t] / target_norm)
    with x = interest[i]: its direction turns ``pull`` of the way (along the chord) toward the target's.
    A zero x takes the target's direction; where the two cancel (opposite, pull 1/2) x keeps its own."""
    dim = interest.shape[1]
    norm = 0.0
    for j in range(dim):
        norm += interest[i, j] * interest[i, j]
    norm = math.sqrt(norm)
    a = (1.0 - pull) / norm if norm > 0.0 else 0.0
    b = pull / target_norm
    turned = 0.0
    for j in range(dim):
        v = a * interest[i, j] + b * target[t, j]
        turned += v * v
    turned = math.sqrt(turned)
    length = keep_length * norm + add_length
    if turned == 0.0:
        a, b, turned = 1.0, 0.0, norm
    if turned == 0.0:
        return
    scale = length / turned
    for j in range(dim):
        interest[i, j] = (a * interest[i, j] + b * target[t, j]) * scale


@njit(cache=True, inline="always")
def _end_request(p, i, b, q, dt_request, step_decay, fatigue_on, patience, session_step, t, satisfaction, time,  # noqa: ANN001
                 fatigue):
    """The request costs a unit of patience and a click refunds ``patience_refund`` (below 1, so every
    session ends). When patience runs out the session ends: the user churns, or returns after
    ``gap_min_days`` plus an exponential gap that satisfaction shortens. Boredom decays over the
    time that passed. Returns (session ended, terminated, truncated)."""
    patience[i] += patience_refund(p, q) - 1.0
    session_step[i] += 1
    t[i] += 1
    end = patience[i] <= 0.0
    term = False
    dt = dt_request
    if end:
        term = _unif(b, _U_CHURN) < churn_prob(p, satisfaction[i])
        dt += p.gap_min_days - math.log1p(-_unif(b, _U_GAP)) * gap_scale(p, satisfaction[i])
    time[i] += dt
    if fatigue_on:
        decay = math.exp(-LN2 * dt / p.fatigue_half_life_days) if end else step_decay
        for c in range(fatigue.shape[1]):
            f = fatigue[i, c] * decay
            # boredom below 1e-12 logits is none: dropping it keeps the arithmetic out of subnormal
            # numbers (a gap of days halves it hundreds of times), which cost ~100x per operation
            fatigue[i, c] = f if f > FATIGUE_FLOOR else 0.0
    trunc = (not term) and time[i] >= p.horizon_days
    return end, term, trunc


@njit(cache=True, inline="always")
def _start_session(p, i, b, key, segment, base, interest, patience_base, patience, time, drift_time,  # noqa: ANN001
                   session, session_step, segment_interest):
    """New session: patience refills; the drift processes act over the time since the last one."""
    session[i] += 1
    session_step[i] = 0
    patience[i] = patience_base[i]
    elapsed = time[i] - drift_time[i]
    drift_time[i] = time[i]
    if p.drift_migration > 0.0 and segment_interest.shape[0] > 1:
        _migrate(p, i, b, elapsed, key, session, segment, base, interest, segment_interest)
    if p.bubble_reversion > 0.0:
        _revert(p, i, elapsed, base, interest)
    if p.drift_gradual > 0.0:
        _wander(p, i, elapsed, key, session, base, interest)


@njit(cache=True, inline="always")
def _migrate(p, i, b, elapsed, key, session, segment, base, interest, segment_interest):  # noqa: ANN001
    """Life events: with hazard ``drift_migration`` per day, base and current interest jump to
    another segment's, keeping the user's offset from their segment."""
    n_seg = segment_interest.shape[0]
    if _unif(b, _U_MIGRATE) < -math.expm1(-p.drift_migration * elapsed):
        v = _unif(_base(key[i], STREAM_SESSION, session[i] * 2 + 1), 0)
        old = segment[i]
        new = (old + 1 + int(v * (n_seg - 1))) % n_seg
        for j in range(base.shape[1]):
            shift = segment_interest[new, j] - segment_interest[old, j]
            base[i, j] += shift
            interest[i, j] += shift
        segment[i] = new


@njit(cache=True, inline="always")
def _revert(p, i, elapsed, base, interest):  # noqa: ANN001
    """Reversion toward base interest at rate ``bubble_reversion`` per day, on its own (it undoes the
    filter bubble with or without the Ornstein-Uhlenbeck noise). Like the bubble it moves direction and
    length apart: with keep = exp(-rate * elapsed), each moves 1 - keep of the way toward base's, so a
    focused user returns to their own interests without passing through indifference."""
    keep = math.exp(-p.bubble_reversion * elapsed)
    base_norm = 0.0
    for j in range(base.shape[1]):
        base_norm += base[i, j] * base[i, j]
    base_norm = math.sqrt(base_norm)
    if base_norm > 0.0:
        _turn(i, interest, base, i, base_norm, 1.0 - keep, keep, (1.0 - keep) * base_norm)
    else:
        for j in range(base.shape[1]):
            interest[i, j] *= keep


@njit(cache=True, inline="always")
def _wander(p, i, elapsed, key, session, base, interest):  # noqa: ANN001
    """Gradual drift: the exact Ornstein-Uhlenbeck transition of interest around base over the
    elapsed time (Gillespie 1996), volatility ``drift_gradual``, reversion ``gradual_reversion``."""
    theta = p.gradual_reversion
    decay = math.exp(-theta * elapsed)
    sd = p.drift_gradual * math.sqrt((1.0 - decay * decay) / (2.0 * theta))
    bs = _base(key[i], STREAM_SESSION, session[i] * 2)
    dim = base.shape[1]
    for j in range(0, dim, 2):
        z0, z1 = _normal_pair(bs, j // 2)  # pair j // 2 of the session's stream
        interest[i, j] = base[i, j] + (interest[i, j] - base[i, j]) * decay + sd * z0
        if j + 1 < dim:
            interest[i, j + 1] = base[i, j + 1] + (interest[i, j + 1] - base[i, j + 1]) * decay + sd * z1


@njit(cache=True, inline="always")
def _organic(p, i, b, alive, centroid, cat_start, cat_count, interest, counts, hist_item, hist_cat, hist_beh,  # noqa: ANN001
             hist_n, search_interest, search_weight, search_cat, view_item):
    """Before the next request a live user may search a category drawn from softmax(interest .
    centroid / search_temperature), and may then view one of its items. The softmax's weights are
    kept with the interest they were computed for and reused while it has not moved."""
    search_cat[i] = -1
    view_item[i] = -1
    if not alive or p.search_prob <= 0.0 or _unif(b, _U_SEARCH) >= p.search_prob:
        return
    n_cat, dim = centroid.shape
    moved = search_weight[i, 0] < 0.0  # -1: not computed yet in this life (a weight is never negative)
    for j in range(dim):
        if moved or search_interest[i, j] != interest[i, j]:
            moved = True
            break
    if moved:
        mx = -math.inf
        for c in range(n_cat):
            dot = 0.0
            for j in range(dim):
                dot += interest[i, j] * centroid[c, j]
            search_weight[i, c] = dot / p.search_temperature
            mx = max(mx, search_weight[i, c])
        for c in range(n_cat):
            search_weight[i, c] = math.exp(search_weight[i, c] - mx)
        for j in range(dim):
            search_interest[i, j] = interest[i, j]
    tot = 0.0
    for c in range(n_cat):
        tot += search_weight[i, c]
    us = _unif(b, _U_SEARCH_CAT) * tot
    sc = n_cat - 1
    acc = 0.0
    for c in range(n_cat):
        acc += search_weight[i, c]
        if us < acc:
            sc = c
            break
    search_cat[i] = sc
    counts[i, 3 * n_cat + sc] += 1.0
    _remember(i, -1, sc, _SEARCH, hist_item, hist_cat, hist_beh, hist_n)
    if _unif(b, _U_VIEW) < p.view_prob:
        vi = cat_start[sc] + int(_unif(b, _U_VIEW_ITEM) * cat_count[sc])
        view_item[i] = vi
        counts[i, 3 * n_cat + sc] += 1.0
        _remember(i, vi, sc, _VIEW, hist_item, hist_cat, hist_beh, hist_n)


# ----------------------------------------------------------------------------- observation
@njit(**NO_REFCOUNT)
def observe_users(obs, rows, params, count_norm, event_flags, category, price_feature,  # noqa: ANN001
                  off_calendar, off_context, off_events, off_counts, off_last, n_last, off_cand,
                  demo, counts, hist_cat, hist_beh, hist_n, time, session, session_step, cand):
    """Fill zeroed ``obs[r]`` with the features of user ``rows[r]`` (see ShopModel.layout); offsets
    below 0 mark absent parts."""
    horizon_days = params[0].horizon_days
    n_demo = demo.shape[1]
    n_counts = counts.shape[1]
    n_cat = event_flags.shape[1]
    n_days = event_flags.shape[0]
    h = hist_beh.shape[1]
    m = cand.shape[1]
    width = n_cat + 6
    phase_scale = 2.0 * math.pi / 7.0
    for r in range(rows.shape[0]):
        i = rows[r]
        for j in range(n_demo):
            obs[r, j] = demo[i, j]
        phase = phase_scale * time[i]
        obs[r, off_calendar] = math.sin(phase)
        obs[r, off_calendar + 1] = math.cos(phase)
        obs[r, off_context] = min(time[i] / horizon_days, 1.0)
        obs[r, off_context + 1] = session_step[i] / (session_step[i] + 10.0)
        obs[r, off_context + 2] = session[i] / (session[i] + 10.0)
        if off_events >= 0:
            day = min(int(time[i]), n_days - 1)
            for c in range(n_cat):
                obs[r, off_events + c] = event_flags[day, c]
        for j in range(n_counts):
            obs[r, off_counts + j] = min(counts[i, j] * count_norm[j], 1.0)
        for j in range(n_last):  # newest first; an unwritten slot holds 0 (pad)
            slot = (hist_n[i] - 1 - j) % h
            beh = hist_beh[i, slot]
            if beh != 0:
                obs[r, off_last + j * width + hist_cat[i, slot]] = 1.0
                obs[r, off_last + j * width + n_cat - 1 + beh] = 1.0
        for j in range(m):
            it = cand[i, j]
            obs[r, off_cand + j * (n_cat + 1) + category[it]] = 1.0
            obs[r, off_cand + j * (n_cat + 1) + n_cat] = price_feature[it]


# ----------------------------------------------------------------------------- rules over batches (ShopModel, oracles)
@njit(**NO_REFCOUNT)
def slate_utilities(items, params, topic, appeal, rel_price, category, boost,  # noqa: ANN001
                    interest, price_sens, fatigue, time, sated_item, sated_level, sated_time, out_util):
    """out_util[n, k] = utility of items[n, k] for user row n now (what the step computes)."""
    p = params[0]
    n_days = boost.shape[0]
    for i in range(items.shape[0]):
        day = min(int(time[i]), n_days - 1)
        for k in range(items.shape[1]):
            out_util[i, k] = utility(p, i, items[i, k], day, time[i], topic, appeal, rel_price, category, boost,
                                     interest, price_sens, fatigue, sated_item, sated_level, sated_time)[0]


@njit(**NO_REFCOUNT)
def static_scores(params, items, topic, appeal, quality, price, rel_price, interest, price_sens,  # noqa: ANN001
                  out_logit, out_value):
    """For user row i and item it = items[i or 0, j] (one shared row of items serves every user):
    out_logit[i, j] = static utility - no_click_utility, out_value[i, j] = click value. Both move
    only with the user's interest and price sensitivity, so an oracle can cache them."""
    p = params[0]
    shared = items.shape[0] == 1
    for i in range(interest.shape[0]):
        r = 0 if shared else i
        s = price_sens[i]
        for j in range(items.shape[1]):
            it = items[r, j]
            dot = interest_dot(interest, i, topic, it)
            out_logit[i, j] = static_utility(p, dot, appeal[it], s, rel_price[it]) - p.no_click_utility
            out_value[i, j] = click_value(p, dot, quality[it], s, rel_price[it], price[it])


@njit(**NO_REFCOUNT)
def one_item_rewards(params, items, catalog, logit, value, category, boost, fatigue, time, sated_item,  # noqa: ANN001
                     sated_level, sated_time, out):
    """out[i, j] = P(click of a one-item slate) * value = value * sigmoid(logit + boost - boredom -
    satiety): the expected immediate reward of showing items[i or 0, j] alone, from the cached
    ``static_scores``; rows of ``logit`` are the rows of the state arrays. ``catalog``: items is
    the one row 0 .. n_items - 1, so only the few sated items need a satiety term."""
    p = params[0]
    shared = items.shape[0] == 1
    n_days = boost.shape[0]
    for i in range(logit.shape[0]):
        r = 0 if shared else i
        day = min(int(time[i]), n_days - 1)
        now = time[i]
        for j in range(logit.shape[1]):
            it = items[r, j]
            c = category[it]
            u = logit[i, j] + boost[day, c] - fatigue[i, c]
            if not catalog:
                u -= satiety(p, i, it, now, sated_item, sated_level, sated_time)
            out[i, j] = value[i, j] * sigmoid(u)
        if catalog:
            for s in range(sated_item.shape[1]):
                it = sated_item[i, s]
                if it >= 0:
                    c = category[it]
                    u = logit[i, it] + boost[day, c] - fatigue[i, c]
                    out[i, it] = value[i, it] * sigmoid(u - satiety(p, i, it, now, sated_item, sated_level,
                                                                    sated_time))
