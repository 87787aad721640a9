"""Shared pieces of every user model: the batch-state helpers and the step output."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import numpy as np

S = TypeVar("S")

# Behaviour codes of the event log and the history observation (0 pads an empty history slot).
BEHAVIOURS = ("search", "view", "impression", "click", "cart", "purchase")
PAD, SEARCH, VIEW, IMPRESSION, CLICK, CART, PURCHASE = range(7)


def copy_state(state: S) -> S:
    """Deep copy of a dataclass of arrays."""
    return dataclasses.replace(state, **{f.name: np.copy(getattr(state, f.name))  # type: ignore[arg-type]
                                         for f in dataclasses.fields(state)})  # type: ignore[arg-type]


def set_rows(state: Any, rows: np.ndarray, other: Any) -> None:
    """Write the users of ``other`` into rows ``rows`` of ``state`` (same dataclass), in place."""
    for f in dataclasses.fields(state):
        getattr(state, f.name)[rows] = getattr(other, f.name)


def take_rows(state: S, rows: np.ndarray) -> S:
    """The users ``rows`` of a batch state, as a new state."""
    return dataclasses.replace(state, **{f.name: getattr(state, f.name)[rows]  # type: ignore[arg-type]
                                         for f in dataclasses.fields(state)})  # type: ignore[arg-type]


@dataclasses.dataclass
class StepOutput:
    """What one batched step returns besides the new state (leading axis N users)."""

    reward: np.ndarray  # (N,) float64
    terminated: np.ndarray  # (N,) bool: the user churned (or recsim-ie budget ran out)
    truncated: np.ndarray  # (N,) bool: the horizon was reached
    items: np.ndarray  # (N, K) int64 item ids of the slate as requested
    shown: np.ndarray  # (N, K) bool: position shows its item (False for a duplicate)
    click_pos: np.ndarray  # (N,) int64 clicked position, -1 for none
    cart: np.ndarray  # (N,) bool
    purchase: np.ndarray  # (N,) bool
    watch: np.ndarray  # (N,) float64 recsim-ie watch minutes (0 for ShopSim)
    time: np.ndarray  # (N,) float64 day time of the request
    session: np.ndarray  # (N,) int64 session index of the request
    search_cat: np.ndarray  # (N,) int64 category of the organic search after it, -1 none
    view_item: np.ndarray  # (N,) int64 item viewed organically after it, -1 none
    organic_time: np.ndarray  # (N,) float64 time of those organic events
    organic_session: np.ndarray  # (N,) int64 their session

    @property
    def click(self) -> np.ndarray:
        return self.click_pos >= 0
