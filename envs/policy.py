"""The contract between a policy and the rollout: what :func:`driftrec.envs.rollout.rollout` calls.

The simulator knows policies only through this interface; the policies themselves (reference,
SB3, supervised) live in :mod:`driftrec.agents`, which builds on it. A researcher's own policy
subclasses :class:`Policy` too, and ``driftrec compare`` runs it from a ``module.path:factory``
entry (README, "Your own policy in compare": the factory, the seeds it may use, its family).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

Obs = np.ndarray | dict[str, np.ndarray]


class Policy:
    """A recommender acting on a batch of users.

    ``act(obs, mask, state=...)`` returns the actions of the batch (the model's
    ``action_space``, with a leading users axis) and their propensities: the probability the
    policy gave each action component (same shape as the actions; 1 for a deterministic
    policy), or None when it cannot say (a learned policy). ``update(events)`` lets a policy
    learn online from new event-log rows.

    What a policy may read: the observations (and the mask, the events it served), as a shop's
    recommender would. Class attributes tell the rollout what else to pass:

    - ``reads_hidden_state``: only then is the simulator's batch state (e.g.
      :class:`~driftrec.envs.shop.ShopState`) passed as ``state=``; every other policy acts on
      observations alone (as it would in a real shop). A policy that reads it is a reference
      (an oracle), not a deployable one, whatever it scores; the one exception is built in: in
      candidates mode popularity and logging read ``state.cand`` alone, the ids of the items
      retrieved for the request, which a shop's ranker knows.
    - ``uses_mask``: only then is ``user_model.action_masks(state)`` passed as ``mask``.
    - ``learns_online``: only then does the rollout record the events of the users it serves
      and hand them to ``update`` as it goes (every few batch steps), as a deployed recommender
      would receive its shop's logs.

    Sequence policies that keep per-user memory use the hooks ``reset(n_users)`` (a new batch
    of users starts; row i is user i) and ``keep_rows(rows)`` (the rollout dropped finished
    users; ``rows`` are the batch rows that stay, in order). Both are no-ops by default.
    """

    reads_hidden_state: bool = False
    uses_mask: bool = False
    learns_online: bool = False

    def act(self, obs: Obs, mask: np.ndarray | None = None, *,
            state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Actions for a batch of observations; ``mask`` (N, sum of nvec) bool marks valid actions."""
        raise NotImplementedError

    def reset(self, n_users: int) -> None:
        """A new batch of ``n_users`` users starts (row i of later batches is user i)."""
        return None

    def keep_rows(self, rows: np.ndarray) -> None:
        """The batch shrank to its rows ``rows`` (ascending): drop the memory of the others."""
        return None

    def update(self, events: pd.DataFrame) -> None:
        """Learn from new events (rows of the event log); a no-op for policies that don't learn."""
        return None
