"""The world every user shares: the catalog, the segments, and the event calendar.

Built once from ``SimConfig.world_seed`` with one ``np.random.Generator``, so training users and
held-out evaluation users meet the same shop. Items are numbered by category (the items of
category c are the contiguous range ``cat_start[c] : cat_start[c] + cat_count[c]``), which lets a
user draw an item of a category with one uniform.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from driftrec.envs.config import SimConfig

PRICE_FEATURE_CLIP = 5.0  # |log(price / price_mean)| is clipped to this in observations


@dataclasses.dataclass(frozen=True)
class CalendarEvent:
    """A window of days in which ``category`` gets ``boost`` (times ``drift_seasonal``) for everyone."""

    kind: str  # "weekend", "promotion" or "holiday"
    start_day: int
    end_day: int  # exclusive
    category: int
    boost: float


@dataclasses.dataclass(frozen=True)
class World:
    """Catalog, segments and calendar. Arrays are read-only once built."""

    # catalog, one row per item (I = n_items)
    category: np.ndarray  # (I,) int64, sorted ascending
    topic: np.ndarray  # (I, D) float64, unit-norm topic vectors
    appeal: np.ndarray  # (I,) float64, hidden clickiness (logits)
    quality: np.ndarray  # (I,) float64, hidden quality found after a click
    price: np.ndarray  # (I,) float64, observable
    rel_price: np.ndarray  # (I,) price / price_mean
    price_feature: np.ndarray  # (I,) float32, clipped log relative price
    cat_start: np.ndarray  # (C,) first item id of each category
    cat_count: np.ndarray  # (C,) items per category (>= 1)
    centroid: np.ndarray  # (C, D) unit-norm category centroids
    candidate_perm: np.ndarray  # (I,) item order the retrieval stage draws blocks from
    # segments (S = n_segments)
    segment_weight: np.ndarray  # (S,) population share
    segment_interest: np.ndarray  # (S, D) base interest of the segment
    segment_price_sens: np.ndarray  # (S,) mean price sensitivity
    age_probs: np.ndarray  # (S, 4) age bucket distribution
    gender_probs: np.ndarray  # (S, 2)
    income_probs: np.ndarray  # (S, 3)
    # calendar
    boost: np.ndarray  # (n_days, C) utility boost per day and category (already times drift_seasonal)
    events: tuple[CalendarEvent, ...]


N_AGE, N_GENDER, N_INCOME = 4, 2, 3


def build_world(cfg: SimConfig) -> World:
    """Draw the catalog, segments and calendar from ``cfg.world_seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.world_seed, 0x5A0B]))
    n_items, n_cat, dim = cfg.n_items, cfg.n_categories, cfg.topic_dim
    # every category gets at least one item; the rest are spread at random
    counts = np.ones(n_cat, dtype=np.int64)  # SimConfig guarantees n_items >= n_categories
    counts += np.bincount(rng.integers(0, n_cat, size=n_items - n_cat), minlength=n_cat)
    category = np.repeat(np.arange(n_cat), counts)
    cat_start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)

    centroid = _unit(rng.normal(size=(n_cat, dim)))
    topic = _unit(centroid[category] + cfg.topic_noise * rng.normal(size=(n_items, dim)) / math.sqrt(dim))

    z_appeal = rng.normal(size=n_items)
    rho = cfg.appeal_quality_corr
    z_quality = rho * z_appeal + math.sqrt(max(0.0, 1.0 - rho * rho)) * rng.normal(size=n_items)
    cat_price = cfg.price_mean * np.exp(0.5 * cfg.price_spread * rng.normal(size=n_cat))
    price = cat_price[category] * np.exp(0.5 * cfg.price_spread * rng.normal(size=n_items))
    rel_price = price / cfg.price_mean
    price_feature = np.clip(np.log(rel_price), -PRICE_FEATURE_CLIP, PRICE_FEATURE_CLIP).astype(np.float32)

    n_seg = cfg.n_segments
    # segment interests have norm about 2, so interest . topic spans a few logits
    segment_interest = 2.0 * rng.normal(size=(n_seg, dim)) / math.sqrt(dim)

    world = World(
        category=category, topic=topic, appeal=cfg.appeal_scale * z_appeal,
        quality=cfg.quality_scale * z_quality, price=price, rel_price=rel_price,
        price_feature=price_feature, cat_start=cat_start, cat_count=counts,
        centroid=centroid, candidate_perm=rng.permutation(n_items),
        segment_weight=rng.dirichlet(np.full(n_seg, 5.0)),
        segment_interest=segment_interest,
        segment_price_sens=cfg.price_sensitivity * np.exp(0.4 * rng.normal(size=n_seg)),
        age_probs=rng.dirichlet(np.full(N_AGE, 1.0), size=n_seg),
        gender_probs=rng.dirichlet(np.full(N_GENDER, 2.0), size=n_seg),
        income_probs=rng.dirichlet(np.full(N_INCOME, 1.0), size=n_seg),
        boost=np.zeros((0, n_cat)), events=(),
    )
    boost, events = _calendar(cfg, rng)
    world = dataclasses.replace(world, boost=boost, events=events)
    for field in dataclasses.fields(world):
        value = getattr(world, field.name)
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
    return world


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _calendar(cfg: SimConfig, rng: np.random.Generator) -> tuple[np.ndarray, tuple[CalendarEvent, ...]]:
    """Weekends, promotions and holidays over the horizon; ``boost`` is zero when seasonal is off.

    The calendar is drawn whatever the strength, so turning ``drift_seasonal`` up or down scales
    the same events instead of drawing new ones.
    """
    n_days = int(math.ceil(cfg.horizon_days)) + 1
    n_cat = cfg.n_categories
    events: list[CalendarEvent] = []
    weekend_cats = rng.choice(n_cat, size=min(2, n_cat), replace=False)
    for week_start in range(0, n_days, 7):
        for cat in weekend_cats:
            events.append(CalendarEvent("weekend", week_start + 5, min(week_start + 7, n_days), int(cat), 0.5))
    n_promos = rng.poisson(cfg.promo_rate * n_days)
    for _ in range(n_promos):
        start = int(rng.integers(0, n_days))
        length = int(rng.geometric(1.0 / cfg.promo_days))  # whole days, mean promo_days (>= 1)
        events.append(CalendarEvent("promotion", start, min(start + length, n_days), int(rng.integers(n_cat)), 1.0))
    for start in range(int(rng.integers(10, 30)), n_days, 30):  # a two-day holiday each month
        for cat in rng.choice(n_cat, size=min(3, n_cat), replace=False):
            events.append(CalendarEvent("holiday", start, min(start + 2, n_days), int(cat), 1.5))
    events = [e for e in events if e.start_day < e.end_day]
    boost = np.zeros((n_days, n_cat))
    for e in events:
        boost[e.start_day:e.end_day, e.category] += e.boost * cfg.drift_seasonal
    return boost, tuple(events)
