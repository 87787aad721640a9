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

import driftrec.envs.kernels as kernels
from driftrec.envs.binding import Call, pack_params
from driftrec.envs.choice import cascade_probs, mnl_probs, position_weights
from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.kernels import MINUTES_PER_DAY
from driftrec.envs.layout import Layout, observation_space, slate_action_space
from driftrec.envs.state import BEHAVIOURS, StepOutput, copy_state, take_rows
from driftrec.envs.world import N_AGE, N_GENDER, N_INCOME, PRICE_FEATURE_CLIP, World, build_world

__all__ = ["MINUTES_PER_DAY", "N_COUNT_KINDS", "SATIETY_SLOTS", "ShopModel", "ShopState", "shown_mask"]

N_COUNT_KINDS = 4  # impressions, clicks, purchases, organic (searches + views) per category
SATIETY_SLOTS = 8  # items a user remembers being sated with (the most sated ones; see kernels._sate)


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
    sated_item: np.ndarray  # (N, S) int64 items the user is sated with (-1 empty slot)
    sated_level: np.ndarray  # (N, S) float64 satiety (utility) of each slot at its sated_time
    sated_time: np.ndarray  # (N, S) float64 time the slot's level was set; it halves every half-life since
    search_interest: np.ndarray  # (N, D) float64 interest the search weights were computed for
    search_weight: np.ndarray  # (N, C) float64 unnormalised softmax weights of the searched category (-1: none yet)


class ShopModel:
    """ShopSim bound to one config: spaces, layout and the pure batched dynamics."""

    READS = frozenset(f.name for f in dataclasses.fields(SimConfig)) - {"recsim_budget"}
    """SimConfig keys ShopSim reads: all but recsim-ie's; a non-default value of another is an error."""

    def __init__(self, cfg: SimConfig):
        cfg.refuse_unread(self.READS)
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
        norm = np.repeat(np.array([1.0 / self.k, 1.0, 1.0, 0.5]), self.n_cat)  # max count per step
        self.count_norm = (norm * (1.0 - cfg.count_decay)).astype(np.float32)
        edges = (np.arange(self.m + 1) * cfg.n_items) // max(self.m, 1)
        self.block_start, self.block_size = edges[:-1], np.diff(edges)
        if cfg.last_interactions > cfg.history_len:
            raise ConfigError(f"config key 'last_interactions' ({cfg.last_interactions}) must be <= "
                              f"history_len ({cfg.history_len})")
        self.layout = self._layout()
        self._event_flags = (self.world.boost > 0).astype(np.float32)  # (days, C)
        w = self.world
        self._segment_cum = np.cumsum(w.segment_weight)
        self._age_cum, self._gender_cum, self._income_cum = (
            np.cumsum(x, axis=1) for x in (w.age_probs, w.gender_probs, w.income_probs))
        self._n_actions = self.m if self.m else cfg.n_items
        self._catalog_ids = np.arange(cfg.n_items, dtype=np.int64)
        self.params = pack_params(cfg)
        tables = {**{f.name: getattr(w, f.name) for f in dataclasses.fields(w)},
                  "params": self.params, "cascade": cfg.choice_model == "cascade", "pos_w": self.pos_w,
                  "count_norm": self.count_norm,
                  "event_flags": self._event_flags, "segment_cum": self._segment_cum, "age_cum": self._age_cum,
                  "gender_cum": self._gender_cum, "income_cum": self._income_cum, "block_start": self.block_start,
                  "block_size": self.block_size, "n_last": cfg.last_interactions,
                  **{f"off_{part}": self.layout[name].start if name in self.layout else -1
                     for part, name in (("calendar", "calendar"), ("context", "context"), ("events", "events"),
                                        ("counts", "counts"), ("last", "last_interactions"),
                                        ("cand", "candidates"))}}
        self._start = Call(kernels.start_lives, 1, tables, ("", ShopState))
        self._candidates = Call(kernels.candidates, 1, tables, ("", ShopState))
        self._step = Call(kernels.step_users, 2, tables, ("", ShopState), ("out_", StepOutput))
        self._observe = Call(kernels.observe_users, 2, tables, ("", ShopState))
        self._utilities = Call(kernels.slate_utilities, 1, tables, ("", ShopState), ("out_", _Utilities))
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
            cand=e((n, self.m), dtype=i64), sated_item=e((n, SATIETY_SLOTS), dtype=i64),
            sated_level=e((n, SATIETY_SLOTS)), sated_time=e((n, SATIETY_SLOTS)), search_interest=e((n, d)),
            search_weight=e((n, c)),
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
        self._start(rows, state)
        if self.m:
            self._candidates(rows, state)

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
        self._step(items, np.empty((3, self.k)), state, out)
        if self.m:
            self._candidates(np.arange(n), state)
        return state, out

    # ----------------------------------------------------------------------------- observation
    def observe(self, state: ShopState, rows: np.ndarray | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """Fresh observation arrays for the batch (or its ``rows``), laid out as ``self.layout``."""
        cfg, lay = self.cfg, self.layout
        if rows is None:
            rows = np.arange(len(state.t))
        elif cfg.obs_mode != "features":  # the hidden and history parts below read whole arrays
            state, rows = take_rows(state, rows), np.arange(len(rows))
        n = len(rows)
        obs = np.zeros((n, lay.size), dtype=np.float32)
        self._observe(obs, rows, state)
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
    def utility(self, state: ShopState, items: np.ndarray) -> np.ndarray:
        """(N, K) utility of each slate position now (:func:`driftrec.envs.kernels.utility`, what the
        step computes): interest . topic + appeal - price - boredom - satiety + event boost."""
        util = _Utilities(np.empty(np.shape(items)))
        self._utilities(np.ascontiguousarray(items, dtype=np.int64), state, util)
        return util.util

    def choice_probs(self, state: ShopState, items: np.ndarray) -> np.ndarray:
        """(N, K + 1) choice probabilities of a slate of item ids, exactly as ``step`` samples them."""
        fn = mnl_probs if self.cfg.choice_model == "mnl" else cascade_probs
        pos_w = position_weights(items.shape[1], self.cfg.position_decay)
        return fn(self.utility(state, items), shown_mask(items), pos_w, self.cfg.no_click_utility)

    # ----------------------------------------------------------------------------- expected rewards
    def static_scores(self, state: ShopState, items: np.ndarray,
                      rows: slice | np.ndarray = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """For the users ``rows`` and items ``items`` ((N, X) ids, or one (1, X) row shared by every
        user): the utility without the calendar, boredom and satiety terms, minus no_click_utility,
        and the expected reward of a click (:func:`driftrec.envs.kernels.click_value`). Both move only
        with the user's interest and price sensitivity, so a policy may cache them."""
        w = self.world
        items = np.ascontiguousarray(items, dtype=np.int64)
        interest = np.ascontiguousarray(state.interest[rows])
        logit, value = np.empty((len(interest), items.shape[1])), np.empty((len(interest), items.shape[1]))
        kernels.static_scores(self.params, items, w.topic, w.appeal, w.quality, w.price, w.rel_price, interest,
                              np.ascontiguousarray(state.price_sens[rows]), logit, value)
        return logit, value

    def rewards_from_static(self, state: ShopState, items: np.ndarray, logit: np.ndarray, value: np.ndarray,
                            rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """Expected immediate reward of showing each item alone now, from ``static_scores``:
        P(click of a one-item slate) * click value (:func:`driftrec.envs.kernels.one_item_rewards`)."""
        w = self.world
        items = np.ascontiguousarray(items, dtype=np.int64)
        catalog = items.shape == (1, self.cfg.n_items) and bool((items[0] == self._catalog_ids).all())
        out = np.empty(logit.shape)
        kernels.one_item_rewards(self.params, items, catalog, logit, value, w.category, w.boost, state.fatigue[rows],
                                 state.time[rows], state.sated_item[rows], state.sated_level[rows],
                                 state.sated_time[rows], out)
        return out

    def one_item_expected_rewards(self, state: ShopState, items: np.ndarray,
                                  rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """(N, X) expected immediate reward of showing items[n, x] (or a shared (1, X) row) alone to
        the users ``rows`` now: P(click) * (reward_click + P(cart) (reward_cart + P(purchase)
        (reward_purchase + reward_revenue * price)))."""
        logit, value = self.static_scores(state, items, rows)
        return self.rewards_from_static(state, items, logit, value, rows)

    def click_values(self, state: ShopState, items: np.ndarray) -> np.ndarray:
        """(N, X) expected reward of the request given that the user clicks item ``items[n, x]``."""
        return self.static_scores(state, items)[1]


def shown_mask(items: np.ndarray) -> np.ndarray:
    """Duplicates rule: an item repeated in a slate is shown only at its first position; the
    later positions show nothing (no impression, no click). (N, K) bool."""
    shown = np.ones(items.shape, dtype=bool)
    for k in range(1, items.shape[1]):
        shown[:, k] = (items[:, :k] != items[:, k:k + 1]).all(axis=1)
    return shown


@dataclasses.dataclass
class _Utilities:
    """Output of :func:`driftrec.envs.kernels.slate_utilities`."""

    util: np.ndarray  # (N, K) float64
