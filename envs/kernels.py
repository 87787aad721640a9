"""Compiled per-user kernels of ShopSim: init, step and observe.

Why compiled: a step is a few dozen scalar operations per user. As numpy calls over the batch each
operation pays a fixed dispatch cost, which dominates for small batches (the single-user env) and
still costs half the time at N = 4096. Numba runs the same per-user arithmetic as one loop.

The kernels are pure in the sense of the style guide: all state is in the arrays passed in (the
step writes the new state into them; ``ShopModel.step`` copies first unless told otherwise), all
randomness comes from the user's counter-based stream (the same splitmix64 streams as
:mod:`driftrec.envs.rng`, bit for bit), and no global state is read or written.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from driftrec.envs.rng import STREAM_CANDIDATES, STREAM_INIT, STREAM_SESSION, STREAM_STEP

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 2.0**-53

# behaviour codes (see driftrec.envs.state)
_SEARCH, _VIEW, _CLICK, _CART, _PURCHASE = 1, 2, 4, 5, 6
# columns of a user's per-step uniforms
_U_CHOICE, _U_CART, _U_BUY, _U_CHURN, _U_GAP, _U_SEARCH, _U_SEARCH_CAT, _U_VIEW, _U_VIEW_ITEM, _U_MIGRATE = range(10)
# A click refunds at most this much of the request it cost (RecSim's quality refill tops out near 0.8
# too): uncapped, an agent showing good items holds a user in one session for the whole horizon.
MAX_PATIENCE_REFUND = 0.8


class Params(NamedTuple):
    """Scalar knobs the kernels read; a model packs them once with :func:`pack_params`."""

    interest_scale: float
    no_click_utility: float
    cascade: bool
    fatigue_on: bool
    seasonal_on: bool
    cart_bias: float
    cart_quality: float
    purchase_bias: float
    purchase_quality: float
    reward_click: float
    reward_cart: float
    reward_purchase: float
    reward_revenue: float
    count_decay: float
    drift_fatigue: float
    fatigue_half_life_days: float
    drift_bubble: float
    satisfaction_rate: float
    patience_quality: float
    churn_bias: float
    churn_satisfaction: float
    gap_mean_days: float
    gap_satisfaction: float
    dt_request: float
    horizon_days: float
    search_prob: float
    view_prob: float
    search_temperature: float
    drift_migration: float
    drift_gradual: float
    gradual_reversion: float
    segment_spread: float
    patience_mean: float
    history_len: int


def pack_params(params: Params) -> np.ndarray:
    """A one-element numpy record of the params: numba types it in the fast path, a tuple of 34
    fields costs more to dispatch than the whole single-user step."""
    dtype = np.dtype([(name, np.int64 if isinstance(v, int) and not isinstance(v, bool)
                       else np.bool_ if isinstance(v, bool) else np.float64)
                      for name, v in params._asdict().items()])
    return np.array([tuple(params)], dtype=dtype)


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
def _normal(base: np.uint64, col: int) -> float:
    """Standard normal from columns 2*col and 2*col+1 (Box-Muller, cosine branch)."""
    u1 = _unif(base, 2 * col)
    u2 = _unif(base, 2 * col + 1)
    return math.sqrt(-2.0 * math.log1p(-u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True, inline="always")
def _sigmoid(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))


@njit(cache=True, inline="always")
def _remember(i, item, cat, code, hist_item, hist_cat, hist_beh, hist_n, h):  # noqa: ANN001
    slot = hist_n[i] % h
    hist_item[i, slot] = item
    hist_cat[i, slot] = cat
    hist_beh[i, slot] = code
    hist_n[i] += 1


@njit(cache=True)
def start_lives(rows, slot_key, episode, key, t, user_id, segment, demo, base, interest,  # noqa: ANN001
                price_sens, patience_base, patience, satisfaction, fatigue, counts, hist_item, hist_cat,
                hist_beh, hist_n, time, drift_time, session, session_step,
                segment_cum, age_cum, gender_cum, income_cum, segment_interest, segment_price_sens,
                spread, patience_mean):
    """In place: the users in ``rows`` start the ``episode[i]``-th life of their slot stream.

    Every per-user field is rewritten, so a fresh batch (``np.empty`` arrays, all rows) and an
    autoreset (some rows of a running batch) go through the same code.
    """
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
        price_sens[i] = segment_price_sens[seg] * math.exp(0.3 * _normal(b, 2))
        patience_base[i] = patience_mean * math.exp(0.3 * _normal(b, 3) - 0.045)
        patience[i] = patience_base[i]
        for j in range(d):
            v = segment_interest[seg, j] + spread * 2.0 / math.sqrt(d) * _normal(b, 4 + j)
            base[i, j] = v
            interest[i, j] = v
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


@njit(cache=True, inline="always")
def _draw(cum, u):  # noqa: ANN001
    """Index drawn from a cumulative distribution (last entry ~1) with one uniform."""
    last = cum.shape[0] - 1
    for j in range(last):
        if u < cum[j]:
            return j
    return last


@njit(cache=True)
def candidates(rows, key, t, perm, block_start, block_size, cand):  # noqa: ANN001
    """M distinct candidates for each user in ``rows``: one uniform pick from each block of a fixed
    permutation of the catalog."""
    m = cand.shape[1]
    for i in rows:
        b = _base(key[i], STREAM_CANDIDATES, t[i])
        for j in range(m):
            cand[i, j] = perm[block_start[j] + int(_unif(b, j) * block_size[j])]


@njit(cache=True)
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


@njit(cache=True)
def step_users(params, items, pos_w,  # noqa: ANN001, C901
               category, topic, appeal, quality, price, rel_price, cat_start, cat_count, centroid, boost,
               segment_interest,
               key, t, segment, base, interest, price_sens, patience_base, patience, satisfaction, fatigue,
               counts, hist_item, hist_cat, hist_beh, hist_n, time, drift_time, session, session_step,
               reward, terminated, truncated, shown, click_pos, cart, purchase, time0, session0,
               search_cat, view_item, organic_time, organic_session):
    """One request for every user: choice, funnel, memory, session end, drift, organic behaviour."""
    p = params[0]
    n, k_slate = items.shape
    n_cat, dim = centroid.shape
    n_days = boost.shape[0]
    n_seg = segment_interest.shape[0]
    h = p.history_len
    util = np.empty(k_slate)
    prob = np.empty(k_slate)
    pref = np.empty(n_cat)
    fatigue_step_decay = 0.0
    for i in range(n):
        b = _base(key[i], STREAM_STEP, t[i])
        time0[i] = time[i]
        session0[i] = session[i]
        day = min(int(time[i]), n_days - 1)

        # utility of each slate position; a repeated item is shown only at its first position
        top = p.no_click_utility
        for k in range(k_slate):
            it = items[i, k]
            dup = False
            for j in range(k):
                if items[i, j] == it:
                    dup = True
            shown[i, k] = not dup
            c = category[it]
            dot = 0.0
            for j in range(dim):
                dot += interest[i, j] * topic[it, j]
            u = p.interest_scale * dot + appeal[it] - price_sens[i] * rel_price[it]
            if p.fatigue_on:
                u -= fatigue[i, c]
            if p.seasonal_on:
                u += boost[day, c]
            util[k] = u
            if shown[i, k] and pos_w[k] > 0.0:  # a hidden position must not set the scale (0 / 0)
                top = max(top, u)

        # click probabilities (MNL or cascade) and one draw
        if p.cascade:
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
        u_choice = _unif(b, _U_CHOICE)
        choice = k_slate
        acc = 0.0
        for k in range(k_slate):
            acc += prob[k]
            if u_choice < acc:
                choice = k
                break

        # remember impressions (decayed counts) and boredom
        for j in range(counts.shape[1]):
            counts[i, j] *= p.count_decay
        for k in range(k_slate):
            if shown[i, k]:
                c = category[items[i, k]]
                counts[i, c] += 1.0
                if p.fatigue_on:
                    fatigue[i, c] += p.drift_fatigue

        # funnel: click -> cart -> purchase
        r = 0.0
        q = 0.0
        is_cart = False
        is_buy = False
        if choice < k_slate:
            it = items[i, choice]
            c = category[it]
            q = quality[it]
            click_pos[i] = choice
            is_cart = _unif(b, _U_CART) < _sigmoid(p.cart_bias + p.cart_quality * q)
            if is_cart:
                logit = p.purchase_bias + p.purchase_quality * q - price_sens[i] * (rel_price[it] - 1.0)
                is_buy = _unif(b, _U_BUY) < _sigmoid(logit)
            r = p.reward_click + p.reward_cart * is_cart + p.reward_purchase * is_buy
            if is_buy:
                r += p.reward_revenue * price[it]
            counts[i, n_cat + c] += 1.0
            _remember(i, it, c, _CLICK, hist_item, hist_cat, hist_beh, hist_n, h)
            if is_cart:
                _remember(i, it, c, _CART, hist_item, hist_cat, hist_beh, hist_n, h)
            if is_buy:
                counts[i, 2 * n_cat + c] += 1.0
                _remember(i, it, c, _PURCHASE, hist_item, hist_cat, hist_beh, hist_n, h)
            if p.drift_bubble > 0.0:  # consumption pulls interest toward the consumed topic
                for j in range(dim):
                    interest[i, j] += p.drift_bubble * (topic[it, j] - interest[i, j])
            satisfaction[i] += p.satisfaction_rate * (q - satisfaction[i])
        else:
            click_pos[i] = -1
        cart[i] = is_cart
        purchase[i] = is_buy
        reward[i] = r
        patience[i] += min(p.patience_quality * q, MAX_PATIENCE_REFUND) - 1.0  # every session ends
        session_step[i] += 1
        t[i] += 1

        # session end: churn, or come back after a gap that satisfaction shortens
        end = patience[i] <= 0.0
        term = False
        dt = p.dt_request
        if end:
            term = _unif(b, _U_CHURN) < _sigmoid(p.churn_bias - p.churn_satisfaction * satisfaction[i])
            dt += (-math.log1p(-_unif(b, _U_GAP)) * p.gap_mean_days
                   * math.exp(-p.gap_satisfaction * satisfaction[i]))
        time[i] += dt
        if p.fatigue_on:
            if end:
                decay = 0.5 ** (dt / p.fatigue_half_life_days)
            else:
                if fatigue_step_decay == 0.0:
                    fatigue_step_decay = 0.5 ** (p.dt_request / p.fatigue_half_life_days)
                decay = fatigue_step_decay
            for c in range(n_cat):
                fatigue[i, c] *= decay
        trunc = (not term) and time[i] >= p.horizon_days
        terminated[i] = term
        truncated[i] = trunc
        if end and not term and not trunc:
            _start_session(i, p, b, key, segment, base, interest, patience_base, patience, time, drift_time,
                           session, session_step, segment_interest, n_seg, dim)

        # organic behaviour before the next request reveals the current interest
        search_cat[i] = -1
        view_item[i] = -1
        if not term and not trunc and p.search_prob > 0.0 and _unif(b, _U_SEARCH) < p.search_prob:
            mx = -math.inf
            for c in range(n_cat):
                dot = 0.0
                for j in range(dim):
                    dot += interest[i, j] * centroid[c, j]
                pref[c] = dot / p.search_temperature
                mx = max(mx, pref[c])
            tot = 0.0
            for c in range(n_cat):
                pref[c] = math.exp(pref[c] - mx)
                tot += pref[c]
            us = _unif(b, _U_SEARCH_CAT) * tot
            sc = n_cat - 1
            acc = 0.0
            for c in range(n_cat):
                acc += pref[c]
                if us < acc:
                    sc = c
                    break
            search_cat[i] = sc
            counts[i, 3 * n_cat + sc] += 1.0
            _remember(i, -1, sc, _SEARCH, hist_item, hist_cat, hist_beh, hist_n, h)
            if _unif(b, _U_VIEW) < p.view_prob:
                vi = cat_start[sc] + int(_unif(b, _U_VIEW_ITEM) * cat_count[sc])
                view_item[i] = vi
                counts[i, 3 * n_cat + sc] += 1.0
                _remember(i, vi, sc, _VIEW, hist_item, hist_cat, hist_beh, hist_n, h)
        organic_time[i] = time[i]
        organic_session[i] = session[i]


@njit(cache=True, inline="always")
def _start_session(i, p, b, key, segment, base, interest, patience_base, patience, time, drift_time,  # noqa: ANN001
                   session, session_step, segment_interest, n_seg, dim):
    """New session: refill patience; apply migration and gradual drift over the time since last."""
    session[i] += 1
    session_step[i] = 0
    patience[i] = patience_base[i]
    elapsed = time[i] - drift_time[i]
    drift_time[i] = time[i]
    if p.drift_migration > 0.0 and n_seg > 1:
        if _unif(b, _U_MIGRATE) < -math.expm1(-p.drift_migration * elapsed):
            v = _unif(_base(key[i], STREAM_SESSION, session[i] * 2 + 1), 0)
            old = segment[i]
            new = (old + 1 + int(v * (n_seg - 1))) % n_seg
            for j in range(dim):  # a life event: the user keeps their offset from the segment
                shift = segment_interest[new, j] - segment_interest[old, j]
                base[i, j] += shift
                interest[i, j] += shift
            segment[i] = new
    if p.drift_gradual > 0.0:
        # exact Ornstein-Uhlenbeck transition over the elapsed time (Gillespie 1996)
        theta = p.gradual_reversion
        decay = math.exp(-theta * elapsed)
        sd = p.drift_gradual * math.sqrt((1.0 - decay * decay) / (2.0 * theta))
        bs = _base(key[i], STREAM_SESSION, session[i] * 2)
        for j in range(dim):
            interest[i, j] = base[i, j] + (interest[i, j] - base[i, j]) * decay + sd * _normal(bs, j)


@njit(cache=True)
def observe_users(obs, rows, demo, time, session, session_step, counts, count_norm, hist_cat, hist_beh, hist_n,  # noqa: ANN001
                  event_flags, cand, category, price_feature, horizon_days,
                  off_calendar, off_context, off_events, off_counts, off_last, n_last, off_cand):
    """Fill zeroed ``obs[r]`` with the features of user ``rows[r]`` (see ShopModel.layout); offsets
    below 0 mark absent parts."""
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
