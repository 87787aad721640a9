"""Offline metrics and losses of the supervised recommenders: hand-computed cases, brute-force
references (no sklearn) and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from driftrec.agents.supervised.losses import balanced_pos_weight, logit_offset, next_item_loss, weighted_bce
from driftrec.agents.supervised.metrics import (
    binary_metrics,
    classification_report,
    hit_rate_at_k,
    log_loss,
    ndcg_at_k,
    popularity_scores,
    ranking_metrics,
    roc_auc,
    target_rank_bounds,
)


def brute_auc(y: np.ndarray, s: np.ndarray) -> float:
    """P(score of a positive > score of a negative) over all pairs, ties 1/2."""
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


# ------------------------------------------------------------------------------------- AUC
def test_auc_hand_computed() -> None:
    # pairs (pos, neg): (0.35, 0.1) win, (0.35, 0.4) loss, (0.8, 0.1) win, (0.8, 0.4) win -> 3/4
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)


def test_auc_counts_ties_as_half() -> None:
    # positives 0.5 and 0.9, negatives 0.5 and 0.2: 0.5 vs 0.5 tie (1/2), the rest wins -> 3.5 / 4
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == pytest.approx(0.875)
    assert roc_auc(np.array([0, 1, 0, 1]), np.full(4, 0.3)) == pytest.approx(0.5)


def test_auc_extremes_and_one_class() -> None:
    y = np.array([0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    assert roc_auc(y, s) == 1.0
    assert roc_auc(y, -s) == 0.0
    assert math.isnan(roc_auc(np.ones(3), np.arange(3.0)))
    assert math.isnan(roc_auc(np.zeros(3), np.arange(3.0)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 5)), min_size=2, max_size=40))
def test_auc_matches_brute_force_pairs(rows: list[tuple[int, int]]) -> None:
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] for r in rows], dtype=float)  # few distinct values: many ties
    if y.min() == y.max():
        assert math.isnan(roc_auc(y, s))
    else:
        assert roc_auc(y, s) == pytest.approx(brute_auc(y, s), abs=1e-12)
        assert roc_auc(y, np.exp(s)) == pytest.approx(roc_auc(y, s), abs=1e-12)  # rank-based


# ------------------------------------------------------------------------------------- log-loss and thresholds
def test_log_loss_hand_computed() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.5])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.5)) / 4
    assert log_loss(y, p) == pytest.approx(expected, rel=1e-12)


def test_log_loss_clips_certain_mistakes() -> None:
    assert log_loss(np.array([1.0]), np.array([0.0])) == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert log_loss(np.array([1.0]), np.array([1.0])) == pytest.approx(-math.log(1 - 1e-7), abs=1e-9)


def test_classification_report_hand_computed() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4, 0.5])  # 0.5 counts as positive (>=)
    # predicted positive: 0.9 (tp), 0.6 (tp), 0.7 (fp), 0.5 (fp); missed: 0.2 (fn)
    rep = classification_report(y, p)
    assert rep["accuracy"] == pytest.approx(5 / 8)
    assert rep["precision"] == pytest.approx(2 / 4)
    assert rep["recall"] == pytest.approx(2 / 3)
    assert rep["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    rep = classification_report(y, p, threshold=0.8)
    assert (rep["precision"], rep["recall"]) == (pytest.approx(1.0), pytest.approx(1 / 3))


def test_classification_report_empty_denominators_are_zero() -> None:
    rep = classification_report(np.array([1, 0, 1]), np.array([0.1, 0.2, 0.3]))  # nothing predicted positive
    assert rep["precision"] == 0.0 and rep["recall"] == 0.0 and rep["f1"] == 0.0
    assert rep["accuracy"] == pytest.approx(1 / 3)


def test_binary_metrics_bundle() -> None:
    y, p = np.array([0, 1, 1, 0]), np.array([0.2, 0.7, 0.4, 0.1])
    out = binary_metrics(y, p)
    assert set(out) == {"auc", "logloss", "accuracy", "precision", "recall", "f1", "positive_rate",
                        "mean_prediction", "n"}
    assert out["auc"] == 1.0 and out["n"] == 4 and out["positive_rate"] == 0.5
    with pytest.raises(ValueError, match="differ in length"):
        binary_metrics(y, p[:3])


# ------------------------------------------------------------------------------------- ranking
def test_ranks_and_hit_rate_hand_computed() -> None:
    scores = np.array([[0.9, 0.1, 0.5, 0.3],   # target 2: one item above -> rank 2
                       [0.1, 0.2, 0.3, 0.4],   # target 3: rank 1
                       [0.4, 0.3, 0.2, 0.1]])  # target 3: rank 4
    target = np.array([2, 3, 3])
    higher, ties = target_rank_bounds(scores, target)
    assert higher.tolist() == [1, 0, 3] and ties.tolist() == [0, 0, 0]
    assert hit_rate_at_k(scores, target, k=1) == pytest.approx(1 / 3)
    assert hit_rate_at_k(scores, target, k=2) == pytest.approx(2 / 3)
    assert hit_rate_at_k(scores, target, k=4) == pytest.approx(1.0)
    # NDCG@2: 1/log2(3) + 1 + 0, over 3 rows
    assert ndcg_at_k(scores, target, k=2) == pytest.approx((1 / math.log2(3) + 1.0) / 3)
    assert ndcg_at_k(scores, target, k=4) == pytest.approx((1 / math.log2(3) + 1.0 + 1 / math.log2(5)) / 3)


def test_ranking_ties_are_expected_over_random_tie_breaking() -> None:
    # the target ties with 3 others at the top: its rank is uniform on 1..4
    scores = np.array([[1.0, 1.0, 1.0, 1.0, 0.0]])
    assert hit_rate_at_k(scores, np.array([2]), k=2) == pytest.approx(2 / 4)
    expected_ndcg = (1.0 + 1 / math.log2(3)) / 4  # ranks 1 and 2 are inside the top 2
    assert ndcg_at_k(scores, np.array([2]), k=2) == pytest.approx(expected_ndcg)
    # a constant scorer is a random ranking: HR@k = k / n_items, not 1
    n_items, k = 50, 10
    flat = np.zeros((7, n_items))
    assert hit_rate_at_k(flat, np.arange(7), k=k) == pytest.approx(k / n_items)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=6, max_size=6), st.integers(0, 5), st.integers(1, 6))
def test_ranking_matches_enumerated_tie_breaks(values: list[int], target: int, k: int) -> None:
    """HR and NDCG equal the average over every order of the tied items."""
    scores = np.array([values], dtype=float)
    own = scores[0, target]
    higher = int((scores[0] > own).sum())
    ties = int((scores[0] == own).sum()) - 1
    ranks = np.arange(higher + 1, higher + ties + 2)
    hr = float(np.mean(ranks <= k))
    ndcg = float(np.mean(np.where(ranks <= k, 1 / np.log2(ranks + 1), 0.0)))
    assert hit_rate_at_k(scores, np.array([target]), k) == pytest.approx(hr)
    assert ndcg_at_k(scores, np.array([target]), k) == pytest.approx(ndcg)


def test_ranking_metrics_and_popularity() -> None:
    pop = popularity_scores(np.array([3, 3, 1, 3, 1, 0]), n_items=5)
    assert pop.tolist() == [1.0, 2.0, 0.0, 3.0, 0.0]
    out = ranking_metrics(np.broadcast_to(pop, (2, 5)), np.array([3, 1]), k=1)
    assert out == {"hr@1": 0.5, "ndcg@1": 0.5, "n": 2}
    with pytest.raises(ValueError, match="out of range"):
        target_rank_bounds(np.zeros((1, 3)), np.array([3]))


# ------------------------------------------------------------------------------------- losses
def test_weighted_bce_hand_computed() -> None:
    z = torch.tensor([0.0, 2.0, -1.0])
    y = torch.tensor([1.0, 0.0, 1.0])
    sig = torch.sigmoid(z)
    w = 3.0
    expected = -(w * torch.log(sig[0]) + torch.log(1 - sig[1]) + w * torch.log(sig[2])) / 3
    assert float(weighted_bce(z, y, w)) == pytest.approx(float(expected), rel=1e-6)
    assert float(weighted_bce(z, y)) == pytest.approx(
        float(-(torch.log(sig[0]) + torch.log(1 - sig[1]) + torch.log(sig[2])) / 3), rel=1e-6)
    assert float(weighted_bce(torch.zeros(0), torch.zeros(0), w)) == 0.0


def test_balanced_pos_weight() -> None:
    assert balanced_pos_weight(torch.tensor([1.0, 0.0, 0.0, 0.0])) == pytest.approx(3.0)
    assert balanced_pos_weight(torch.zeros(4)) == 1.0
    assert balanced_pos_weight(torch.ones(4)) == 1.0


def test_logit_offset_restores_the_base_rate() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2000, generator=gen) * 2.0 + 1.0
    y = (torch.rand(2000, generator=gen) < 0.2).float()
    b = logit_offset(z, y)
    assert float(torch.sigmoid(z - b).mean()) == pytest.approx(float(y.mean()), abs=1e-6)
    assert logit_offset(z, torch.zeros(2000)) == 0.0  # one class: nothing to fit


def test_prior_correction_of_a_weighted_logistic_fit() -> None:
    """A logistic model fitted with positives weighted w predicts odds w times too high; removing
    log w recovers the true probability (King and Zeng 2001)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20000, generator=gen)
    p_true = torch.sigmoid(1.5 * x - 2.0)
    y = (torch.rand(20000, generator=gen) < p_true).float()
    w = balanced_pos_weight(y)
    a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = weighted_bce(a * x + b, y, w)
        loss.backward()
        return loss

    opt.step(closure)
    a, b = a.detach(), b.detach()
    corrected = torch.sigmoid(a * x + b - math.log(w))
    assert float(a) == pytest.approx(1.5, abs=0.1)
    assert float(b - math.log(w)) == pytest.approx(-2.0, abs=0.1)
    assert float((corrected - p_true).abs().max()) < 0.03


def test_next_item_loss() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    expected = -torch.log_softmax(logits, dim=1)[0, 0]
    assert float(next_item_loss(logits, torch.tensor([0]))) == pytest.approx(float(expected))
    assert float(next_item_loss(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))) == 0.0
