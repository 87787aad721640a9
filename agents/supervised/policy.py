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
(:meth:`driftrec.agents.supervised.base.SupervisedModel.score_items`). Measured by ``driftrec bench
--learners``: evaluating 1,000 `default` users costs 1.4-2.8x `oracle-greedy`'s time on the same users.

:class:`RetrainingPolicy` also learns while deployed: it buffers the events that ``update``
receives and, every ``retrain_every_days`` simulated days, refits the model from its current
weights on the newest ``retrain_window_days`` of them plus replayed older examples, keeping the
refit only if it is better on the newest part of the window
(:func:`driftrec.agents.supervised.adapt.gated_refit`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from driftrec.agents.policies import Policy
from driftrec.agents.supervised.data import (
    Examples,
    FeatureSpec,
    build_examples,
    history_from_obs,
    user_features_from_obs,
)
from driftrec.envs.config import ConfigError
from driftrec.envs.events import simulated_users

if TYPE_CHECKING:
    from driftrec.agents.supervised.base import SupervisedModel


class SupervisedPolicy(Policy):
    """A trained supervised model acting greedily on expected immediate reward (deterministic:
    ``act`` returns no propensities)."""

    def __init__(self, model: SupervisedModel, sim_model: Any):
        spec = FeatureSpec.from_model(sim_model)
        why = model.spec.mismatch(spec, model.sequence)
        if why:
            raise ConfigError(f"the {model.kind} model cannot read this simulator's observations: {why}")
        cfg = sim_model.cfg
        if model.sequence and cfg.obs_mode != "history":
            raise ConfigError(f"the {model.kind} model reads the history observation: set obs_mode=history "
                              f"(got '{cfg.obs_mode}')")
        self.model, self.sim_model, self.spec = model, sim_model, spec
        self.k, self.m = int(sim_model.k), int(sim_model.m)
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
        spec, model = self.spec, self.model
        user = torch.from_numpy(user_features_from_obs(obs, spec, model.spec, demographics=model.uses_demographics))
        n = user.shape[0]
        if model.sequence:
            hist_item, hist_beh = (torch.from_numpy(a) for a in history_from_obs(obs))
        else:  # unused by the encoder; shaped so the chunking can slice them
            hist_item = hist_beh = torch.zeros((n, 0), dtype=torch.int64)
        items = self.action_items(n, state)
        ids = torch.from_numpy(items)
        cat = self.model.item_category[ids]
        feat = self.model.item_features[ids]
        price = np.broadcast_to(spec.item_price[items], (n, items.shape[1]))
        p_click, p_buy = model.score_items(user, hist_item, hist_beh, cat, feat, ids)
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


class RetrainingPolicy(SupervisedPolicy):
    """A supervised policy that refits itself while deployed (``learns_online``: the rollout
    hands it its users' events as they happen).

    ``update(events)`` appends the rows to a buffer. The deployment clock is the simulated day the
    median user of the batch has reached, read from the life-elapsed feature of the observations
    ``act`` serves (a running maximum, from day 0). The rollout steps users one request at a time,
    so their days differ widely: after 8 requests each of 1,000 `default` users (random policy)
    the newest event is on day 27 while the median user's is on day 3; a clock on the newest event
    refit once and never again. Each time the clock passes a multiple of ``every_days`` (default the model's
    ``retrain_every_days``), :meth:`refit` runs
    :func:`driftrec.agents.supervised.adapt.gated_refit`: from the current weights, at ``lr *
    finetune_lr_scale`` (and three times it with ``finetune_search``, the better kept), for at
    most ``epochs`` epochs (``retrain_epochs``), on the examples of ``[clock - window_days,
    clock]`` (features replayed from the whole buffer) whose newest
    ``retrain_val_frac`` is held out, plus ``finetune_replay`` older examples per recent one drawn
    from the buffer's older examples and from ``log`` (the training log, when given, with its users
    table ``log_users``); the refit replaces the weights only if its loss on the held-out slice is
    lower. The class weights stay as trained, so the predictions stay calibrated.

    The deployed users' demographics (when the model uses them) come from the simulator's users
    table of their ids (:func:`driftrec.envs.events.simulated_users`: the rollout names each user by
    its seed), as a shop joins its events with its customer records. ``reset`` (a new batch of
    users, whose ids may repeat old ones) empties the buffer but keeps the weights. The buffer
    holds every event of the current users: memory grows with the deployment. ``refits`` records
    each refit (its clock and what :func:`gated_refit` reported); ``refit_times`` the clocks.
    """

    learns_online = True

    def __init__(self, model: SupervisedModel, sim_model: Any, *, every_days: float | None = None,
                 window_days: float | None = None, epochs: int | None = None, seed: int = 0,
                 log: pd.DataFrame | None = None, log_users: pd.DataFrame | None = None):
        super().__init__(model, sim_model)
        cfg = model.cfg
        self.every_days = float(every_days if every_days is not None else cfg.retrain_every_days)
        self.window_days = float(window_days if window_days is not None else cfg.retrain_window_days)
        self.epochs = int(epochs if epochs is not None else cfg.retrain_epochs)
        if not (self.every_days > 0 and self.window_days > 0 and self.epochs >= 1):
            raise ConfigError("retraining needs every_days > 0, window_days > 0 and epochs >= 1")
        self.seed = seed
        self.refit_times: list[float] = []  # deployment clock (simulated day) of each refit
        self.refits: list[dict[str, Any]] = []
        self._buffer: list[pd.DataFrame] = []
        self._clock = 0.0
        self._next_fit = self.every_days
        self._elapsed_col = self.spec.user_slices["context"].start
        self._log = log
        self._log_users = log_users
        self._log_examples: Examples | None = None

    def reset(self, n_users: int) -> None:
        super().reset(n_users)
        self._buffer.clear()
        self._clock = 0.0
        self._next_fit = self.every_days

    @property
    def clock(self) -> float:
        """The deployment clock: the most advanced median simulated day of the users served so far."""
        return self._clock

    def act(self, obs: np.ndarray | dict[str, np.ndarray], mask: np.ndarray | None = None, *,
            state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        """As :meth:`SupervisedPolicy.act`; also moves the deployment clock."""
        flat = obs["features"] if isinstance(obs, dict) else obs
        elapsed = np.asarray(flat)[:, self._elapsed_col] * self.spec.horizon_days
        if elapsed.size:
            self._clock = max(self._clock, float(np.median(elapsed)))
        return super().act(obs, mask, state=state)

    def update(self, events: pd.DataFrame) -> None:
        """Buffer new event-log rows; refit when the deployment clock has passed the next refit time."""
        if events is None or len(events) == 0:
            return
        self._buffer.append(events)
        if self._clock >= self._next_fit:
            self.refit(self._clock)
            self._next_fit = self.every_days * (math.floor(self._clock / self.every_days) + 1)

    def refit(self, now: float) -> None:
        """One gated refit on the buffered examples of ``[now - window_days, now]`` (no-op without
        clicks in the window or its validation slice; see the class doc)."""
        from driftrec.agents.supervised.adapt import gated_refit, refit_lr_scales

        log = pd.concat(self._buffer, ignore_index=True) if len(self._buffer) > 1 else self._buffer[0]
        self._buffer = [log]
        users = (simulated_users(self.sim_model, log["user_id"].to_numpy()).to_pandas()
                 if self.model.uses_demographics else None)
        examples = build_examples(log, self.model.spec, users)
        recent = examples.take((examples.time >= now - self.window_days) & (examples.time <= now))
        older = [examples.take(examples.time < now - self.window_days)]
        if self._log is not None:
            if self._log_examples is None:
                self._log_examples = build_examples(self._log, self.model.spec,
                                                    self._log_users if self.model.uses_demographics else None)
            older.append(self._log_examples)
        cfg = self.model.cfg
        seed = self.seed + len(self.refits)
        outcome = gated_refit(self.model, recent, Examples.concat(older), cfg, epochs=self.epochs,
                              lr_scales=refit_lr_scales(cfg), seed=seed)
        self.refits.append({"day": now, **outcome})
        self.refit_times.append(now)
