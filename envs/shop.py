"""ShopSim: the batched drifting-user model (state, pure step, observation).

One step is one recommendation request for each of N users. The dynamics are pure functions of
(state, action, world, config); randomness comes from each user's counter-based stream
(:mod:`driftrec.envs.rng`), so a user's trajectory does not depend on the batch it runs in.
The env shells in :mod:`driftrec.envs.shopsim` and :mod:`driftrec.envs.vector` only drive this.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from gymnasium import spaces

from driftrec.envs import rng as rngs
from driftrec.envs.choice import cascade_probs, mnl_probs, position_weights, sample_choice
from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.layout import Layout
from driftrec.envs.state import (BEHAVIOURS, CART, CLICK, PAD, PURCHASE, SEARCH, VIEW, StepOutput,
                                 copy_state, set_rows)
from driftrec.envs.world import N_AGE, N_GENDER, N_INCOME, PRICE_FEATURE_CLIP, World, build_world

MINUTES_PER_DAY = 1440.0
N_COUNT_KINDS = 4  # impressions, clicks, purchases, organic (searches + views) per category
N_INIT_DRAWS = 6
N_STEP_DRAWS = 10
# columns of the per-step uniforms
_U_CHOICE, _U_CART, _U_BUY, _U_CHURN, _U_GAP, _U_SEARCH, _U_SEARCH_CAT, _U_VIEW, _U_VIEW_ITEM, _U_MIGRATE = range(10)


@dataclasses.dataclass
class ShopState:
    """Batch state of N users; every field has the users axis first."""

    slot_key: np.ndarray  # (N,) uint64 stream key of the slot (from the seed)
    episode: np.ndarray  # (N,) int64 how many lives this slot has started before this one
    key: np.ndarray  # (N,) uint64 stream key of this life
    t: np.ndarray  # (N,) int64 requests served in this life (the step counter of the stream)
    user_id: np.ndarray  # (N,) int64 id of this life in the event log
    segment: np.ndarray  # (N,) int64 hidden segment (changes on migration)
    demo: np.ndarray  # (N, 9) float32 one-hot age (4), gender (2), income (3) buckets
    base: np.ndarray  # (N, D) float64 base interest (moves only by migration)
    interest: np.ndarray  # (N, D) float64 current interest
    price_sens: np.ndarray  # (N,) float64 utility lost per unit relative price
    patience_base: np.ndarray  # (N,) float64 patience a session starts with
    patience: np.ndarray  # (N,) float64 requests left in this session (quality moves it)
    satisfaction: np.ndarray  # (N,) float64 EMA of the quality of clicked items
    fatigue: np.ndarray  # (N, C) float64 boredom per category (utility)
    counts: np.ndarray  # (N, 4C) float32 decayed impressions, clicks, purchases, organic per category
    hist_item: np.ndarray  # (N, H) int64 ring buffer of item ids (-1 none, e.g. a search)
    hist_cat: np.ndarray  # (N, H) int64 ring buffer of categories
    hist_beh: np.ndarray  # (N, H) int8 ring buffer of behaviour codes (0 = empty)
    hist_n: np.ndarray  # (N,) int64 events ever written (next slot is hist_n % H)
    time: np.ndarray  # (N,) float64 days since the life began
    drift_time: np.ndarray  # (N,) float64 time the interest drift was last applied
    session: np.ndarray  # (N,) int64 session index
    session_step: np.ndarray  # (N,) int64 requests so far in this session
    cand: np.ndarray  # (N, M) int64 candidates of the pending request (M = 0 in catalog mode)


class ShopModel:
    """ShopSim bound to one config: spaces, layout and the pure batched dynamics."""

    def __init__(self, cfg: SimConfig):
        if cfg.n_items < cfg.n_categories:
            raise ConfigError(f"config key 'n_items' ({cfg.n_items}) must be >= n_categories ({cfg.n_categories})")
        if cfg.action_mode == "candidates" and cfg.n_candidates > cfg.n_items:
            raise ConfigError(f"config key 'n_candidates' ({cfg.n_candidates}) must be <= n_items ({cfg.n_items})")
        self.cfg = cfg
        self.world: World = build_world(cfg)
        self.k = cfg.slate_size
        self.m = cfg.n_candidates if cfg.action_mode == "candidates" else 0
        self.n_cat = cfg.n_categories
        self.dim = cfg.topic_dim
        self.pos_w = position_weights(self.k, cfg.position_decay)
        self.dt_request = cfg.request_minutes / MINUTES_PER_DAY
        self.fatigue_step = 0.5 ** (self.dt_request / cfg.fatigue_half_life_days)
        norm = np.repeat(np.array([1.0 / self.k, 1.0, 1.0, 0.5]), self.n_cat)  # max count per step
        self.count_norm = (norm * (1.0 - cfg.count_decay)).astype(np.float32)
        edges = (np.arange(self.m + 1) * cfg.n_items) // max(self.m, 1)
        self.block_start, self.block_size = edges[:-1], np.diff(edges)
        self.layout = self._layout()
        self.action_space = self._action_space()
        self.observation_space = self._observation_space()

    # ----------------------------------------------------------------------------- spaces
    def _layout(self) -> Layout:
        c, cfg = self.n_cat, self.cfg
        lay = Layout()
        lay.add("demographics", N_AGE + N_GENDER + N_INCOME, 0.0, 1.0,
                "one-hot age (4), gender (2) and income (3) buckets")
        lay.add("calendar", 2, -1.0, 1.0, "sin and cos of the day of the week")
        lay.add("context", 3, 0.0, 1.0, "life elapsed / horizon, session step / (step + 10), "
                "sessions / (sessions + 10)")
        if cfg.events_visible:
            lay.add("events", c, 0.0, 1.0, "1 where a calendar event boosts the category today")
        lay.add("counts", N_COUNT_KINDS * c, 0.0, 1.0, "decayed impressions, clicks, purchases and "
                "organic events per category, scaled to [0, 1]")
        if cfg.last_interactions:
            lay.add("last_interactions", cfg.last_interactions * (c + len(BEHAVIOURS)), 0.0, 1.0,
                    "newest first: one-hot category then one-hot behaviour of each recent event")
        if self.m:
            lay.add("candidates", self.m * (c + 1), -PRICE_FEATURE_CLIP, PRICE_FEATURE_CLIP,
                    "per candidate: one-hot category then log relative price")
        if cfg.obs_mode == "oracle":
            inf = math.inf
            lay.add("hidden_interest", self.dim, -inf, inf, "current interest vector")
            lay.add("hidden_base", self.dim, -inf, inf, "base interest vector")
            lay.add("hidden_user", 3, -inf, inf, "price sensitivity, patience left, satisfaction")
            lay.add("hidden_fatigue", c, 0.0, inf, "boredom per category")
            lay.add("hidden_segment", cfg.n_segments, 0.0, 1.0, "one-hot segment")
        return lay

    def _action_space(self) -> spaces.Space:
        n = self.m if self.m else self.cfg.n_items
        if self.k == 1:
            return spaces.Discrete(n)
        return spaces.MultiDiscrete(np.full(self.k, n, dtype=np.int64))

    def _observation_space(self) -> spaces.Space:
        flat = self.layout.box()
        if self.cfg.obs_mode != "history":
            return flat
        h = self.cfg.history_len
        return spaces.Dict({
            "features": flat,
            "item_ids": spaces.MultiDiscrete(np.full(h, self.cfg.n_items + 1, dtype=np.int64)),
            "behaviours": spaces.MultiDiscrete(np.full(h, len(BEHAVIOURS) + 1, dtype=np.int64)),
        })

    # ----------------------------------------------------------------------------- reset
    def init(self, slot_key: np.ndarray, episode: np.ndarray) -> ShopState:
        """Fresh users: the ``episode``-th life of each slot stream."""
        w, cfg, n, d, c, h = self.world, self.cfg, len(slot_key), self.dim, self.n_cat, self.cfg.history_len
        slot_key = np.asarray(slot_key, dtype=np.uint64)
        episode = np.asarray(episode, dtype=np.int64)
        key = rngs.episode_key(slot_key, episode)
        zero = np.zeros(n, dtype=np.int64)
        u = rngs.uniforms(key, rngs.STREAM_INIT, zero, N_INIT_DRAWS + d)
        segment = _categorical(np.cumsum(w.segment_weight)[None, :], u[:, 0])
        demo = np.zeros((n, N_AGE + N_GENDER + N_INCOME), dtype=np.float32)
        rows = np.arange(n)
        offset = 0
        for col, probs in ((1, w.age_probs), (2, w.gender_probs), (3, w.income_probs)):
            demo[rows, offset + _categorical(np.cumsum(probs[segment], axis=1), u[:, col])] = 1.0
            offset += probs.shape[1]
        z = rngs.normals(u[:, N_INIT_DRAWS:])
        base = w.segment_interest[segment] + cfg.segment_spread * 2.0 / math.sqrt(d) * z
        patience_base = cfg.patience_mean * np.exp(0.3 * rngs.normals(u[:, 5]) - 0.045)
        state = ShopState(
            slot_key=slot_key, episode=episode, key=key, t=zero.copy(),
            user_id=(key >> np.uint64(1)).astype(np.int64), segment=segment, demo=demo,
            base=base, interest=base.copy(),
            price_sens=w.segment_price_sens[segment] * np.exp(0.3 * rngs.normals(u[:, 4])),
            patience_base=patience_base, patience=patience_base.copy(), satisfaction=np.zeros(n),
            fatigue=np.zeros((n, c)), counts=np.zeros((n, N_COUNT_KINDS * c), dtype=np.float32),
            hist_item=np.full((n, h), -1, dtype=np.int64), hist_cat=np.full((n, h), -1, dtype=np.int64),
            hist_beh=np.zeros((n, h), dtype=np.int8), hist_n=zero.copy(),
            time=np.zeros(n), drift_time=np.zeros(n), session=zero.copy(), session_step=zero.copy(),
            cand=np.zeros((n, self.m), dtype=np.int64),
        )
        if self.m:
            state.cand = self._candidates(key, state.t)
        return state

    def reset_where(self, state: ShopState, mask: np.ndarray) -> None:
        """In place: start the next life in the slots where ``mask`` (autoreset)."""
        rows = np.flatnonzero(mask)
        if rows.size:
            set_rows(state, rows, self.init(state.slot_key[rows], state.episode[rows] + 1))

    def _candidates(self, key: np.ndarray, t: np.ndarray) -> np.ndarray:
        """M distinct candidates: one uniform pick from each block of a fixed catalog permutation."""
        u = rngs.uniforms(key, rngs.STREAM_CANDIDATES, t, self.m)
        return self.world.candidate_perm[self.block_start + (u * self.block_size).astype(np.int64)]

    # ----------------------------------------------------------------------------- step
    def slate_items(self, state: ShopState, action: np.ndarray) -> np.ndarray:
        """(N, K) item ids of an action batch (candidate indices are mapped through ``state.cand``)."""
        a = np.asarray(action, dtype=np.int64).reshape(len(state.t), self.k)
        limit = self.m if self.m else self.cfg.n_items
        if a.size and (a.min() < 0 or a.max() >= limit):
            bad = a[(a < 0) | (a >= limit)][0]
            what = "candidate index" if self.m else "item id"
            raise ValueError(f"action out of range: {what} {bad} not in [0, {limit})")
        if self.m:
            return np.take_along_axis(state.cand, a, axis=1)
        return a

    def step(self, state: ShopState, action: np.ndarray, inplace: bool = False) -> tuple[ShopState, StepOutput]:
        """One request for every user. Pure unless ``inplace`` (shells that own the state use it)."""
        if not inplace:
            state = copy_state(state)
        w, cfg = self.world, self.cfg
        n, c = len(state.t), self.n_cat
        rows = np.arange(n)
        items = self.slate_items(state, action)
        u = rngs.uniforms(state.key, rngs.STREAM_STEP, state.t, N_STEP_DRAWS)
        time0, session0 = state.time.copy(), state.session.copy()

        shown = shown_mask(items)
        cats = w.category[items]
        util = self.utility(state, items, cats)
        probs_fn = mnl_probs if cfg.choice_model == "mnl" else cascade_probs
        probs = probs_fn(util, shown, self.pos_w, cfg.no_click_utility)
        choice = sample_choice(probs, u[:, _U_CHOICE])
        click = choice < self.k
        pos = np.minimum(choice, self.k - 1)
        item_c = items[rows, pos]
        quality = np.where(click, w.quality[item_c], 0.0)

        # funnel: click -> cart -> purchase
        cart = click & (u[:, _U_CART] < _sigmoid(cfg.cart_bias + cfg.cart_quality * quality))
        buy_logit = cfg.purchase_bias + cfg.purchase_quality * quality - state.price_sens * (w.rel_price[item_c] - 1)
        purchase = cart & (u[:, _U_BUY] < _sigmoid(buy_logit))
        reward = cfg.reward_click * click + cfg.reward_cart * cart + cfg.reward_purchase * purchase
        if cfg.reward_revenue:
            reward = reward + cfg.reward_revenue * w.price[item_c] * purchase

        # what the user remembers
        state.counts *= np.float32(cfg.count_decay)
        cat_c = w.category[item_c]
        for k in range(self.k):
            state.counts[rows, cats[:, k]] += shown[:, k]
        state.counts[rows, c + cat_c] += click
        state.counts[rows, 2 * c + cat_c] += purchase
        self._remember(state, click, item_c, cat_c, CLICK)
        self._remember(state, cart, item_c, cat_c, CART)
        self._remember(state, purchase, item_c, cat_c, PURCHASE)
        if cfg.drift_fatigue > 0:
            for k in range(self.k):
                state.fatigue[rows, cats[:, k]] += cfg.drift_fatigue * shown[:, k]
        if cfg.drift_bubble > 0:  # consumption pulls interest toward the consumed topic
            state.interest += (cfg.drift_bubble * click)[:, None] * (w.topic[item_c] - state.interest)
        state.satisfaction += cfg.satisfaction_rate * click * (quality - state.satisfaction)
        state.patience += cfg.patience_quality * quality - 1.0
        state.session_step += 1
        state.t += 1

        # session end: churn or come back after a gap that satisfaction shortens
        end = state.patience <= 0.0
        terminated = end & (u[:, _U_CHURN] < _sigmoid(cfg.churn_bias - cfg.churn_satisfaction * state.satisfaction))
        gap = np.where(end, -np.log1p(-u[:, _U_GAP]) * cfg.gap_mean_days
                       * np.exp(-cfg.gap_satisfaction * state.satisfaction), 0.0)
        dt = self.dt_request + gap
        state.time += dt
        if cfg.drift_fatigue > 0:
            state.fatigue *= (0.5 ** (dt / cfg.fatigue_half_life_days))[:, None]
        truncated = ~terminated & (state.time >= cfg.horizon_days)
        new_session = end & ~terminated & ~truncated
        if new_session.any():
            self._start_sessions(state, np.flatnonzero(new_session), u[:, _U_MIGRATE])

        # organic behaviour before the next request reveals the current interest
        alive = ~(terminated | truncated)
        search_cat = np.full(n, -1, dtype=np.int64)
        view_item = np.full(n, -1, dtype=np.int64)
        if cfg.search_prob > 0:
            search = alive & (u[:, _U_SEARCH] < cfg.search_prob)
            logits = (state.interest @ w.centroid.T) / cfg.search_temperature
            pref = np.exp(logits - logits.max(axis=1, keepdims=True))
            cum = np.cumsum(pref, axis=1)
            scat = _categorical(cum / cum[:, -1:], u[:, _U_SEARCH_CAT])
            view = search & (u[:, _U_VIEW] < cfg.view_prob)
            vitem = w.cat_start[scat] + (u[:, _U_VIEW_ITEM] * w.cat_count[scat]).astype(np.int64)
            self._remember(state, search, np.full(n, -1, dtype=np.int64), scat, SEARCH)
            self._remember(state, view, vitem, scat, VIEW)
            state.counts[rows, 3 * c + scat] += search.astype(np.float32) + view
            search_cat = np.where(search, scat, -1)
            view_item = np.where(view, vitem, -1)
        if self.m:
            state.cand = self._candidates(state.key, state.t)

        out = StepOutput(
            reward=reward, terminated=terminated, truncated=truncated, items=items, shown=shown,
            click_pos=np.where(click, choice, -1), cart=cart, purchase=purchase, watch=np.zeros(n),
            time=time0, session=session0, search_cat=search_cat, view_item=view_item,
            organic_time=state.time.copy(), organic_session=state.session.copy(),
        )
        return state, out

    def _remember(self, state: ShopState, mask: np.ndarray, item: np.ndarray, cat: np.ndarray, code: int) -> None:
        """Append one event to the history ring buffer of the users in ``mask``."""
        rows = np.flatnonzero(mask)
        if rows.size:
            slot = state.hist_n[rows] % self.cfg.history_len
            state.hist_item[rows, slot] = item[rows]
            state.hist_cat[rows, slot] = cat[rows]
            state.hist_beh[rows, slot] = code
            state.hist_n[rows] += 1

    def _start_sessions(self, state: ShopState, rows: np.ndarray, u_migrate: np.ndarray) -> None:
        """New sessions for ``rows``: refill patience, apply gradual drift and migration since last time."""
        cfg, w = self.cfg, self.world
        state.session[rows] += 1
        state.session_step[rows] = 0
        state.patience[rows] = state.patience_base[rows]
        elapsed = state.time[rows] - state.drift_time[rows]
        state.drift_time[rows] = state.time[rows]
        if cfg.drift_migration > 0 and cfg.n_segments > 1:
            jump = u_migrate[rows] < -np.expm1(-cfg.drift_migration * elapsed)
            movers = rows[jump]
            if movers.size:
                v = rngs.uniforms(state.key[movers], rngs.STREAM_SESSION, state.session[movers] * 2 + 1, 1)[:, 0]
                old = state.segment[movers]
                new = (old + 1 + (v * (cfg.n_segments - 1)).astype(np.int64)) % cfg.n_segments
                shift = w.segment_interest[new] - w.segment_interest[old]
                state.base[movers] += shift  # a life event: the user keeps their offset from the segment
                state.interest[movers] += shift
                state.segment[movers] = new
        if cfg.drift_gradual > 0:
            # exact Ornstein-Uhlenbeck transition over the elapsed time (Gillespie 1996)
            theta, sigma = cfg.gradual_reversion, cfg.drift_gradual
            decay = np.exp(-theta * elapsed)[:, None]
            sd = sigma * np.sqrt((1.0 - decay**2) / (2.0 * theta))
            z = rngs.normals(rngs.uniforms(state.key[rows], rngs.STREAM_SESSION, state.session[rows] * 2, self.dim))
            base = state.base[rows]
            state.interest[rows] = base + (state.interest[rows] - base) * decay + sd * z

    # ----------------------------------------------------------------------------- observation
    def observe(self, state: ShopState) -> np.ndarray | dict[str, np.ndarray]:
        """Fresh observation arrays for the batch, laid out as ``self.layout``."""
        cfg, w, lay = self.cfg, self.world, self.layout
        n, c = len(state.t), self.n_cat
        obs = np.zeros((n, lay.size), dtype=np.float32)
        obs[:, lay["demographics"]] = state.demo
        phase = (2.0 * math.pi / 7.0) * state.time
        cal = lay["calendar"].start
        obs[:, cal] = np.sin(phase)
        obs[:, cal + 1] = np.cos(phase)
        ctx = lay["context"].start
        obs[:, ctx] = np.minimum(state.time / cfg.horizon_days, 1.0)
        obs[:, ctx + 1] = state.session_step / (state.session_step + 10.0)
        obs[:, ctx + 2] = state.session / (state.session + 10.0)
        if cfg.events_visible:
            day = np.minimum(state.time.astype(np.int64), w.boost.shape[0] - 1)
            obs[:, lay["events"]] = w.boost[day] > 0
        obs[:, lay["counts"]] = np.minimum(state.counts * self.count_norm, 1.0)
        if cfg.last_interactions:
            self._last_interactions(state, obs[:, lay["last_interactions"]])
        if self.m:
            block = obs[:, lay["candidates"]].reshape(n, self.m, c + 1)
            cand_cat = w.category[state.cand]
            block[np.arange(n)[:, None], np.arange(self.m)[None, :], cand_cat] = 1.0
            block[:, :, c] = w.price_feature[state.cand]
            obs[:, lay["candidates"]] = block.reshape(n, -1)
        if cfg.obs_mode == "oracle":
            obs[:, lay["hidden_interest"]] = state.interest
            obs[:, lay["hidden_base"]] = state.base
            user = lay["hidden_user"].start
            obs[:, user] = state.price_sens
            obs[:, user + 1] = state.patience
            obs[:, user + 2] = state.satisfaction
            obs[:, lay["hidden_fatigue"]] = state.fatigue
            obs[np.arange(n), lay["hidden_segment"].start + state.segment] = 1.0
        if cfg.obs_mode != "history":
            return obs
        h = cfg.history_len
        order = (state.hist_n[:, None] + np.arange(h)[None, :]) % h  # oldest ... newest
        item = np.take_along_axis(state.hist_item, order, axis=1)
        return {
            "features": obs,
            "item_ids": np.where(item < 0, cfg.n_items, item),
            "behaviours": np.take_along_axis(state.hist_beh, order, axis=1).astype(np.int64),
        }

    def _last_interactions(self, state: ShopState, out: np.ndarray) -> None:
        n, c, h = len(state.t), self.n_cat, self.cfg.history_len
        width = c + len(BEHAVIOURS)
        block = out.reshape(n, self.cfg.last_interactions, width)
        rows = np.arange(n)
        for j in range(self.cfg.last_interactions):
            slot = (state.hist_n - 1 - j) % h
            beh = state.hist_beh[rows, slot]
            have = (beh != PAD) & (state.hist_n > j)
            r = rows[have]
            block[r, j, state.hist_cat[r, slot[have]]] = 1.0
            block[r, j, c + beh[have] - 1] = 1.0
        out[:] = block.reshape(n, -1)

    def action_masks(self, state: ShopState) -> np.ndarray:
        """(N, sum of nvec) valid-action mask for MaskablePPO: every item or candidate is valid.

        Duplicates within a slate are allowed (see the duplicates rule), so no action is ever
        masked out; the mask exists so maskable algorithms run on every preset.
        """
        n_actions = self.m if self.m else self.cfg.n_items
        return np.ones((len(state.t), n_actions * self.k), dtype=bool)

    # ----------------------------------------------------------------------------- helpers
    def utility(self, state: ShopState, items: np.ndarray, cats: np.ndarray | None = None) -> np.ndarray:
        """(N, K) utility of each slate position: interest . topic + appeal - price - fatigue + event."""
        w, cfg = self.world, self.cfg
        if cats is None:
            cats = w.category[items]
        util = cfg.interest_scale * np.einsum("nd,nkd->nk", state.interest, w.topic[items])
        util += w.appeal[items] - state.price_sens[:, None] * w.rel_price[items]
        if cfg.drift_fatigue > 0:
            util -= state.fatigue[np.arange(len(items))[:, None], cats]
        if cfg.drift_seasonal > 0:
            day = np.minimum(state.time.astype(np.int64), w.boost.shape[0] - 1)
            util += w.boost[day[:, None], cats]
        return util

    def choice_probs(self, state: ShopState, items: np.ndarray) -> np.ndarray:
        """(N, K + 1) choice probabilities of a slate of item ids, exactly as ``step`` samples them."""
        fn = mnl_probs if self.cfg.choice_model == "mnl" else cascade_probs
        pos_w = position_weights(items.shape[1], self.cfg.position_decay)
        return fn(self.utility(state, items), shown_mask(items), pos_w, self.cfg.no_click_utility)


def shown_mask(items: np.ndarray) -> np.ndarray:
    """Duplicates rule: an item repeated in a slate is shown only at its first position; the
    later positions show nothing (no impression, no click). (N, K) bool."""
    shown = np.ones(items.shape, dtype=bool)
    for k in range(1, items.shape[1]):
        shown[:, k] = (items[:, :k] != items[:, k:k + 1]).all(axis=1)
    return shown


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def _categorical(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index drawn from cumulative probabilities ``cum`` (rows, last column 1) with uniforms ``u``."""
    return np.minimum((u[:, None] >= cum[:, :-1]).sum(axis=1), cum.shape[1] - 1)
