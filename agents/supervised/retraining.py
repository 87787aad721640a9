"""A supervised policy that keeps learning while deployed.

:class:`RetrainingPolicy` buffers the events that ``update`` receives and, every
``retrain_every_days`` simulated days, refits the model from its current weights on the newest
``retrain_window_days`` of them plus replayed older examples, keeping the refit only if it is
better on the newest part of the window (:func:`driftrec.agents.supervised.adapt.gated_refit`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from driftrec.agents.supervised.adapt import gated_refit, refit_lr_scales
from driftrec.agents.supervised.base import SupervisedNetwork
from driftrec.agents.supervised.data import Examples, build_examples
from driftrec.agents.supervised.policy import SupervisedPolicy
from driftrec.envs.config import ConfigError
from driftrec.envs.events import simulated_users


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
    network: SupervisedNetwork  # a refit needs the whole model (config, weights), not only what serving reads

    def __init__(self, network: SupervisedNetwork, user_model: Any, *, every_days: float | None = None,
                 window_days: float | None = None, epochs: int | None = None, seed: int = 0,
                 log: pd.DataFrame | None = None, log_users: pd.DataFrame | None = None):
        super().__init__(network, user_model)
        cfg = network.cfg
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
        log = pd.concat(self._buffer, ignore_index=True) if len(self._buffer) > 1 else self._buffer[0]
        self._buffer = [log]
        users = (simulated_users(self.user_model, log["user_id"].to_numpy()).to_pandas()
                 if self.network.uses_demographics else None)
        examples = build_examples(log, self.network.spec, users)
        recent = examples.take((examples.time >= now - self.window_days) & (examples.time <= now))
        older = [examples.take(examples.time < now - self.window_days)]
        if self._log is not None:
            if self._log_examples is None:
                self._log_examples = build_examples(self._log, self.network.spec,
                                                    self._log_users if self.network.uses_demographics else None)
            older.append(self._log_examples)
        cfg = self.network.cfg
        seed = self.seed + len(self.refits)
        outcome = gated_refit(self.network, recent, Examples.concat(older), cfg, epochs=self.epochs,
                              lr_scales=refit_lr_scales(cfg), seed=seed)
        self.refits.append({"day": now, **outcome})
        self.refit_times.append(now)
