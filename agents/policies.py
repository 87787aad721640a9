"""One interface for every policy: act on a batch of observations, optionally learn from events.

Reference policies (popularity, oracle-greedy), SB3 agents and supervised recommenders all
subclass :class:`Policy`, so the harness and the CLI drive them alike. :func:`make_policy` builds
one by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium import spaces

from driftrec.envs.config import ConfigError

if TYPE_CHECKING:
    import pandas as pd


class Policy:
    """A recommender acting on a batch of users.

    ``act(obs, mask)`` returns the actions of the batch (the model's ``action_space``, with a
    leading users axis) and their propensities: the probability the policy gave each action
    component (same shape as the actions), or None when it cannot say (a deterministic or
    learned policy). ``update(events)`` lets a policy learn online from new event-log rows.
    """

    def act(self, obs: np.ndarray | dict[str, np.ndarray],
            mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Actions for a batch of observations; ``mask`` (N, sum of nvec) bool marks valid actions."""
        raise NotImplementedError

    def update(self, events: pd.DataFrame) -> None:
        """Learn from new events (rows of the event log); a no-op for policies that don't learn."""
        return None


class RandomPolicy(Policy):
    """Uniform at random over each slate position, independently (duplicates are possible: the
    simulator shows a repeated item once). Propensity 1 / n_actions per position, or 1 / (valid
    actions) under a mask."""

    def __init__(self, action_space: spaces.Space, n_users: int, seed: int | None = None):
        if isinstance(action_space, spaces.Discrete):
            self.nvec, self.slate = np.array([int(action_space.n)]), False
        elif isinstance(action_space, spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
            self.nvec, self.slate = np.asarray(action_space.nvec, dtype=np.int64), True
        else:
            raise TypeError(f"RandomPolicy needs a Discrete or 1-d MultiDiscrete action space, got {action_space}")
        self.action_space = action_space
        self.n_users = n_users
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray | dict[str, np.ndarray],
            mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        n = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
        k = len(self.nvec)
        u = self.rng.random((n, k))
        if mask is None:
            actions = (u * self.nvec).astype(np.int64)
            prop = np.broadcast_to(1.0 / self.nvec, (n, k)).copy()
        else:
            actions, prop = np.empty((n, k), dtype=np.int64), np.empty((n, k))
            blocks = np.split(np.asarray(mask, dtype=bool).reshape(n, -1), np.cumsum(self.nvec)[:-1], axis=1)
            for j, valid in enumerate(blocks):
                count = valid.sum(axis=1)
                if (count == 0).any():
                    raise ValueError(f"action mask leaves no valid action at slate position {j} "
                                     f"for user {int(np.flatnonzero(count == 0)[0])} of the batch")
                # the (floor(u * count) + 1)-th valid action, by a cumulative count
                target = (u[:, j] * count).astype(np.int64)
                actions[:, j] = (np.cumsum(valid, axis=1) <= target[:, None]).sum(axis=1)
                prop[:, j] = 1.0 / count
        if not self.slate:
            return actions[:, 0], prop[:, 0]
        return actions, prop


PolicyFactory = Callable[[Any, int, "int | None"], Policy]

POLICIES: dict[str, PolicyFactory] = {
    "random": lambda model, n_users, seed: RandomPolicy(model.action_space, n_users, seed),
}
"""Policy name -> factory ``(model, n_users, seed) -> Policy``; later work registers more."""


def make_policy(name: str, model: Any, n_users: int, seed: int | None = None) -> Policy:
    """The policy called ``name`` for ``n_users`` users of ``model``; unknown names raise ConfigError."""
    if name not in POLICIES:
        raise ConfigError(f"unknown policy '{name}'; choose one of: {', '.join(sorted(POLICIES))}")
    return POLICIES[name](model, n_users, seed)
