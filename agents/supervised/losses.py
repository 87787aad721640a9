"""Losses of the supervised recommenders: pure torch functions (no module state), unit-tested.

Class weighting: positives (clicks, purchases) are rare, so their loss terms are weighted by
``pos_weight``. A model fitted with weight w predicts odds w times too high (the weighted-loss
optimum is p_w = w p / (w p + 1 - p)), so predictions subtract ``log w`` from the logit: the
prior correction of King and Zeng (2001, "Logistic regression in rare events data").
The correction is exact only at the optimum, so after training the shift is refit on the
validation set (:func:`logit_offset`: the mean prediction matches the base rate, which is where
the log-loss is minimal over the shift). The policy's expected reward and the log-loss then see
calibrated probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_bce(logit: torch.Tensor, target: torch.Tensor, pos_weight: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Mean of ``-(w y log sigmoid(z) + (1 - y) log(1 - sigmoid(z)))``; 0 for an empty batch."""
    if logit.numel() == 0:
        return logit.sum()  # a zero that keeps the graph
    weight = torch.as_tensor(pos_weight, dtype=logit.dtype, device=logit.device)
    return F.binary_cross_entropy_with_logits(logit, target.to(logit.dtype), pos_weight=weight.reshape(1))


def logit_offset(logit: torch.Tensor, target: torch.Tensor, iters: int = 60) -> float:
    """The shift ``b`` that makes ``sigmoid(logit - b)`` average to the base rate of ``target``
    (the intercept refit of a recalibration; the log-loss is minimised over ``b`` exactly there).

    Bisection on the monotone mean; 0 when the batch is empty or has one class only.
    """
    logit = logit.detach().double()
    rate = float(target.double().mean()) if target.numel() else 0.0
    if target.numel() == 0 or rate <= 0.0 or rate >= 1.0:
        return 0.0
    lo, hi = float(logit.min()) - 40.0, float(logit.max()) + 40.0  # mean(sigmoid) is ~1 at lo, ~0 at hi
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if float(torch.sigmoid(logit - mid).mean()) > rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def balanced_pos_weight(labels: torch.Tensor) -> float:
    """negatives / positives of 0/1 ``labels`` (1.0 when either class is missing)."""
    n_pos = float(labels.sum())
    n_neg = float(labels.numel()) - n_pos
    if n_pos <= 0 or n_neg <= 0:
        return 1.0
    return n_neg / n_pos


def next_item_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy of the next (clicked) item over the catalog; 0 for an empty batch."""
    if target.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target)

