"""Offline evaluation of recommenders on a log: leave-last-out per user, full-catalog ranking.

The objective behind ``driftrec offline`` (issue 6). Any event-schema log works: a
``driftrec simulate`` log, or a shop's own log loaded by :func:`driftrec.ingest.load.load_log`.

**Targets.** What a user "chose", in time order:

- a log with impressions: its clicked impressions (a click matched to the impression of the same
  request, item and position, as :func:`build_examples` labels them); a purchase is the outcome
  of its click, not a target of its own;
- a log without impressions that has clicks: its clicks and purchases;
- a log with neither (views only, or views, carts and purchases): every item interaction (view,
  cart, purchase).

Without impressions, consecutive target rows of one user on the same item in the same session
are one interaction (a click, the cart and the purchase of it; a page reloaded), whose purchase
outcome is whether any of them is a purchase.

**Split (chronological leave-last-out per user).** A user's last target is the test case, the
one before it the validation case, everything before the validation case is training. Rows are
cut at requests: training is every request before the validation target's, validation runs from
it to the test target's request, test from there to the end of the user's log. Users with fewer
than ``min_targets`` (default 3) targets are training-only. Histories are never cut: the test case
is scored from everything the user did before it (earlier organic views and searches included),
exactly as the features of :mod:`.data` replay them. Users are cut at their own times, so one
user's training rows may be later than another's test case (the usual leave-one-out protocol).

**Training examples.** A log with impressions trains on its impressions (clicked or not), as
``driftrec train`` does. Without impressions there are no negatives, so each target becomes a
pseudo-request: a probe impression of the target item (position 0) just before it, whose
features are the history before the target, plus ``negatives`` (default 4) copies of it with an
item drawn uniformly from the rest of the catalog (seeded). Uniform sampling does not look at
the log, so it cannot leak the held-out targets; only training and validation cases get
negatives, the test case is ranked against the whole catalog.

**Features.** A simulated log (its SimConfig stored in the file) or a log whose items match a
preset's catalog (:func:`check_log`) trains with that simulator's features
(:meth:`FeatureSpec.from_config`): the saved model is an ordinary supervised model that
:class:`SupervisedPolicy` serves in the simulator. Any other log gets its own features
(:meth:`FeatureSpec.from_log`): its catalog, categories (the ``max_categories - 1`` most frequent
keep their own index, the rest share one), prices, no calendar events, days counted from the
log's first week, sessions numbered per user, counts scaled by their 95th percentile per request.
Such a model scores offline only.

**Metrics.** Full-catalog ranking of each test case: the rank of the held-out item among all
items, from the history before it; HR@k, NDCG@k and MRR, ties resolved by their expectation over
random tie-breaking (:mod:`.metrics`). Items the user already interacted with are **not** excluded
(shops sell the same item again). Sequence models rank by their next-item head (also reported:
``by_click``, their P(click) ranking, the one the policy uses); the MLP by P(click). Click AUC on
the held-out impressions (a log with impressions and clicks), purchase AUC of P(purchase | click)
on the held-out clicks (a log with clicks and purchases); ``None`` otherwise, or when the held-out
part has one class only. Popularity (training-part target counts; purchase counts for the
purchase AUC) is the baseline row.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from driftrec.agents.supervised.base import SupervisedNetwork, fit
from driftrec.agents.supervised.config import SupervisedConfig
from driftrec.agents.supervised.data import (
    Examples,
    FeatureSpec,
    LogDataError,
    behaviour_codes,
    build_examples,
    check_log,
    event_days,
)
from driftrec.agents.supervised.metrics import roc_auc, target_rank_bounds
from driftrec.agents.supervised.registry import make_network
from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.shop import N_COUNT_KINDS
from driftrec.envs.state import CART, CLICK, IMPRESSION, PURCHASE, SEARCH, VIEW

OFFLINE_MODELS = ("popularity", "mlp", "gru", "transformer")
"""What ``driftrec offline --model`` accepts; popularity is always evaluated as the baseline."""

DEFAULT_NEGATIVES = 4
MIN_TARGETS = 3
MAX_CATEGORIES = 64
_SCORE_BUDGET = 1 << 22  # test cases x items scored at once (32 MiB of float64)

Progress = Callable[[str], Any]


def _quiet(_: str) -> None:
    return None


# ------------------------------------------------------------------------------------- ranking metrics
def ranking_from_bounds(higher: np.ndarray, ties: np.ndarray, k: int = 10) -> dict[str, float]:
    """HR@k, NDCG@k and MRR of targets with ``higher`` items scored above and ``ties`` other items
    tied (see :func:`target_rank_bounds`); each an expectation over random tie-breaking."""
    higher = np.asarray(higher, dtype=np.int64)
    ties = np.asarray(ties, dtype=np.int64)
    n = int(higher.size)
    if n == 0:
        return {f"hr@{k}": math.nan, f"ndcg@{k}": math.nan, "mrr": math.nan, "n": 0}
    span = ties + 1
    hr = np.clip(k - higher, 0, span) / span
    disc = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))]  # disc[r] = sum_{i<=r} 1/log2(i+1)
    ndcg = (disc[np.minimum(higher + span, k)] - disc[np.minimum(higher, k)]) / span
    harmonic = np.r_[0.0, np.cumsum(1.0 / np.arange(1, int((higher + span).max()) + 1))]
    rr = (harmonic[higher + span] - harmonic[higher]) / span  # mean of 1/r over the tied ranks
    return {f"hr@{k}": float(hr.mean()), f"ndcg@{k}": float(ndcg.mean()), "mrr": float(rr.mean()), "n": n}


def full_ranking_metrics(scores: np.ndarray, target: np.ndarray, k: int = 10) -> dict[str, float]:
    """HR@k, NDCG@k and MRR of each row's ``target`` item among all columns of ``scores`` (n, items)."""
    return ranking_from_bounds(*target_rank_bounds(scores, target), k)


def _auc_or_none(y: np.ndarray, score: np.ndarray) -> float | None:
    value = roc_auc(y, score) if len(y) else math.nan
    return None if math.isnan(value) else value


# ------------------------------------------------------------------------------------- prepared log
@dataclasses.dataclass
class OfflineData:
    """A log split leave-last-out per user, as examples of one feature spec."""

    spec: FeatureSpec
    target_rule: str  # which rows are targets (see the module doc)
    pseudo: bool  # training examples are pseudo-requests with sampled negatives (no impressions)
    has_click_labels: bool  # the log has impressions with clicks: click AUC is measurable
    has_purchase_labels: bool  # the log has clicks with purchase outcomes: purchase AUC is measurable
    policy_ready: bool  # the spec is a simulator preset's: the models act in the simulator
    why_offline_only: str | None  # why not, when not
    train: Examples
    val: Examples
    test: Examples  # held-out impressions (the test cases themselves without impressions)
    test_cases: Examples  # one per test user: the held-out target, features from the history before it
    train_items: np.ndarray  # (n_items,) float64 target counts of the training part (popularity)
    train_purchases: np.ndarray  # (n_items,) float64 purchase counts of the training part
    stats: dict[str, Any]  # events, users, test users, training-only users, targets, ...


def prepare_offline(events: pd.DataFrame, *, items: pd.DataFrame | None = None, sim_config: SimConfig | None = None,
                    require_sim: bool = False, negatives: int = DEFAULT_NEGATIVES, min_targets: int = MIN_TARGETS,
                    max_categories: int = MAX_CATEGORIES, seed: int = 0, name: str = "log",
                    users: pd.DataFrame | None = None) -> OfflineData:
    """Targets, features and the leave-last-out split of ``events`` (rows of the event schema).

    ``users`` is the log's users table (:func:`driftrec.envs.events.load_users`): the demographic
    features; None (a shop's own log, which has none) leaves them zero.

    ``items`` (indexed by item id, columns ``category`` and ``price``, as ``LoadedLog.items``)
    gives the catalog of a log's own features (default: the items seen in ``events``).
    ``sim_config``: the simulator the log came from, or a preset the user says its catalog is:
    its features are used when the log's items match its catalog; otherwise (and
    ``require_sim=False``) the log's own features. ``require_sim=True`` (the user named a preset)
    makes a mismatch an error. Raises :class:`LogDataError` (one line) for unusable logs.
    """
    if negatives < 1:
        raise ConfigError(f"negatives must be >= 1, got {negatives}")
    if min_targets < 2:
        raise ConfigError(f"min_targets must be >= 2 (a validation and a test case), got {min_targets}")
    if len(events) == 0:
        raise LogDataError(f"{name} has no events")
    t = event_days(events["timestamp"])
    user = events["user_id"].to_numpy(np.int64)
    ev = events.iloc[np.lexsort((t, user))].reset_index(drop=True)  # stable: rows of a step keep their order
    beh = behaviour_codes(ev["behaviour"].to_numpy())
    has_impressions = bool((beh == IMPRESSION).any())
    has_clicks = bool((beh == CLICK).any())

    spec: FeatureSpec | None = None
    why = "it stores no simulator config and no --preset was given (pass --preset NAME if its items are one's)"
    if sim_config is not None:
        spec, mismatch = _simulator_spec(ev, beh, sim_config, has_impressions, name)
        if spec is None:
            if require_sim:
                raise LogDataError(f"{name} cannot use the preset's features: {mismatch}")
            why = mismatch

    frame, groups = (ev, None) if has_impressions else _probe_frame(ev, beh, has_clicks)
    if spec is None:
        frame, spec = _log_spec(frame, items, max_categories)
    ex = build_examples(frame, spec, users)

    if has_impressions:
        rule = "clicked impressions"
        if not (ex.click > 0).any():
            raise LogDataError(f"{name} has impressions but no click matches one (same user, time, item and "
                               "position): there are no targets")
        purchase_labels = bool((ex.purchase > 0).any())
    else:
        assert groups is not None
        rule = groups["rule"]
        if len(ex) != len(groups["purchased"]):
            raise LogDataError(f"{name}: internal error replaying the targets "
                               f"({len(ex)} != {len(groups['purchased'])})")
        ex.click[:] = 1.0
        ex.purchase[:] = groups["purchased"].astype(np.float32)
        purchase_labels = has_clicks and bool((beh == PURCHASE).any())
    train_m, val_m, test_m, test_idx, per_user = _leave_last_out(ex, min_targets)
    if test_idx.size == 0:
        raise LogDataError(f"{name}: no user has {min_targets} or more targets ({rule}); nothing to hold out")

    train, val, test = ex.take(train_m), ex.take(val_m), ex.take(test_m)
    test_cases = ex.take(test_idx)
    n_targets = int((ex.click > 0).sum())
    del ex  # the parts are copies: free the whole before the negatives multiply them
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0FF1]))
    if not has_impressions:
        train, val = _with_negatives(train, negatives, spec.n_items, rng), _with_negatives(val, negatives,
                                                                                             spec.n_items, rng)
        test = test_cases
    positive = train.click > 0
    train_items = np.bincount(train.item[positive], minlength=spec.n_items).astype(np.float64)
    bought = positive & (train.purchase > 0)
    train_purchases = np.bincount(train.item[bought], minlength=spec.n_items).astype(np.float64)
    n_users = int(ev["user_id"].nunique())
    stats = {"events": int(len(ev)), "users": n_users, "items": spec.n_items, "categories": spec.n_categories,
             "targets": n_targets, "test_users": int(test_idx.size),
             "training_only_users": n_users - int(test_idx.size),
             "users_without_targets": n_users - per_user, "min_targets": min_targets,
             "train_examples": len(train), "val_examples": len(val), "test_examples": len(test),
             "negatives": None if has_impressions else negatives}
    return OfflineData(spec=spec, target_rule=rule, pseudo=not has_impressions,
                       has_click_labels=has_impressions, has_purchase_labels=purchase_labels,
                       policy_ready=spec.source == "simulator", why_offline_only=None if spec.source == "simulator"
                       else why, train=train, val=val, test=test, test_cases=test_cases, train_items=train_items,
                       train_purchases=train_purchases, stats=stats)


def _simulator_spec(ev: pd.DataFrame, beh: np.ndarray, cfg: SimConfig, has_impressions: bool,
                    name: str) -> tuple[FeatureSpec | None, str | None]:
    """(the simulator's spec, None) when the log's items are its catalog's, else (None, why)."""
    try:
        spec = FeatureSpec.from_config(cfg)
    except ConfigError as err:
        return None, f"the simulator config cannot give supervised features ({err})"
    checked = ev
    if not has_impressions:  # real clicks carry no slate position; any in-range one passes check_log
        checked = ev.assign(position=np.where(np.isin(beh, (CLICK, CART, PURCHASE)), 0, ev["position"]))
    try:
        check_log(checked, spec, name)
    except LogDataError as err:
        first = str(err).split(";")[0].removeprefix(f"{name}: ")
        return None, f"its items do not match the simulator's catalog ({first})"
    return spec, None


def _probe_frame(ev: pd.DataFrame, beh: np.ndarray, has_clicks: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``ev`` with a probe impression (position 0) before the first row of each target interaction."""
    item = ev["item_id"].to_numpy(np.int64)
    user = ev["user_id"].to_numpy(np.int64)
    session = ev["session_id"].to_numpy(np.int64)
    if has_clicks:
        is_target, rule = (beh == CLICK) | (beh == PURCHASE), "clicks and purchases"
    else:
        is_target, rule = np.isin(beh, (VIEW, CART, PURCHASE)), "interactions (views, carts, purchases)"
    is_target &= item >= 0
    rows = np.flatnonzero(is_target)
    if rows.size == 0:
        raise LogDataError(f"the log has no {rule}: there are no targets")
    same = np.zeros(rows.size, dtype=bool)
    r0, r1 = rows[:-1], rows[1:]
    same[1:] = (user[r1] == user[r0]) & (item[r1] == item[r0]) & (session[r1] == session[r0])
    group = np.cumsum(~same) - 1
    purchased = np.bincount(group, weights=(beh[rows] == PURCHASE).astype(np.float64)) > 0
    first = rows[~same]
    probes = ev.iloc[first].assign(behaviour="impression", position=np.int16(0), reward=0.0)
    key = np.r_[2 * np.arange(len(ev)) + 1, 2 * first]  # a probe sorts just before its target row
    frame = pd.concat([ev, probes], ignore_index=True).iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
    return frame, {"rule": rule, "purchased": purchased}


def _log_spec(frame: pd.DataFrame, items: pd.DataFrame | None, max_categories: int) -> tuple[pd.DataFrame,
                                                                                             FeatureSpec]:
    """(``frame`` with categories merged and sessions numbered per user, its own feature spec)."""
    item = frame["item_id"].to_numpy(np.int64)
    n_items = max(int(item.max()) + 1, len(items) if items is not None else 0)
    item_cat = np.zeros(n_items, dtype=np.int64)
    item_price = np.full(n_items, np.nan)
    if items is not None:  # the catalog table covers items the events may not show
        m = min(len(items), n_items)
        item_cat[:m] = items["category"].to_numpy(np.int64)[:m]
        item_price[:m] = items["price"].to_numpy(np.float64)[:m]
    known = item >= 0  # the events' own category (first row) and median price win
    item_cat[item[known][::-1]] = frame["category"].to_numpy(np.int64)[known][::-1]
    price = frame.loc[known, ["item_id", "price"]].groupby("item_id")["price"].median().dropna()
    item_price[price.index.to_numpy(np.int64)] = price.to_numpy(np.float64)
    cat = frame["category"].to_numpy(np.int64)
    n_cat = int(max(cat.max(), item_cat.max())) + 1
    if n_cat > max_categories:  # the most frequent keep their index (by frequency), the rest share the last
        freq = np.bincount(cat, minlength=n_cat) + np.bincount(item_cat, minlength=n_cat)
        rank = np.empty(n_cat, dtype=np.int64)
        rank[np.argsort(-freq, kind="stable")] = np.arange(n_cat)
        remap = np.minimum(rank, max_categories - 1)
        cat, item_cat, n_cat = remap[cat], remap[item_cat], max_categories
    user = frame["user_id"].to_numpy(np.int64)
    session = frame["session_id"].to_numpy(np.int64)
    new_user = np.r_[True, user[1:] != user[:-1]]
    new_session = new_user | np.r_[True, session[1:] != session[:-1]]
    count = np.cumsum(new_session)
    session_index = count - np.maximum.accumulate(np.where(new_user, count, 0))  # 0, 1, ... per user
    days = event_days(frame["timestamp"])
    offset = 7.0 * math.floor(float(days.min()) / 7.0)  # whole weeks: keeps the day-of-week phase
    frame = frame.assign(category=cat.astype(np.int32), session_id=session_index)
    spec = FeatureSpec.from_log(item_cat, item_price, n_cat, horizon_days=max(float(days.max()) - offset, 1.0),
                                day_offset=offset, count_scale=_count_scale(frame))
    return frame, spec


def _count_scale(frame: pd.DataFrame) -> np.ndarray:
    """(4,) the 95th percentile over requests of the events of each count kind (impressions, clicks,
    purchases, organic) between a request and the next (at least 1)."""
    beh = behaviour_codes(frame["behaviour"].to_numpy())
    user = frame["user_id"].to_numpy(np.int64)
    kind = np.select([beh == IMPRESSION, beh == CLICK, beh == PURCHASE, (beh == SEARCH) | (beh == VIEW)],
                     [0, 1, 2, 3], -1)
    start = (beh == IMPRESSION) & np.r_[True, ~((beh[:-1] == IMPRESSION) & (user[1:] == user[:-1]))]
    req = np.cumsum(start) - 1
    ok = (kind >= 0) & (req >= 0)
    n_req = int(start.sum())
    if n_req == 0:
        return np.ones(N_COUNT_KINDS)
    per = np.bincount(req[ok] * N_COUNT_KINDS + kind[ok], minlength=n_req * N_COUNT_KINDS).reshape(n_req, -1)
    return np.maximum(np.quantile(per, 0.95, axis=0), 1.0)


def _requests(ex: Examples) -> np.ndarray:
    """(n,) request index of each example (examples in log order: a slate's impressions are
    consecutive, same user and time, increasing positions)."""
    n = len(ex)
    cont = np.zeros(n, dtype=bool)
    cont[1:] = (ex.user_id[1:] == ex.user_id[:-1]) & (ex.time[1:] == ex.time[:-1]) & (ex.position[:-1] <
                                                                                       ex.position[1:])
    return np.cumsum(~cont) - 1


def _leave_last_out(ex: Examples, min_targets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(train, val, test masks, indices of the test cases, users with any target) of examples in log order."""
    req = _requests(ex)
    clicked = np.flatnonzero(ex.click > 0)
    uc = ex.user_id[clicked]
    first = np.r_[True, uc[1:] != uc[:-1]]
    group = np.cumsum(first) - 1
    counts = np.bincount(group)
    last = np.cumsum(counts) - 1
    from_end = last[group] - np.arange(clicked.size)
    eligible = counts >= min_targets
    test_idx = clicked[(from_end == 0) & eligible[group]]
    val_idx = clicked[(from_end == 1) & eligible[group]]
    users = uc[first]
    big = np.iinfo(np.int64).max
    test_req, val_req = np.full(users.size, big), np.full(users.size, big)
    test_req[eligible], val_req[eligible] = req[test_idx], req[val_idx]
    g = np.clip(np.searchsorted(users, ex.user_id), 0, max(users.size - 1, 0))
    known = users[g] == ex.user_id if users.size else np.zeros(len(ex), dtype=bool)
    tr, vr = np.where(known, test_req[g], big), np.where(known, val_req[g], big)
    test = req >= tr
    val = (req >= vr) & ~test
    return ~(test | val), val, test, test_idx, int(users.size)


def _with_negatives(pos: Examples, s: int, n_items: int, rng: np.random.Generator) -> Examples:
    """``pos`` (positives), each followed by ``s`` copies of it with a uniformly drawn other item,
    unclicked (a pseudo-request's examples stay consecutive, so training encodes it once)."""
    if len(pos) == 0:
        return pos
    n = len(pos)
    # one gather builds positives and their copies at once: memory for the result only (a 10M-row log
    # has millions of targets, and the features are most of an example's bytes)
    out = pos.take(np.repeat(np.arange(n), s + 1))
    neg = (np.arange(n * (s + 1)) % (s + 1)) > 0
    draw = rng.integers(0, n_items - 1, size=n * s)
    out.item[neg] = draw + (draw >= out.item[neg])  # skip the positive itself
    out.click[neg] = 0.0
    out.purchase[neg] = 0.0
    return out


# ------------------------------------------------------------------------------------- models
def ranking_metrics_of(scorer: Callable[[Examples], np.ndarray], cases: Examples, n_items: int,
                       k: int) -> dict[str, float]:
    """Full-catalog HR@k, NDCG@k, MRR of ``cases`` (their ``item`` is the target), scoring chunks of
    cases with ``scorer`` (cases -> (n, n_items) scores) so memory stays bounded."""
    rows = max(1, _SCORE_BUDGET // max(n_items, 1))
    higher, ties = [], []
    for lo in range(0, len(cases), rows):
        part = cases.take(np.arange(lo, min(lo + rows, len(cases))))
        h, t = target_rank_bounds(scorer(part), part.item)
        higher.append(h)
        ties.append(t)
    if not higher:
        return ranking_from_bounds(np.zeros(0), np.zeros(0), k)
    return ranking_from_bounds(np.concatenate(higher), np.concatenate(ties), k)


def evaluate_popularity(data: OfflineData, k: int = 10) -> dict[str, Any]:
    """The popularity baseline's metrics: training-part target counts rank the catalog and score
    the held-out impressions (click AUC); training purchase counts score the held-out clicks."""
    pop = data.train_items
    out: dict[str, Any] = dict(ranking_metrics_of(lambda c: np.broadcast_to(pop, (len(c), pop.size)),
                                                  data.test_cases, data.spec.n_items, k))
    out.update(_auc_metrics(data, pop[data.test.item], data.train_purchases[data.test.item]))
    return out


def _auc_metrics(data: OfflineData, p_click: np.ndarray, p_buy: np.ndarray) -> dict[str, Any]:
    test = data.test
    clicked = test.click > 0
    click_auc = _auc_or_none(test.click, p_click) if data.has_click_labels else None
    purchase_auc = _auc_or_none(test.purchase[clicked], p_buy[clicked]) if data.has_purchase_labels else None
    return {"click_auc": click_auc, "purchase_auc": purchase_auc,
            "click_auc_n": int(len(test)) if data.has_click_labels else 0,
            "purchase_auc_n": int(clicked.sum()) if data.has_purchase_labels else 0}


def train_offline_network(kind: str, data: OfflineData, cfg: SupervisedConfig, seed: int = 0,
                        progress: Progress = _quiet) -> tuple[SupervisedNetwork, dict[str, Any]]:
    """Fit a supervised model of ``kind`` on ``data.train`` (early stopping on ``data.val``,
    recalibrated on it) and evaluate it on the held-out part; returns (model, metrics)."""
    start = time.perf_counter()
    network = make_network(kind, data.spec, cfg, seed)
    network.uses_demographics = data.train.knows_demographics(data.spec)
    network.set_pos_weights(data.train, cfg.click_pos_weight, cfg.purchase_pos_weight)
    val = data.val if len(data.val) else None

    def on_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
        progress(f"{kind} epoch {epoch}/{cfg.epochs}: train loss {train_loss:.4f}, val loss {val_loss:.4f}")

    report = fit(network, data.train, val, epochs=cfg.epochs, lr=cfg.lr, patience=cfg.patience, seed=seed,
                 on_epoch=on_epoch)
    if val is not None:
        network.recalibrate(val)
    train_seconds = time.perf_counter() - start
    k = cfg.top_k
    out: dict[str, Any] = dict(ranking_metrics_of(network.ranking_scores, data.test_cases, data.spec.n_items, k))
    if network.next_item is not None:
        out["by_click"] = ranking_metrics_of(lambda c: network.ranking_scores(c, by_click=True), data.test_cases,
                                             data.spec.n_items, k)
    p_click, p_buy = network.predict(data.test)
    out.update(_auc_metrics(data, p_click, p_buy))
    out.update({"train_seconds": train_seconds, "epochs_run": report.epochs_run, "best_epoch": report.best_epoch,
                "best_val_loss": report.best_val_loss if math.isfinite(report.best_val_loss) else None})
    return network, out


def parse_models(text: str | Sequence[str]) -> list[str]:
    """``"gru,mlp"`` -> ``["popularity", "gru", "mlp"]``: known kinds, no repeats, popularity first
    (the baseline row is always there); ConfigError naming an unknown one."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise ConfigError(f"--model: name at least one of {', '.join(OFFLINE_MODELS)}")
    for n in names:
        if n not in OFFLINE_MODELS:
            raise ConfigError(f"unknown model '{n}' for offline evaluation; choose from {', '.join(OFFLINE_MODELS)}")
    return ["popularity", *dict.fromkeys(n for n in names if n != "popularity")]
