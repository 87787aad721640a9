"""Offline metrics of the supervised recommenders: pure numpy functions, no sklearn.

Binary metrics (click, purchase) take labels ``y`` in {0, 1} and predicted probabilities ``p``.
Ranking metrics take a score for every catalog item and the index of the one relevant item
(the next clicked item): one target per row, so HR@k is the share of rows whose target ranks in
the top k and NDCG@k is the mean of ``1 / log2(rank + 1)`` over rows whose target does.

Ties are never broken in anyone's favour: AUC gives a tied positive/negative pair 1/2 (the
Mann-Whitney convention), and a target tied with other items takes each of the ranks the tie
spans with equal probability (the expectation over random tie-breaking), so a constant scorer
gets the HR of a random ranking, not a perfect one.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_THRESHOLD = 0.5
"""Probability above which (``>=``) a prediction counts as positive for accuracy, precision, recall, F1."""


def _binary(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y, dtype=np.float64).ravel(), np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and predictions differ in length: {y.size} != {p.size}")
    return y, p


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve from ranks: P(score of a random positive > a random negative), ties 1/2.

    Any monotone transform of ``score`` gives the same value. NaN when only one class is present.
    """
    y, score = _binary(y, score)
    pos = y > 0.5
    n_pos = int(pos.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # average ranks (1-based) of tied scores: the Mann-Whitney U statistic with the tie correction
    order = np.argsort(score, kind="mergesort")
    sorted_scores = score[order]
    first = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], score.size]  # exclusive
    avg_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(score.size)
    ranks[order] = avg_rank[group]
    u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy ``-mean(y log p + (1 - y) log(1 - p))``, ``p`` clipped to [eps, 1 - eps]."""
    y, p = _binary(y, p)
    if y.size == 0:
        return math.nan
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def classification_report(y: np.ndarray, p: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of the rule ``p >= threshold``.

    Conventions for empty denominators: precision is 0 when nothing is predicted positive,
    recall is 0 when there is no positive, F1 is 0 when precision + recall is 0.
    """
    y, p = _binary(y, p)
    if y.size == 0:
        return {"accuracy": math.nan, "precision": math.nan, "recall": math.nan, "f1": math.nan}
    truth, pred = y > 0.5, p >= threshold
    tp = float(np.sum(truth & pred))
    fp = float(np.sum(~truth & pred))
    fn = float(np.sum(truth & ~pred))
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"accuracy": float(np.mean(truth == pred)), "precision": precision, "recall": recall, "f1": f1}


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """Every binary metric at once: auc, logloss, accuracy, precision, recall, f1, plus the base
    rate (``positive_rate``), the mean prediction (``mean_prediction``) and ``n``."""
    y, p = _binary(y, p)
    out = {"auc": roc_auc(y, p), "logloss": log_loss(y, p)}
    out.update(classification_report(y, p, threshold))
    out.update({"positive_rate": float(y.mean()) if y.size else math.nan,
                "mean_prediction": float(p.mean()) if p.size else math.nan, "n": int(y.size)})
    return out


def target_rank_bounds(scores: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``scores`` (n, items), how many items score strictly higher than the target
    item ``target`` (n,) and how many other items tie with it. The target's rank (1-based) lies
    in ``higher + 1 .. higher + ties + 1``."""
    scores = np.asarray(scores, dtype=np.float64)
    target = np.asarray(target, dtype=np.int64).ravel()
    if scores.ndim != 2 or scores.shape[0] != target.size:
        raise ValueError(f"scores must be (n, items) with one target per row; got {scores.shape} and {target.size}")
    if target.size and (target.min() < 0 or target.max() >= scores.shape[1]):
        raise ValueError(f"target item out of range [0, {scores.shape[1]})")
    own = scores[np.arange(target.size), target][:, None]
    higher = (scores > own).sum(axis=1)
    ties = (scores == own).sum(axis=1) - 1
    return higher, ties


def _discount_cumsum(n: int) -> np.ndarray:
    """D[r] = sum_{i=1..r} 1 / log2(i + 1), with D[0] = 0."""
    return np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, n + 2)))]


def hit_rate_at_k(scores: np.ndarray, target: np.ndarray, k: int = 10) -> float:
    """HR@k: the share of rows whose target item ranks in the top ``k`` (ties: expected over
    random tie-breaking)."""
    higher, ties = target_rank_bounds(scores, target)
    if higher.size == 0:
        return math.nan
    span = ties + 1
    return float(np.mean(np.clip(k - higher, 0, span) / span))


def ndcg_at_k(scores: np.ndarray, target: np.ndarray, k: int = 10) -> float:
    """NDCG@k with one relevant item per row: ``1 / log2(rank + 1)`` when rank <= k, else 0 (the
    ideal DCG is 1). Ties: expected over random tie-breaking."""
    higher, ties = target_rank_bounds(scores, target)
    if higher.size == 0:
        return math.nan
    disc = _discount_cumsum(k)
    lo = np.minimum(higher, k)  # ranks higher+1 .. min(higher+ties+1, k) are inside the top k
    hi = np.minimum(higher + ties + 1, k)
    return float(np.mean((disc[hi] - disc[lo]) / (ties + 1)))


def ranking_metrics(scores: np.ndarray, target: np.ndarray, k: int = 10) -> dict[str, float]:
    """``{"hr@k": ..., "ndcg@k": ..., "n": rows}`` for next-item ranking."""
    return {f"hr@{k}": hit_rate_at_k(scores, target, k), f"ndcg@{k}": ndcg_at_k(scores, target, k),
            "n": int(np.asarray(target).size)}


def popularity_scores(clicked_items: np.ndarray, n_items: int) -> np.ndarray:
    """The popularity baseline's score of every item: how often it was clicked (float, (n_items,))."""
    return np.bincount(np.asarray(clicked_items, dtype=np.int64), minlength=n_items).astype(np.float64)
