"""Supervised models as policies: recommend the items of highest expected immediate reward.

Expected reward of showing item i at slate position 0 to a user:
``P(click) * (reward_click + P(purchase | click) * (reward_purchase + reward_revenue * price_i))``,
with the rewards of the simulator config the policy serves. ``reward_cart`` is not counted: the
models do not predict add-to-cart (it is 0 in every preset). A slate takes the K best distinct
items in order (the best at position 0, where attention is highest), skipping masked actions.

What the policy reads: the observation, and nothing hidden. The user features are the user part
of ``features``, demographics included when the model was trained on a log that knew them
(``uses_demographics``; zeroed otherwise, as in its training); sequence models read the ``history``
observation (item ids and behaviours), so they need ``obs_mode='history'``, whose ``features``
part is the same as in features mode, so every supervised policy runs on it. The models keep no
memory of their own: the history observation is their memory, so ``reset`` and ``keep_rows``
have nothing to do. In catalog mode the whole catalog is scored; in candidates mode the M
candidates of the request, whose item ids the policy reads from ``state.cand`` (the only part of
the state it reads, hence ``reads_hidden_state``; the candidates part of the observation does
not identify items, while a real shop's ranker knows what its retrieval stage returned; the
popularity policy does the same).

Serving cost, per batch step: each user is encoded once (the sequence models re-encode the
bounded window of the last ``history_len`` events, exactly the input they were trained on: a GRU
state carried over the whole life would see more than training did), then the scoring head's
first layer is summed per user and category (the cross features depend on an item only through
its category) and gathered onto the items, so the users x items work is one gather, one addition
and the head's trunk, in chunks of users small enough to stay in cache
(:meth:`driftrec.agents.supervised.base.SupervisedNetwork.score_items`). Measured by ``driftrec bench
--learners``: evaluating 1,000 `default` users costs 1.4-2.8x `oracle-greedy`'s time on the same users.

:class:`driftrec.agents.supervised.retraining.RetrainingPolicy` also learns while deployed.

The policy knows its model through :class:`ScoringNetwork` (what it reads of it), not by importing
:mod:`.base`, whose :meth:`~driftrec.agents.supervised.base.SupervisedNetwork.as_policy` builds it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from driftrec.agents.supervised.data import FeatureSpec, history_from_obs, user_features_from_obs
from driftrec.envs.config import ConfigError
from driftrec.envs.policy import Policy


class ScoringNetwork(Protocol):
    """What a :class:`SupervisedPolicy` reads of its model (a trained
    :class:`driftrec.agents.supervised.base.SupervisedNetwork`)."""

    kind: str
    sequence: bool
    spec: FeatureSpec
    uses_demographics: bool
    item_category: torch.Tensor  # (n_items,) int64
    item_features: torch.Tensor  # (n_items, n_categories + 1) float32

    def score_items(self, user: torch.Tensor, hist_item: torch.Tensor, hist_beh: torch.Tensor,
                    item_cat: torch.Tensor, item_feat: torch.Tensor, ids: torch.Tensor | None,
                    position: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated (P(click), P(purchase | click)), each (B, J), of J items per user."""
        ...


class SupervisedPolicy(Policy):
    """A trained supervised model acting greedily on expected immediate reward (deterministic:
    ``act`` returns no propensities)."""

    def __init__(self, network: ScoringNetwork, user_model: Any):
        spec = FeatureSpec.from_user_model(user_model)
        why = network.spec.mismatch(spec, network.sequence)
        if why:
            raise ConfigError(f"the {network.kind} model cannot read this simulator's observations: {why}")
        cfg = user_model.cfg
        if network.sequence and cfg.obs_mode != "history":
            raise ConfigError(f"the {network.kind} model reads the history observation: set obs_mode=history "
                              f"(got '{cfg.obs_mode}')")
        self.network, self.user_model, self.spec = network, user_model, spec
        self.k, self.m = int(user_model.k), int(user_model.m)
        self.reads_hidden_state = self.m > 0  # candidates mode: the candidates' item ids (state.cand)
        self.n_actions = self.m or spec.n_items
        self.reward_click = float(cfg.reward_click)
        self.reward_purchase = float(cfg.reward_purchase)
        self.reward_revenue = float(cfg.reward_revenue)
        self.n_users = 0

    def reset(self, n_users: int) -> None:
        """A new batch of users: nothing to forget (the policy reads everything from observations)."""
        self.n_users = n_users

    def action_items(self, n: int, state: Any = None) -> np.ndarray:
        """(1, n_items) item ids of the actions in catalog mode, (N, M) the candidates in candidates mode."""
        if not self.m:
            return np.arange(self.spec.n_items)[None, :]
        if state is None:
            raise ValueError("in candidates mode a supervised policy reads the candidates' item ids from "
                             "state.cand: pass state= (the rollout does, since reads_hidden_state is True)")
        return np.asarray(state.cand, dtype=np.int64).reshape(n, self.m)

    @torch.no_grad()
    def predict(self, obs: np.ndarray | dict[str, np.ndarray],
                state: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P(click), P(purchase | click), purchase value) of every action, each (N, n_actions)
        (value: reward_purchase + reward_revenue * price); ``state`` only in candidates mode."""
        spec, network = self.spec, self.network
        user = torch.from_numpy(user_features_from_obs(obs, spec, network.spec, demographics=network.uses_demographics))
        n = user.shape[0]
        if network.sequence:
            hist_item, hist_beh = (torch.from_numpy(a) for a in history_from_obs(obs))
        else:  # unused by the encoder; shaped so the chunking can slice them
            hist_item = hist_beh = torch.zeros((n, 0), dtype=torch.int64)
        items = self.action_items(n, state)
        ids = torch.from_numpy(items)
        cat = self.network.item_category[ids]
        feat = self.network.item_features[ids]
        price = np.broadcast_to(spec.item_price[items], (n, items.shape[1]))
        p_click, p_buy = network.score_items(user, hist_item, hist_beh, cat, feat, ids)
        value = self.reward_purchase + self.reward_revenue * price
        return p_click.double().numpy(), p_buy.double().numpy(), np.asarray(value, dtype=np.float64)

    def expected_reward(self, obs: np.ndarray | dict[str, np.ndarray], state: Any = None) -> np.ndarray:
        """(N, n_actions) expected immediate reward of showing each action at position 0."""
        p_click, p_buy, value = self.predict(obs, state)
        return p_click * (self.reward_click + p_buy * value)

    def act(self, obs: np.ndarray | dict[str, np.ndarray], mask: np.ndarray | None = None, *,
            state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        """The top-K expected-reward actions per user, best first (distinct items while enough valid
        ones remain); ``mask`` (N, K * n_actions) bool marks valid actions; ``state`` is read
        for the candidates' ids in candidates mode only. Propensities are 1 (deterministic)."""
        score = self.expected_reward(obs, state)
        if self.m:  # a candidate repeated in the request is one item: rank its copies once
            items = self.action_items(len(score), state)
            first = np.ones(items.shape, dtype=bool)
            for j in range(1, items.shape[1]):
                first[:, j] = (items[:, :j] != items[:, j:j + 1]).all(axis=1)
            score = np.where(first, score, -np.inf)
        n = score.shape[0]
        masks = (np.ones((n, self.k, self.n_actions), dtype=bool) if mask is None
                 else np.asarray(mask, dtype=bool).reshape(n, self.k, self.n_actions))
        taken = np.zeros_like(score, dtype=bool)
        actions = np.empty((n, self.k), dtype=np.int64)
        rows = np.arange(n)
        for k in range(self.k):  # a loop over slate positions (K <= 20), vectorised over users
            valid = masks[:, k]
            if not valid.any(axis=1).all():
                user = int(np.flatnonzero(~valid.any(axis=1))[0])
                raise ValueError(f"action mask leaves no valid action at slate position {k} "
                                 f"for user {user} of the batch")
            fresh = valid & ~taken
            allowed = np.where(fresh.any(axis=1)[:, None], fresh, valid)  # repeat only when nothing fresh is left
            actions[:, k] = np.where(allowed, score, -np.inf).argmax(axis=1)
            taken[rows, actions[:, k]] = True
        prop = np.ones(actions.shape)
        return (actions[:, 0], prop[:, 0]) if self.k == 1 else (actions, prop)
