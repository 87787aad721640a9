"""Training examples from event logs, with the features the simulator's observation shows.

A model trained here must also act as a policy on live observations, so its user-side features
are exactly the user part of ShopSim's ``features`` observation (see ``ShopModel.layout``):

- demographics: the one-hot age, gender and income buckets of the log's users table
  (:func:`driftrec.envs.events.load_users`, passed as ``users``), what a shop knows of its
  customers. A simulated log carries one; a log without it (a shop's own log loaded by
  ``driftrec load``, an older simulated log) and a user missing from it or with an unknown
  (-1) bucket give zeros there. A model trained without any known demographics is served with
  them zeroed too (:attr:`SupervisedNetwork.uses_demographics`), so it never reads inputs its
  training never saw.
- calendar: sin and cos of ``2 pi t / 7``, ``t`` the request's timestamp in days (simulated logs
  count days from each life's start).
- context: ``min(t / horizon_days, 1)``, ``step / (step + 10)`` with ``step`` the earlier
  requests of the session, ``session / (session + 10)``.
- events: the calendar's event flags of day ``int(t)`` (when ``events_visible``).
- counts: each user's events replayed in time order with the simulator's rule: per request the
  counts decay by ``count_decay``, then add the request's impressions, click, purchase and the
  organic search / view after it; scaled by ``count_norm`` and clipped to 1.
- last_interactions: the newest clicks, carts, purchases, searches and views before the request,
  one-hot category and behaviour.

plus the raw history of the ``history`` observation (the last ``history_len`` of those events:
item ids, ``n_items`` for a search or an empty slot, and behaviour codes) for the sequence
models, and the item side from the catalog: category one-hot and clipped log relative price
(the ``candidates`` observation's per-item features) and the item id. A test checks that the
replay reproduces the simulator's observations.

An example is one impression. Its labels: ``click`` when the same request has a click on the same
item at the same position; ``purchase`` when it also has a purchase of it. A request starts at an
impression whose previous row (same user) is not an impression of the same timestamp at a lower
position, so the rows of a log must keep the order ``EventRecorder`` writes them in within a
step (the loader sorts stably by user and timestamp only). Events before a user's first request
(possible in real logs) enter the history but not the counts.

Everything is vectorised over rows (numpy cumulative sums, a bincount and one linear filter for
the decayed counts); there is no Python loop over events or users.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy.signal import lfilter

from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.events import DEMOGRAPHICS, EPOCH, LOG_CONFIG_KEY, MS_PER_DAY
from driftrec.envs.shop import N_COUNT_KINDS, ShopModel
from driftrec.envs.state import BEHAVIOURS, CART, CLICK, IMPRESSION, PAD, PURCHASE, SEARCH, VIEW
from driftrec.envs.world import N_AGE, N_GENDER, N_INCOME, PRICE_FEATURE_CLIP

USER_PARTS = ("demographics", "calendar", "context", "events", "counts", "last_interactions")
"""The observation parts that describe the user (everything before the candidates and hidden parts)."""

_HISTORY_CODES = np.array([SEARCH, VIEW, CLICK, CART, PURCHASE])  # what the simulator's history ring buffer keeps
_EPOCH_MS = int(EPOCH.astype(np.int64))


def log_sim_config(path: str | Path) -> dict[str, Any] | None:
    """The simulator config stored in an event log's Parquet metadata, or None when it has none."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return None
    raw = meta.get(LOG_CONFIG_KEY)
    return None if raw is None else dict(json.loads(raw))


class LogDataError(ConfigError):
    """An event log cannot be used for training (no such file, no clicks, not from this catalog...).

    A :class:`ConfigError`, so the CLI prints its one-line message as a usage error.
    """


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """What the features of a simulator config look like: the catalog, the observation layout and
    the constants of the count replay. Built from a ShopSim model; saved models rebuild it from
    their simulator config."""

    cfg: SimConfig
    n_items: int
    n_categories: int
    slate_size: int
    history_len: int
    last_interactions: int
    count_decay: float
    count_norm: np.ndarray  # (4C,) float32 scale of each count column (as ShopModel.count_norm)
    horizon_days: float
    user_slices: dict[str, slice]  # observation part -> columns, for the parts present in USER_PARTS
    user_dim: int  # columns of the user part (it starts at column 0 of the observation)
    item_category: np.ndarray  # (I,) int64
    item_price: np.ndarray  # (I,) float64
    item_features: np.ndarray  # (I, C + 1) float32 category one-hot then clipped log relative price
    event_flags: np.ndarray  # (days, C) float32 calendar event flags (used when events_visible)
    day_offset: float = 0.0  # subtracted from event_days(timestamp): a real log's days count from its first week
    source: str = "simulator"  # "log": the features of a log's own catalog (from_log), served by no simulator

    @classmethod
    def from_user_model(cls, user_model: Any) -> FeatureSpec:
        """The spec of a ShopSim model (``driftrec.envs.user_model.build_user_model``); recsim-ie is not supported."""
        if not isinstance(user_model, ShopModel):
            raise ConfigError(f"supervised models need the ShopSim user model; got model '{user_model.cfg.model}' "
                              "(its observation has no per-user history features)")
        cfg, lay, w = user_model.cfg, user_model.layout, user_model.world
        slices = {name: lay[name] for name in USER_PARTS if name in lay}
        end = max(s.stop for s in slices.values())
        if end != sum(s.stop - s.start for s in slices.values()):
            raise ConfigError("observation layout: the user parts must come first (internal error)")
        c = cfg.n_categories
        item_features = np.zeros((cfg.n_items, c + 1), dtype=np.float32)
        item_features[np.arange(cfg.n_items), w.category] = 1.0
        item_features[:, c] = w.price_feature
        return cls(cfg=cfg, n_items=cfg.n_items, n_categories=c, slate_size=cfg.slate_size,
                   history_len=cfg.history_len, last_interactions=cfg.last_interactions,
                   count_decay=cfg.count_decay, count_norm=np.asarray(user_model.count_norm, dtype=np.float32),
                   horizon_days=cfg.horizon_days, user_slices=slices, user_dim=end,
                   item_category=np.asarray(w.category, dtype=np.int64), item_price=np.asarray(w.price),
                   item_features=item_features,
                   event_flags=(np.asarray(w.boost) > 0).astype(np.float32))

    @classmethod
    def from_config(cls, cfg: SimConfig) -> FeatureSpec:
        """The spec of a simulator config (builds its world)."""
        return cls.from_user_model(ShopModel(cfg))

    @classmethod
    def from_log(cls, item_category: np.ndarray, item_price: np.ndarray, n_categories: int, *,
                 horizon_days: float, day_offset: float, count_scale: np.ndarray, slate_size: int = 1,
                 history_len: int = 20, last_interactions: int = 3, count_decay: float = 0.9) -> FeatureSpec:
        """The spec of a log's own catalog (``source="log"``), for logs no simulator preset describes.

        The user part has the simulator's layout without calendar events (demographics zero,
        calendar, context, counts, last interactions), so every model reads it unchanged.
        ``item_category`` (I,) in ``[0, n_categories)``; ``item_price`` (I,) may be NaN (unknown:
        price feature 0, otherwise ``log(price / median price)`` clipped as the simulator's);
        ``day_offset`` shifts the timestamps so that day 0 starts the log's first week (the
        calendar phase is kept); ``count_scale`` (4,) is the per-request count of impressions,
        clicks, purchases and organic events that maps to 1 (counts are scaled by
        ``(1 - count_decay) / count_scale``). ``cfg`` is the default SimConfig, a placeholder:
        these features follow no simulator config (see :meth:`mismatch`).
        """
        cat = np.asarray(item_category, dtype=np.int64)
        price = np.asarray(item_price, dtype=np.float64)
        c = int(n_categories)
        if cat.size and (cat.min() < 0 or cat.max() >= c):
            raise ConfigError(f"item categories must lie in [0, {c})")
        known = np.isfinite(price) & (price > 0)
        ref = float(np.median(price[known])) if known.any() else 1.0
        feature = np.zeros(cat.size, dtype=np.float32)
        feature[known] = np.clip(np.log(price[known] / ref), -PRICE_FEATURE_CLIP, PRICE_FEATURE_CLIP)
        item_features = np.zeros((cat.size, c + 1), dtype=np.float32)
        item_features[np.arange(cat.size), cat] = 1.0
        item_features[:, c] = feature
        widths = {"demographics": N_AGE + N_GENDER + N_INCOME, "calendar": 2, "context": 3,
                  "counts": N_COUNT_KINDS * c, "last_interactions": last_interactions * (c + len(BEHAVIOURS))}
        slices, start = {}, 0
        for name, width in widths.items():
            if name == "last_interactions" and not last_interactions:
                continue
            slices[name], start = slice(start, start + width), start + width
        scale = np.maximum(np.asarray(count_scale, dtype=np.float64).reshape(N_COUNT_KINDS), 1e-9)
        norm = np.repeat((1.0 - count_decay) / scale, c).astype(np.float32)
        return cls(cfg=SimConfig(), n_items=int(cat.size), n_categories=c, slate_size=int(slate_size),
                   history_len=int(history_len), last_interactions=int(last_interactions),
                   count_decay=float(count_decay), count_norm=norm, horizon_days=float(horizon_days),
                   user_slices=slices, user_dim=start, item_category=cat, item_price=price,
                   item_features=item_features, event_flags=np.zeros((1, c), dtype=np.float32),
                   day_offset=float(day_offset), source="log")

    def to_state(self) -> dict[str, Any]:
        """A log spec as plain values and tensors-to-be (what a checkpoint stores; see :meth:`from_state`)."""
        return {"item_category": self.item_category.tolist(), "item_price": self.item_price.tolist(),
                "n_categories": self.n_categories, "horizon_days": self.horizon_days, "day_offset": self.day_offset,
                "count_norm": self.count_norm.tolist(), "slate_size": self.slate_size,
                "history_len": self.history_len, "last_interactions": self.last_interactions,
                "count_decay": self.count_decay}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FeatureSpec:
        """The log spec of :meth:`to_state`."""
        decay = float(state["count_decay"])
        norm = np.asarray(state["count_norm"], dtype=np.float64).reshape(N_COUNT_KINDS, -1)[:, 0]
        spec = cls.from_log(np.asarray(state["item_category"]), np.asarray(state["item_price"], dtype=np.float64),
                            int(state["n_categories"]), horizon_days=float(state["horizon_days"]),
                            day_offset=float(state["day_offset"]), count_scale=(1.0 - decay) / norm,
                            slate_size=int(state["slate_size"]), history_len=int(state["history_len"]),
                            last_interactions=int(state["last_interactions"]), count_decay=decay)
        return dataclasses.replace(spec, count_norm=np.asarray(state["count_norm"], dtype=np.float32))

    def mismatch(self, other: FeatureSpec, sequence: bool) -> str | None:
        """Why a model trained with ``self`` cannot read observations of ``other`` (None if it can)."""
        if self.source != other.source:
            return ("the model was trained on a log's own catalog and features (offline scoring only), "
                    "not on a simulator preset's")
        if self.user_slices != other.user_slices:
            return "the observation layouts differ (categories, events_visible or last_interactions)"
        if self.n_items != other.n_items or not (np.array_equal(self.item_category, other.item_category)
                                                 and np.array_equal(self.item_features, other.item_features)):
            return "the catalogs differ (n_items, n_categories, world_seed or prices)"
        if not np.array_equal(self.count_norm, other.count_norm):
            return "the count features are scaled differently (count_decay or slate_size)"
        if sequence and self.history_len != other.history_len:
            return f"history_len differs ({self.history_len} vs {other.history_len})"
        return None


@dataclasses.dataclass
class Examples:
    """Impressions as training examples (n rows), features as the policy will see them."""

    user: np.ndarray  # (n, user_dim) float32 the observation's user part (demographics zero where unknown)
    hist_item: np.ndarray  # (n, H) int64 history item ids, oldest first (n_items: search or empty slot)
    hist_beh: np.ndarray  # (n, H) int64 history behaviour codes (0: empty slot)
    item: np.ndarray  # (n,) int64 the impressed item
    position: np.ndarray  # (n,) int64 its slate position
    time: np.ndarray  # (n,) float64 the request's time in days
    user_id: np.ndarray  # (n,) int64
    click: np.ndarray  # (n,) float32 1 when the impression was clicked
    purchase: np.ndarray  # (n,) float32 1 when it was clicked and bought

    def __len__(self) -> int:
        return len(self.item)

    def take(self, rows: np.ndarray) -> Examples:
        """The examples ``rows`` (indices or a boolean mask), as new arrays."""
        return Examples(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})

    @classmethod
    def concat(cls, parts: list[Examples]) -> Examples:
        """The examples of ``parts`` one after the other (at least one part)."""
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)})

    def knows_demographics(self, spec: FeatureSpec) -> bool:
        """Whether any example's user has known demographics (a nonzero demographics part)."""
        return bool(len(self)) and bool(self.user[:, spec.user_slices["demographics"]].any())


def behaviour_codes(behaviour: pd.Series | np.ndarray) -> np.ndarray:
    """Behaviour names -> codes 1..6 (int64); unknown names raise ValueError."""
    cat = pd.Categorical(np.asarray(behaviour, dtype=object), categories=list(BEHAVIOURS))
    codes = np.asarray(cat.codes, dtype=np.int64)
    if (codes < 0).any():
        row = int(np.flatnonzero(codes < 0)[0])
        raise LogDataError(f"event row {row} has behaviour {np.asarray(behaviour)[row]!r}")
    return codes + 1


def event_days(timestamp: pd.Series | np.ndarray) -> np.ndarray:
    """Timestamps (datetime64) -> float64 days after :data:`driftrec.envs.events.EPOCH`."""
    ms = np.asarray(timestamp, dtype="datetime64[ms]").astype(np.int64)
    return (ms - _EPOCH_MS) / MS_PER_DAY


def check_log(events: pd.DataFrame, spec: FeatureSpec, name: str = "events") -> None:
    """Raise :class:`LogDataError` (one line) when ``events`` cannot come from ``spec``'s simulator:
    item ids, categories or slate positions out of range, or prices that are not the catalog's
    (a log simulated with another preset or world seed)."""
    item = events["item_id"].to_numpy(np.int64)
    cat = events["category"].to_numpy(np.int64)
    bad = np.flatnonzero((item < -1) | (item >= spec.n_items))
    if bad.size:
        raise LogDataError(f"{name}: row {bad[0]} has item_id {item[bad[0]]}, outside the catalog "
                           f"[0, {spec.n_items}) of preset config n_items={spec.n_items}")
    bad = np.flatnonzero((cat < 0) | (cat >= spec.n_categories))
    if bad.size:
        raise LogDataError(f"{name}: row {bad[0]} has category {cat[bad[0]]}, outside [0, {spec.n_categories})")
    pos = events["position"].to_numpy(np.int64)
    slate = np.isin(events["behaviour"].to_numpy(), ("impression", "click", "cart", "purchase"))
    bad = np.flatnonzero(slate & ((pos < 0) | (pos >= spec.slate_size) | (item < 0)))
    if bad.size:
        raise LogDataError(f"{name}: row {bad[0]} ({events['behaviour'].iloc[bad[0]]}) has item {item[bad[0]]} at "
                           f"position {pos[bad[0]]}; slate rows need an item and a position in "
                           f"[0, slate_size={spec.slate_size})")
    known = item >= 0
    price = events["price"].to_numpy(np.float64)[known]
    wrong = ~np.isclose(price, spec.item_price[item[known]], rtol=1e-9, atol=1e-9)
    wrong |= cat[known] != spec.item_category[item[known]]
    if wrong.any():
        row = int(np.flatnonzero(known)[np.flatnonzero(wrong)[0]])
        raise LogDataError(f"{name}: row {row} (item {item[row]}) does not match the catalog of the simulator "
                           f"config (world_seed {spec.cfg.world_seed}); train with the preset and keys the log "
                           "was simulated with (--set preset=NAME ...)")


def _start_of_group(group: np.ndarray) -> np.ndarray:
    """Row index of the first row of each row's group (``group`` sorted, non-decreasing ids)."""
    n = group.size
    first = np.r_[True, group[1:] != group[:-1]] if n else np.zeros(0, dtype=bool)
    return np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, dtype=np.int64)


def demographic_features(user_id: np.ndarray, users: pd.DataFrame | None) -> np.ndarray:
    """(n, 9) float32 one-hot age, gender and income buckets of each ``user_id`` from the users
    table ``users`` (columns of :data:`driftrec.envs.events.USER_SCHEMA`); zeros for a bucket that
    is unknown (-1), a user missing from the table, or every user when ``users`` is None."""
    user_id = np.asarray(user_id, dtype=np.int64)
    width = sum(w for _, w in DEMOGRAPHICS)
    out = np.zeros((user_id.size, width), dtype=np.float32)
    if users is None or not len(users) or not user_id.size:
        return out
    table_ids = users["user_id"].to_numpy(np.int64)
    order = np.argsort(table_ids, kind="stable")
    sorted_ids = table_ids[order]
    at = np.clip(np.searchsorted(sorted_ids, user_id), 0, sorted_ids.size - 1)
    found = sorted_ids[at] == user_id
    rows = np.flatnonzero(found)
    src = order[at[found]]
    start = 0
    for name, w in DEMOGRAPHICS:
        code = users[name].to_numpy(np.int64)[src]
        if ((code < -1) | (code >= w)).any():
            raise LogDataError(f"users table: {name} must be a bucket in [0, {w}) or -1 (unknown)")
        ok = code >= 0
        out[rows[ok], start + code[ok]] = 1.0
        start += w
    return out


def build_examples(events: pd.DataFrame, spec: FeatureSpec, users: pd.DataFrame | None = None) -> Examples:
    """Replay ``events`` (rows of the event log) into one example per impression.

    See the module docstring for the features and labels. ``users`` is the log's users table
    (the demographics; None: unknown, zeros). ``events`` is sorted stably by user and timestamp
    first, so per-user chunks that arrive out of order are fine.
    """
    if len(events) == 0:
        return _empty_examples(spec)
    t_all = event_days(events["timestamp"]) - spec.day_offset
    user_all = events["user_id"].to_numpy(np.int64)
    order = np.lexsort((t_all, user_all))  # stable: rows of one step keep their log order
    user, t = user_all[order], t_all[order]
    beh = behaviour_codes(events["behaviour"].to_numpy())[order]
    item = events["item_id"].to_numpy(np.int64)[order]
    cat = events["category"].to_numpy(np.int64)[order]
    pos = events["position"].to_numpy(np.int64)[order]
    session = events["session_id"].to_numpy(np.int64)[order]
    n = user.size
    c, n_items = spec.n_categories, spec.n_items

    # --- requests ---------------------------------------------------------------------------
    new_user = np.r_[True, user[1:] != user[:-1]]
    is_imp = beh == IMPRESSION
    same_slate = np.zeros(n, dtype=bool)
    same_slate[1:] = (~new_user[1:] & is_imp[:-1] & (t[1:] == t[:-1]) & (pos[:-1] < pos[1:]))
    req_start = is_imp & ~same_slate
    req_count = np.cumsum(req_start)  # requests started up to and including each row
    user_row0 = _start_of_group(np.cumsum(new_user))  # first row of each row's user
    req_before_user = req_count[user_row0] - req_start[user_row0]  # requests of earlier users
    row_req = req_count - 1  # each row's request (global index), -1 / earlier user's when before the first
    in_request = req_count > req_before_user  # the user has had a request at or before this row
    req_rows = np.flatnonzero(req_start)
    n_req = req_rows.size
    req_first = req_before_user[req_rows]  # global index of the user's first request

    # session step: earlier requests in the same user and session
    req_session = session[req_rows]
    req_user = user[req_rows]
    new_sess = np.r_[True, (req_user[1:] != req_user[:-1]) | (req_session[1:] != req_session[:-1])]
    sess_step = np.arange(n_req) - _start_of_group(np.cumsum(new_sess))
    req_t = t[req_rows]

    # --- decayed counts before each request ------------------------------------------------
    kind = np.full(n, -1, dtype=np.int64)
    kind[is_imp] = 0
    kind[beh == CLICK] = 1
    kind[beh == PURCHASE] = 2
    kind[(beh == SEARCH) | (beh == VIEW)] = 3
    counted = in_request & (kind >= 0)
    x = np.bincount(row_req[counted] * (N_COUNT_KINDS * c) + kind[counted] * c + cat[counted],
                    minlength=n_req * N_COUNT_KINDS * c).reshape(n_req, N_COUNT_KINDS * c).astype(np.float64)
    d = spec.count_decay
    z = lfilter([1.0], [1.0, -d], x, axis=0) if n_req else x  # z[g] = d * z[g-1] + x[g] across all users
    # before request g of a user whose first request is b: sum_{b<=s<g} d^(g-1-s) x[s]
    #   = z[g-1] - d^(g-b) z[b-1]; the subtraction removes the earlier users' tail (d^k <= 1, no overflow)
    g = np.arange(n_req)
    prev = np.where(g > req_first, g - 1, 0)
    tail = np.where((req_first > 0)[:, None], z[np.maximum(req_first - 1, 0)], 0.0)
    counts = z[prev] - np.power(d, g - req_first)[:, None] * tail
    counts[g == req_first] = 0.0
    counts = np.clip(counts.astype(np.float32) * spec.count_norm, 0.0, 1.0)

    # --- history (the simulator's ring buffer) before each request --------------------------
    is_hist = np.isin(beh, _HISTORY_CODES)
    hist_rows = np.flatnonzero(is_hist)
    hist_count = np.cumsum(is_hist)
    hist_before_user = hist_count[user_row0] - is_hist[user_row0]
    n_before = (hist_count - hist_before_user)[req_rows]  # a request row is an impression, not history
    h = spec.history_len
    back = np.arange(h)[::-1]  # column j (oldest first) is the (h - j)-th newest
    k = n_before[:, None] - 1 - back[None, :]
    valid = k >= 0
    src = hist_rows[np.where(valid, hist_before_user[req_rows][:, None] + k, 0)] if hist_rows.size else None
    if src is None:
        valid[:] = False
        src = np.zeros((n_req, h), dtype=np.int64)
    h_item = np.where(valid & (item[src] >= 0), item[src], n_items)
    h_beh = np.where(valid, beh[src], PAD)
    h_cat = np.where(valid, cat[src], -1)

    # --- the user part of the observation -----------------------------------------------------
    user_x = np.zeros((n_req, spec.user_dim), dtype=np.float32)
    sl = spec.user_slices
    user_x[:, sl["demographics"]] = demographic_features(user[req_rows], users)
    phase = 2.0 * np.pi / 7.0 * req_t
    user_x[:, sl["calendar"].start] = np.sin(phase)
    user_x[:, sl["calendar"].start + 1] = np.cos(phase)
    ctx = sl["context"].start
    user_x[:, ctx] = np.minimum(req_t / spec.horizon_days, 1.0)
    user_x[:, ctx + 1] = sess_step / (sess_step + 10.0)
    user_x[:, ctx + 2] = req_session / (req_session + 10.0)
    if "events" in sl:
        day = np.minimum(req_t.astype(np.int64), len(spec.event_flags) - 1)
        user_x[:, sl["events"]] = spec.event_flags[day]
    user_x[:, sl["counts"]] = counts
    if "last_interactions" in sl:
        width = c + len(BEHAVIOURS)
        start = sl["last_interactions"].start
        rows = np.arange(n_req)
        for j in range(spec.last_interactions):  # newest first; a loop over <= 20 slots, not events
            col = h - 1 - j
            ok = h_beh[:, col] != PAD
            user_x[rows[ok], start + j * width + h_cat[ok, col]] = 1.0
            user_x[rows[ok], start + j * width + c - 1 + h_beh[ok, col]] = 1.0

    # --- impressions and their labels -------------------------------------------------------------
    imp = np.flatnonzero(is_imp & in_request)
    width_pos = int(pos.max()) + 1 if n else 1

    def keys(rows: np.ndarray) -> np.ndarray:
        return (row_req[rows] * width_pos + pos[rows]) * (n_items + 1) + item[rows]

    imp_keys = keys(imp)
    click = np.isin(imp_keys, keys(np.flatnonzero((beh == CLICK) & in_request)))
    purchase = np.isin(imp_keys, keys(np.flatnonzero((beh == PURCHASE) & in_request))) & click
    r = row_req[imp]
    return Examples(user=user_x[r], hist_item=h_item[r].astype(np.int64), hist_beh=h_beh[r].astype(np.int64),
                    item=item[imp], position=pos[imp], time=t[imp], user_id=user[imp],
                    click=click.astype(np.float32), purchase=purchase.astype(np.float32))


def _empty_examples(spec: FeatureSpec) -> Examples:
    h = spec.history_len
    i64 = np.zeros(0, dtype=np.int64)
    return Examples(user=np.zeros((0, spec.user_dim), dtype=np.float32), hist_item=np.zeros((0, h), dtype=np.int64),
                    hist_beh=np.zeros((0, h), dtype=np.int64), item=i64, position=i64.copy(),
                    time=np.zeros(0), user_id=i64.copy(), click=np.zeros(0, dtype=np.float32),
                    purchase=np.zeros(0, dtype=np.float32))


def user_features_from_obs(obs: np.ndarray | dict[str, np.ndarray], spec: FeatureSpec,
                           trained: FeatureSpec | None = None, demographics: bool = True) -> np.ndarray:
    """(N, user_dim) float32 user features of live observations of a simulator with ``spec``, as
    :func:`build_examples` builds them from a log with its users table (the user part of
    ``features``). ``demographics=False`` zeroes the demographics, as a log without a users table
    gives them (for a model trained on such a log). With ``trained`` (the spec a model was trained
    with) the life-elapsed feature ``t / horizon_days`` is rescaled to the training horizon, so a
    model can serve a simulator whose users live longer or shorter than those of its log."""
    flat = obs["features"] if isinstance(obs, dict) else obs
    flat = np.asarray(flat, dtype=np.float32)
    user = flat[:, :spec.user_dim].copy()
    if not demographics:
        user[:, spec.user_slices["demographics"]] = 0.0
    if trained is not None and trained.horizon_days != spec.horizon_days:
        col = spec.user_slices["context"].start
        user[:, col] = np.minimum(user[:, col] * (spec.horizon_days / trained.horizon_days), 1.0)
    return user


def history_from_obs(obs: np.ndarray | dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(item ids, behaviour codes) (N, H) of a ``history`` observation; ConfigError for a flat one."""
    if not isinstance(obs, dict) or "item_ids" not in obs:
        raise ConfigError("sequence models read the history observation: simulate with obs_mode='history'")
    return np.asarray(obs["item_ids"], dtype=np.int64), np.asarray(obs["behaviours"], dtype=np.int64)


def chronological_split(time: np.ndarray, frac: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(earlier mask, later mask, cut time): the later part is the examples at or after the time
    below which a ``1 - frac`` share of the examples fall (ties at the cut go to the later part)."""
    if time.size == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool), float("nan")
    cut = float(np.quantile(time, 1.0 - frac, method="higher"))
    later = time >= cut
    return ~later, later, cut
