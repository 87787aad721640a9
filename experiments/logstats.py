"""Statistics of an event log, the targets of ``driftrec calibrate``.

Every function here takes any DataFrame with the columns of
:data:`driftrec.envs.events.EVENT_SCHEMA` (a simulated log, or a real one from
:func:`driftrec.ingest.load.load_log`). Real logs may lack impressions, carts, purchases, prices or
categories: a statistic that the log cannot measure is ``None``, never a guess.

| statistic | what it is |
|---|---|
| ``n_items`` | items seen: distinct ``item_id >= 0`` |
| ``top10_share`` | share of item interactions (rows with an item, not impressions) on the top 10% items |
| ``gini`` | Gini coefficient of the interactions per item seen (0: uniform, near 1: a few items take all) |
| ``n_categories`` | distinct categories among the items; None when every item has the same one (no category column) |
| ``category_entropy`` | entropy of the categories' shares of interactions / log(n_categories), in [0, 1] |
| ``ctr`` | clicks / impressions; None without impressions |
| ``cart_rate`` | carts / clicks; None without clicks or carts |
| ``conversion`` | purchases / clicks; None without clicks or purchases |
| ``price_median``, ``price_log_std`` | median and std of log of the item prices; None without prices |
| ``session_events`` | mean events per session |
| ``sessions_per_user`` | mean sessions per user |
| ``gap_days`` | mean days from the end of a session to the start of the user's next one; None if no user returns |
| ``drift_js`` | mean over users with enough interest events of JS(early half, late half) of categories, bits |
| ``drift_null`` | the same with each user's events shuffled (mean of a few seeded shuffles): the sampling floor |
| ``drift_excess`` | ``drift_js - drift_null``: the interest drift strength (about 0 without drift) |

Interest events, the ones that say what a user wants, are searches, views, clicks, carts and
purchases; impressions say what the recommender wanted and are left out of the popularity,
category and drift statistics.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from driftrec.envs.events import MS_PER_DAY
from driftrec.envs.state import BEHAVIOURS

INTEREST_BEHAVIOURS = ("search", "view", "click", "cart", "purchase")
"""Behaviours that reveal the user's interest (impressions reveal the recommender's)."""

DRIFT_MIN_EVENTS = 20
"""Users with fewer interest events than this are left out of the drift statistic (their halves
are too small for a category distribution)."""

DRIFT_SHUFFLES = 5
"""Shuffles averaged for the drift statistic's null."""


@dataclasses.dataclass(frozen=True)
class LogStats:
    """The statistics of one event log (see the module doc); None where the log cannot measure one."""

    n_users: int
    n_events: int
    span_days: float | None  # last minus first timestamp
    behaviours: tuple[str, ...]  # behaviours present in the log
    n_items: int | None
    top10_share: float | None
    gini: float | None
    n_categories: int | None
    category_entropy: float | None
    ctr: float | None
    cart_rate: float | None
    conversion: float | None
    price_median: float | None
    price_log_std: float | None
    session_events: float | None
    sessions_per_user: float | None
    gap_days: float | None
    drift_js: float | None
    drift_null: float | None
    drift_excess: float | None
    drift_users: int  # users in the drift statistic

    def to_dict(self) -> dict[str, Any]:
        """Plain mapping (JSON/YAML-safe)."""
        out = dataclasses.asdict(self)
        out["behaviours"] = list(self.behaviours)
        return out


STATISTICS: dict[str, str] = {
    "n_items": "items seen",
    "top10_share": "interactions on the top 10% items",
    "gini": "Gini of interactions per item",
    "n_categories": "categories",
    "category_entropy": "category entropy (normalised)",
    "ctr": "click-through (clicks / impressions)",
    "cart_rate": "add-to-cart (carts / clicks)",
    "conversion": "conversion (purchases / clicks)",
    "price_median": "median item price",
    "price_log_std": "std of log item price",
    "session_events": "events per session",
    "sessions_per_user": "sessions per user",
    "gap_days": "days between sessions",
    "drift_js": "drift: JS(early, late) observed",
    "drift_null": "drift: JS under shuffled time",
    "drift_excess": "drift: excess over the null",
}
"""Statistic -> a short label, in table order."""


def log_stats(events: pd.DataFrame, *, behaviours: Iterable[str] | None = None,
              min_user_events: int = DRIFT_MIN_EVENTS, shuffles: int = DRIFT_SHUFFLES, seed: int = 0) -> LogStats:
    """The statistics of the event log ``events`` (see the module doc).

    ``behaviours``: keep only rows of these behaviours first (calibration measures a simulated log
    through the behaviours the real log records, so that both count the same events). The drift
    null is seeded by ``seed``: the same log and seed give the same statistics.
    """
    ev = events
    if behaviours is not None:
        ev = ev[ev["behaviour"].isin(list(behaviours))]
    user = ev["user_id"].to_numpy(np.int64)
    ts = ev["timestamp"].to_numpy().astype("datetime64[ms]").astype(np.int64)
    # sort by (user, time), stably: loaded and simulated logs already are, and then this is one check
    if len(user) > 1 and not _sorted(user, ts):
        order = np.lexsort((ts, user))
        ev, user, ts = ev.iloc[order], user[order], ts[order]
    # behaviour as codes into BEHAVIOURS (-1: any other value): comparing strings row by row is slow
    code = pd.Categorical(ev["behaviour"], categories=BEHAVIOURS).codes
    item = ev["item_id"].to_numpy(np.int64)
    cat = ev["category"].to_numpy(np.int64)
    tally = np.bincount(code[code >= 0], minlength=len(BEHAVIOURS))
    counts = {b: int(n) for b, n in zip(BEHAVIOURS, tally, strict=True) if n}
    present = tuple(counts)
    interest = np.isin(code, [BEHAVIOURS.index(b) for b in INTEREST_BEHAVIOURS])

    n_items, top10, gini = _popularity(item, interest)
    n_cat, entropy = _categories(item, cat, interest)
    price_median, price_log_std = _prices(item, ev["price"].to_numpy(np.float64))
    session_events, sessions_per_user, gap = _sessions(user, ev["session_id"].to_numpy(np.int64), ts)
    if n_cat is None:
        drift: tuple[float | None, float | None, float | None, int] = (None, None, None, 0)
    else:
        drift = drift_divergence(user[interest], cat[interest], ev["session_id"].to_numpy(np.int64)[interest],
                                 min_user_events=min_user_events, shuffles=shuffles, seed=seed)
    return LogStats(
        n_users=int(np.unique(user).size), n_events=len(user),
        span_days=float((ts.max() - ts.min()) / MS_PER_DAY) if len(ts) else None,
        behaviours=present, n_items=n_items, top10_share=top10, gini=gini, n_categories=n_cat,
        category_entropy=entropy,
        ctr=_ratio(counts.get("click"), counts.get("impression")),
        cart_rate=_ratio(counts.get("cart"), counts.get("click")),
        conversion=_ratio(counts.get("purchase"), counts.get("click")),
        price_median=price_median, price_log_std=price_log_std,
        session_events=session_events, sessions_per_user=sessions_per_user, gap_days=gap,
        drift_js=drift[0], drift_null=drift[1], drift_excess=drift[2], drift_users=drift[3],
    )


def _sorted(user: np.ndarray, ts: np.ndarray) -> bool:
    du, dt = np.diff(user), np.diff(ts)
    return bool(((du > 0) | ((du == 0) & (dt >= 0))).all())


def _ratio(num: int | None, den: int | None) -> float | None:
    """num / den; None when the log has no rows of either behaviour (it does not record them)."""
    if not num or not den:
        return None
    return num / den


def _popularity(item: np.ndarray, interest: np.ndarray) -> tuple[int | None, float | None, float | None]:
    """Items seen, and the top-10% share and Gini of the interest events per item seen."""
    seen = np.unique(item[item >= 0])
    if not seen.size:
        return None, None, None
    hits = item[interest & (item >= 0)]
    if not hits.size:
        return int(seen.size), None, None
    per_item = np.bincount(np.searchsorted(seen, hits), minlength=seen.size).astype(np.float64)
    return int(seen.size), top_share(per_item, 0.1), gini(per_item)


def top_share(counts: np.ndarray, frac: float) -> float:
    """Share of the total on the ``ceil(frac * n)`` largest of ``counts``."""
    k = max(1, math.ceil(frac * len(counts)))
    top = np.partition(counts, len(counts) - k)[len(counts) - k:]
    return float(top.sum() / counts.sum())


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative ``counts`` (0: all equal; (n-1)/n: one takes all)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    return float((2.0 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def _categories(item: np.ndarray, cat: np.ndarray, interest: np.ndarray) -> tuple[int | None, float | None]:
    """Distinct categories of the items and the normalised entropy of the interest events' categories.

    A log whose items all share one category carries no category information (the loader gives
    category 0 to every item of a log without a category column): both are None.
    """
    cats = np.unique(cat[item >= 0])
    if cats.size < 2:
        return None, None
    shares = np.unique(cat[interest], return_counts=True)[1].astype(np.float64)
    if not shares.size:
        return int(cats.size), None
    p = shares / shares.sum()
    return int(cats.size), float(-(p * np.log(p)).sum() / math.log(cats.size))


def _prices(item: np.ndarray, price: np.ndarray) -> tuple[float | None, float | None]:
    """Median and std of log of the per-item prices (each item's first known price)."""
    known = (item >= 0) & np.isfinite(price) & (price > 0)
    if not known.any():
        return None, None
    _, first = np.unique(item[known], return_index=True)
    p = price[known][first]
    return float(np.median(p)), float(np.log(p).std()) if p.size > 1 else None


def _sessions(user: np.ndarray, session: np.ndarray, ts: np.ndarray) -> tuple[float | None, float | None,
                                                                             float | None]:
    """Mean events per session, sessions per user and mean gap (days) between a user's sessions.

    A session is a run of a user's consecutive events (in time order) with one ``session_id``; the
    gap is from its last event to the first event of the user's next session.
    """
    if not len(user):
        return None, None, None
    first = np.flatnonzero(np.r_[True, (user[1:] != user[:-1]) | (session[1:] != session[:-1])])
    last = np.r_[first[1:] - 1, len(user) - 1]
    same = user[first[1:]] == user[last[:-1]]
    gaps = (ts[first[1:]] - ts[last[:-1]])[same] / MS_PER_DAY
    n_users = int((user[1:] != user[:-1]).sum()) + 1
    return (float(len(user) / len(first)), float(len(first) / n_users),
            float(gaps.mean()) if gaps.size else None)


def drift_divergence(user: np.ndarray, category: np.ndarray, session: np.ndarray | None = None, *,
                     min_user_events: int = DRIFT_MIN_EVENTS, shuffles: int = DRIFT_SHUFFLES,
                     seed: int = 0) -> tuple[float | None, float | None, float | None, int]:
    """Interest drift: (observed, null, excess, users) Jensen-Shannon divergence (bits) between the
    category distributions of the early and the late half of each user's events.

    ``user`` and ``category`` are the interest events in time order within each user. Users with
    fewer than ``min_user_events`` events are left out. The null permutes each user's events
    (``shuffles`` seeded permutations, averaged): it is what finite halves give without drift, so
    the excess is about 0 for a stationary user and grows with the drift. With ``session`` (the
    events' session ids) the null permutes whole sessions, keeping each session's events together:
    events of one session share a category more often than chance (a click and its cart and
    purchase, a search and its view), which widens the halves' spread, and a null of shuffled
    single events would count that as drift. None when no user has enough events.
    """
    user = np.asarray(user, dtype=np.int64)
    category = np.asarray(category, dtype=np.int64)
    if session is None:
        run = np.arange(len(user))
    else:  # runs of one user's consecutive events with one session id
        session = np.asarray(session, dtype=np.int64)
        run = np.cumsum(np.r_[True, (user[1:] != user[:-1]) | (session[1:] != session[:-1])]) - 1
    if not len(user):
        return None, None, None, 0
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    sizes = np.diff(np.r_[starts, len(user)])
    keep_user = sizes >= min_user_events
    if not keep_user.any():
        return None, None, None, 0
    row_user = np.repeat(np.arange(len(starts)), sizes)  # dense user index of each row
    rows = keep_user[row_user]
    uid = np.repeat(np.cumsum(keep_user) - 1, sizes)[rows]  # dense over kept users
    starts_k, sizes_k = starts[keep_user], sizes[keep_user]
    pos = np.arange(len(user))[rows] - np.repeat(starts_k, sizes_k)
    half = sizes_k // 2
    early = (pos < np.repeat(half, sizes_k)).astype(np.float64)
    _, cat = np.unique(category[rows], return_inverse=True)
    n_users = len(starts_k)
    observed = _mean_js(uid, cat, early, half, sizes_k - half, n_users)
    rng = np.random.default_rng(seed)
    run = run[rows]
    within = np.arange(len(uid))
    null = []
    for _ in range(shuffles):
        # a random order of each user's runs (sessions, or single events), events kept in order inside a run
        key = rng.random(int(run[-1]) + 1)[run]
        order = np.lexsort((within, key, uid))
        null.append(_mean_js(uid, cat[order], early, half, sizes_k - half, n_users))
    null_mean = float(np.mean(null)) if null else 0.0
    return observed, null_mean, observed - null_mean, n_users


def _mean_js(uid: np.ndarray, cat: np.ndarray, early: np.ndarray, n_early: np.ndarray, n_late: np.ndarray,
             n_users: int) -> float:
    """Mean over users of JS(early categories, late categories), in bits, from sparse counts."""
    n_cat = int(cat.max()) + 1
    code = uid * n_cat + cat
    if n_users * n_cat <= 1 << 24:  # a dense (user, category) table is cheaper than sorting
        e = np.bincount(code, weights=early, minlength=n_users * n_cat)
        total = np.bincount(code, minlength=n_users * n_cat).astype(np.float64)
        cells = np.flatnonzero(total)
        e, total, owner = e[cells], total[cells], cells // n_cat
    else:
        uniq, inv = np.unique(code, return_inverse=True)
        e = np.bincount(inv, weights=early, minlength=uniq.size)
        total = np.bincount(inv, minlength=uniq.size).astype(np.float64)
        owner = uniq // n_cat
    p = e / n_early[owner]
    q = (total - e) / n_late[owner]
    m = 0.5 * (p + q)
    # JS = H(M) - (H(P) + H(Q)) / 2, each H a sum over the user's categories
    term = _xlog2x(m) - 0.5 * (_xlog2x(p) + _xlog2x(q))
    return float(np.bincount(owner, weights=-term, minlength=n_users).mean())


def _xlog2x(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    pos = x > 0
    out[pos] = x[pos] * np.log2(x[pos])
    return out
