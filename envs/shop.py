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

from driftrec.envs import kernels
from driftrec.envs.choice import cascade_probs, mnl_probs, position_weights
from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.layout import Layout, observation_space, slate_action_space
from driftrec.envs.state import BEHAVIOURS, StepOutput, copy_state, take_rows
from driftrec.envs.world import N_AGE, N_GENDER, N_INCOME, PRICE_FEATURE_CLIP, World, build_world

MINUTES_PER_DAY = 1440.0
N_COUNT_KINDS = 4  # impressions, clicks, purchases, organic (searches + views) per category


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
        norm = np.repeat(np.array([1.0 / self.k, 1.0, 1.0, 0.5]), self.n_cat)  # max count per step
        self.count_norm = (norm * (1.0 - cfg.count_decay)).astype(np.float32)
        edges = (np.arange(self.m + 1) * cfg.n_items) // max(self.m, 1)
        self.block_start, self.block_size = edges[:-1], np.diff(edges)
        if cfg.last_interactions > cfg.history_len:
            raise ConfigError(f"config key 'last_interactions' ({cfg.last_interactions}) must be <= "
                              f"history_len ({cfg.history_len})")
        self.layout = self._layout()
        self._newest = np.arange(1, cfg.last_interactions + 1)[None, :]
        if cfg.last_interactions:
            width = self.n_cat + len(BEHAVIOURS)
            self._last_offsets = (self.layout["last_interactions"].start
                                  + np.arange(cfg.last_interactions) * width)[None, :]
        self._event_flags = (self.world.boost > 0).astype(np.float32)  # (days, C)
        w = self.world
        self._segment_cum = np.cumsum(w.segment_weight)
        self._age_cum, self._gender_cum, self._income_cum = (
            np.cumsum(x, axis=1) for x in (w.age_probs, w.gender_probs, w.income_probs))
        self._n_actions = self.m if self.m else cfg.n_items
        self.params = kernels.Params(
            interest_scale=cfg.interest_scale, no_click_utility=cfg.no_click_utility,
            cascade=cfg.choice_model == "cascade", fatigue_on=cfg.drift_fatigue > 0,
            seasonal_on=cfg.drift_seasonal > 0, cart_bias=cfg.cart_bias, cart_quality=cfg.cart_quality,
            purchase_bias=cfg.purchase_bias, purchase_quality=cfg.purchase_quality,
            reward_click=cfg.reward_click, reward_cart=cfg.reward_cart, reward_purchase=cfg.reward_purchase,
            reward_revenue=cfg.reward_revenue, count_decay=cfg.count_decay, drift_fatigue=cfg.drift_fatigue,
            fatigue_half_life_days=cfg.fatigue_half_life_days, drift_bubble=cfg.drift_bubble,
            satisfaction_rate=cfg.satisfaction_rate, patience_quality=cfg.patience_quality,
            churn_bias=cfg.churn_bias, churn_satisfaction=cfg.churn_satisfaction, gap_mean_days=cfg.gap_mean_days,
            gap_satisfaction=cfg.gap_satisfaction, dt_request=self.dt_request, horizon_days=cfg.horizon_days,
            search_prob=cfg.search_prob, view_prob=cfg.view_prob, search_temperature=cfg.search_temperature,
            drift_migration=cfg.drift_migration, drift_gradual=cfg.drift_gradual,
            gradual_reversion=cfg.gradual_reversion, segment_spread=cfg.segment_spread,
            patience_mean=cfg.patience_mean, history_len=cfg.history_len,
        )
        self._packed = kernels.pack_params(self.params)
        self.action_space = slate_action_space(self._n_actions, self.k)
        self.observation_space = observation_space(self.layout, cfg.obs_mode, cfg.history_len, cfg.n_items,
                                                  len(BEHAVIOURS))

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

    # ----------------------------------------------------------------------------- reset
    def init(self, slot_key: np.ndarray, episode: np.ndarray) -> ShopState:
        """Fresh users: the ``episode``-th life of each slot stream."""
        d, c, h = self.dim, self.n_cat, self.cfg.history_len
        slot_key = np.array(slot_key, dtype=np.uint64).reshape(-1)
        n = len(slot_key)
        e, i64 = np.empty, np.int64
        state = ShopState(
            slot_key=slot_key, episode=np.array(episode, dtype=i64).reshape(-1), key=e(n, dtype=np.uint64),
            t=e(n, dtype=i64), user_id=e(n, dtype=i64), segment=e(n, dtype=i64),
            demo=e((n, N_AGE + N_GENDER + N_INCOME), dtype=np.float32), base=e((n, d)), interest=e((n, d)),
            price_sens=e(n), patience_base=e(n), patience=e(n), satisfaction=e(n), fatigue=e((n, c)),
            counts=e((n, N_COUNT_KINDS * c), dtype=np.float32), hist_item=e((n, h), dtype=i64),
            hist_cat=e((n, h), dtype=i64), hist_beh=e((n, h), dtype=np.int8), hist_n=e(n, dtype=i64),
            time=e(n), drift_time=e(n), session=e(n, dtype=i64), session_step=e(n, dtype=i64),
            cand=e((n, self.m), dtype=i64),
        )
        self._start_lives(state, np.arange(n))
        return state

    def reset_where(self, state: ShopState, mask: np.ndarray) -> None:
        """In place: start the next life in the slots where ``mask`` (autoreset)."""
        rows = np.flatnonzero(mask)
        if rows.size:
            state.episode[rows] += 1
            self._start_lives(state, rows)

    def _start_lives(self, state: ShopState, rows: np.ndarray) -> None:
        w, s = self.world, state
        kernels.start_lives(
            rows, s.slot_key, s.episode, s.key, s.t, s.user_id, s.segment, s.demo, s.base, s.interest,
            s.price_sens, s.patience_base, s.patience, s.satisfaction, s.fatigue, s.counts, s.hist_item,
            s.hist_cat, s.hist_beh, s.hist_n, s.time, s.drift_time, s.session, s.session_step,
            self._segment_cum, self._age_cum, self._gender_cum, self._income_cum, w.segment_interest,
            w.segment_price_sens, self.cfg.segment_spread, self.cfg.patience_mean)
        if self.m:
            kernels.candidates(rows, s.key, s.t, w.candidate_perm, self.block_start, self.block_size, s.cand)

    # ----------------------------------------------------------------------------- step
    def slate_items(self, state: ShopState, action: np.ndarray) -> np.ndarray:
        """(N, K) item ids of an action batch (candidate indices are mapped through ``state.cand``)."""
        a = np.asarray(action, dtype=np.int64).reshape(len(state.t), self.k)
        items = np.empty_like(a)
        bad = kernels.slate_items(a, state.cand, self._n_actions, items)
        if bad >= 0:
            what = "candidate index" if self.m else "item id"
            raise ValueError(f"action out of range: {what} {a.flat[bad]} not in [0, {self._n_actions})")
        return items

    def step(self, state: ShopState, action: np.ndarray, inplace: bool = False) -> tuple[ShopState, StepOutput]:
        """One request for every user (see :func:`driftrec.envs.kernels.step_users` for the dynamics).

        Pure unless ``inplace``: the env shells, which own their state, step in place.
        """
        if not inplace:
            state = copy_state(state)
        w = self.world
        n = len(state.t)
        items = self.slate_items(state, action)
        f64, i64, b = np.empty, np.empty, np.empty
        out = StepOutput(
            reward=f64(n), terminated=b(n, dtype=bool), truncated=b(n, dtype=bool), items=items,
            shown=b(items.shape, dtype=bool), click_pos=i64(n, dtype=np.int64), cart=b(n, dtype=bool),
            purchase=b(n, dtype=bool), watch=np.zeros(n), time=f64(n), session=i64(n, dtype=np.int64),
            search_cat=i64(n, dtype=np.int64), view_item=i64(n, dtype=np.int64), organic_time=f64(n),
            organic_session=i64(n, dtype=np.int64),
        )
        kernels.step_users(
            self._packed, items, self.pos_w,
            w.category, w.topic, w.appeal, w.quality, w.price, w.rel_price, w.cat_start, w.cat_count, w.centroid,
            w.boost, w.segment_interest,
            state.key, state.t, state.segment, state.base, state.interest, state.price_sens, state.patience_base,
            state.patience, state.satisfaction, state.fatigue, state.counts, state.hist_item, state.hist_cat,
            state.hist_beh, state.hist_n, state.time, state.drift_time, state.session, state.session_step,
            out.reward, out.terminated, out.truncated, out.shown, out.click_pos, out.cart, out.purchase,
            out.time, out.session, out.search_cat, out.view_item, out.organic_time, out.organic_session,
        )
        if self.m:
            kernels.candidates(np.arange(n), state.key, state.t, w.candidate_perm, self.block_start,
                               self.block_size, state.cand)
        return state, out

    # ----------------------------------------------------------------------------- observation
    def observe(self, state: ShopState, rows: np.ndarray | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """Fresh observation arrays for the batch (or its ``rows``), laid out as ``self.layout``."""
        cfg, w, lay = self.cfg, self.world, self.layout
        if rows is None:
            rows = np.arange(len(state.t))
        elif cfg.obs_mode != "features":  # the hidden and history parts below read whole arrays
            state, rows = take_rows(state, rows), np.arange(len(rows))
        n = len(rows)
        obs = np.zeros((n, lay.size), dtype=np.float32)
        kernels.observe_users(
            obs, rows, state.demo, state.time, state.session, state.session_step, state.counts, self.count_norm,
            state.hist_cat, state.hist_beh, state.hist_n, self._event_flags, state.cand, w.category,
            w.price_feature, cfg.horizon_days, lay["calendar"].start, lay["context"].start,
            lay["events"].start if "events" in lay else -1, lay["counts"].start,
            lay["last_interactions"].start if "last_interactions" in lay else -1, cfg.last_interactions,
            lay["candidates"].start if "candidates" in lay else -1,
        )
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

    def action_masks(self, state: ShopState) -> np.ndarray:
        """(N, sum of nvec) valid-action mask for MaskablePPO: every item or candidate is valid.

        Duplicates within a slate are allowed (see the duplicates rule), so no action is ever
        masked out; the mask exists so maskable algorithms run on every preset.
        """
        return np.ones((len(state.t), self._n_actions * self.k), dtype=bool)

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
