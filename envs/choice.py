"""Choice models: slate utilities in, click probabilities out. Sampling is a separate step.

Both models return probabilities of shape (N, K + 1): column k < K is "clicks position k", the
last column is "no click". At most one click per request.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit


def position_weights(slate_size: int, position_decay: float) -> np.ndarray:
    """Attention weight of each slate position: ``position_decay ** k`` (position 0 is 1)."""
    return np.power(position_decay, np.arange(slate_size, dtype=np.float64))


def mnl_probs(util: np.ndarray, shown: np.ndarray, pos_w: np.ndarray, no_click: float) -> np.ndarray:
    """Multinomial logit over {slate, no click} with multiplicative position bias.

    P(click k) = w_k s_k exp(u_k) / (exp(u_0) + sum_j w_j s_j exp(u_j)), where s_k is 1 where
    position k shows an item (duplicates are not shown) and u_0 is the no-click utility.
    Computed with the max subtracted, so any finite utility gives finite probabilities.
    """
    visible = pos_w * shown
    # the max runs over clickable positions only: a hidden one (duplicate, or position_decay 0)
    # setting it could underflow every real weight and the outside option to 0 / 0 = NaN
    logit = np.where(visible > 0, util, -np.inf)
    top = np.maximum(logit.max(axis=1), no_click)
    weight = np.exp(logit - top[:, None]) * visible
    outside = np.exp(no_click - top)
    denom = outside + weight.sum(axis=1)
    probs = np.empty((util.shape[0], util.shape[1] + 1))
    probs[:, :-1] = weight / denom[:, None]
    probs[:, -1] = outside / denom
    return probs


def cascade_probs(util: np.ndarray, shown: np.ndarray, pos_w: np.ndarray, no_click: float) -> np.ndarray:
    """Cascade model (Craswell et al., WSDM 2008): scan top-down, stop at the first click.

    Position k is examined with probability ``pos_w[k]`` (continuation ``position_decay``) and,
    if examined, clicked with probability sigmoid(u_k - u_0).
    """
    attract = shown * expit(util - no_click)  # expit: no overflow warning at very low utility
    survive = np.cumprod(1.0 - attract, axis=1)
    before = np.ones_like(attract)
    before[:, 1:] = survive[:, :-1]
    click = pos_w * attract * before
    probs = np.empty((util.shape[0], util.shape[1] + 1))
    probs[:, :-1] = click
    probs[:, -1] = np.maximum(0.0, 1.0 - click.sum(axis=1))
    return probs


def sample_choice(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index of the chosen column (K = no click) for each row, from one uniform per row."""
    cum = np.cumsum(probs[:, :-1], axis=1)
    return (u[:, None] >= cum).sum(axis=1)
