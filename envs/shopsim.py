"""The Gymnasium env: one user (a batch of one) driven by the shared batched core."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

import driftrec.envs.rng as rngs
from driftrec.envs.config import SimConfig
from driftrec.envs.presets import preset_config
from driftrec.envs.user_model import build_user_model


class ShopSimEnv(gym.Env):
    """One e-commerce user whose interests drift; each step is one recommendation request.

    ## Arguments
    ``gym.make("driftrec/ShopSim-v0", preset="default", **overrides)``: ``preset`` names a row of
    ``driftrec presets``; any :class:`~driftrec.envs.config.SimConfig` key may be overridden
    (``slate_size=3``, ``obs_mode="history"``...). A ``config=SimConfig(...)`` replaces both.

    ## Action space
    ``catalog`` mode: ``Discrete(n_items)`` for one item, ``MultiDiscrete([n_items] * K)`` for a
    slate of K. ``candidates`` mode: the same over the M candidates of the request, which are in
    the observation. An item repeated in a slate is shown once, at its first position.

    ## Observation space
    ``features``: a flat float32 Box whose named slices are ``env.unwrapped.layout``
    (``layout.describe()`` prints the table); ``history``: a Dict adding the last ``history_len``
    item ids (``n_items`` pads) and behaviour codes (0 pads; 1 search ... 6 purchase);
    ``oracle``: the features followed by the hidden user state.

    ## Rewards
    ``reward_click * click + reward_cart * cart + reward_purchase * purchase
    + reward_revenue * price * purchase``.

    ## Episode end
    Terminated when the user churns at the end of a session (ShopSim) or the time budget runs out
    (recsim-ie); truncated when the user's life reaches ``horizon_days``.

    ## Info
    ``click``, ``cart``, ``purchase`` (bools), ``clicked_position`` (-1 for none).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, preset: str = "default", config: SimConfig | None = None, **overrides: Any):
        self.config = config if config is not None else preset_config(preset, overrides)
        self.user_model = build_user_model(self.config)
        self.layout = self.user_model.layout
        self.observation_space = self.user_model.observation_space
        self.action_space = self.user_model.action_space
        self.state: Any = None
        self._slot_key: np.ndarray | None = None
        self._episode = -1
        self._dict_obs = isinstance(self.observation_space, gym.spaces.Dict)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._slot_key, self._episode = rngs.user_keys(seed), 0
        elif self._slot_key is None:
            self._slot_key, self._episode = rngs.user_keys(int(self.np_random.integers(2**63))), 0
        else:
            self._episode += 1
        self.state = self.user_model.init(self._slot_key, np.array([self._episode]))
        return self._obs(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if self.state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        self.state, out = self.user_model.step(self.state, np.asarray(action).reshape(1, -1), inplace=True)
        info = {"click": bool(out.click_pos[0] >= 0), "cart": bool(out.cart[0]),
                "purchase": bool(out.purchase[0]), "clicked_position": int(out.click_pos[0])}
        return self._obs(), float(out.reward[0]), bool(out.terminated[0]), bool(out.truncated[0]), info

    def action_masks(self) -> np.ndarray:
        """Flat valid-action mask for MaskablePPO (sb3-contrib)."""
        return self.user_model.action_masks(self.state)[0]

    def _obs(self) -> Any:
        obs = self.user_model.observe(self.state)
        if self._dict_obs:
            return {k: v[0] for k, v in obs.items()}
        return obs[0]
