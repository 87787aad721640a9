"""Vector shells over the batched core: an SB3 ``VecEnv`` and a Gymnasium ``VectorEnv``.

Both step all N users in one numpy call and hold no dynamics of their own. User i of a shell
seeded with ``seed`` is the same user, step for step, as a single :class:`ShopSimEnv` reset with
``seed + i``, because every user draws from its own counter-based stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvObs, VecEnvStepReturn

import driftrec.envs.rng as rngs
from driftrec.envs.config import SimConfig
from driftrec.envs.presets import preset_config
from driftrec.envs.user_model import build_user_model

_NO_INFO: Mapping[str, Any] = MappingProxyType({})


def _slot_keys(seed: int | Sequence[int] | None, n: int, rng: np.random.Generator) -> np.ndarray:
    if seed is None:
        seed = int(rng.integers(2**62))
    if isinstance(seed, (int, np.integer)):
        return rngs.user_keys(int(seed) + np.arange(n))
    if len(seed) != n:
        raise ValueError(f"got {len(seed)} seeds for {n} users")
    return rngs.user_keys(np.asarray(seed))


class ShopSimVecEnv(VecEnv):
    """SB3 ``VecEnv`` of ``n_users`` simulated users; done users restart at once (SB3 autoreset)."""

    def __init__(self, n_users: int, preset: str = "default", seed: int | None = None,
                 config: SimConfig | None = None, **overrides: Any):
        if n_users < 1:
            raise ValueError(f"n_users must be >= 1, got {n_users}")
        self.config = config if config is not None else preset_config(preset, overrides)
        self.user_model = build_user_model(self.config)
        self.layout = self.user_model.layout
        super().__init__(n_users, self.user_model.observation_space, self.user_model.action_space)
        self._entropy = np.random.default_rng()
        self._next_seed: int | None = seed
        self.state: Any = None
        self._actions: np.ndarray | None = None

    def seed(self, seed: int | None = None) -> Sequence[None | int]:  # type: ignore[override]
        """Seed the next reset: user i gets ``seed + i``."""
        self._next_seed = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def reset(self) -> VecEnvObs:
        if self.state is None or self._next_seed is not None:
            keys = _slot_keys(self._next_seed, self.num_envs, self._entropy)
            self.state = self.user_model.init(keys, np.zeros(self.num_envs, dtype=np.int64))
            self._next_seed = None
        else:  # a reset without a new seed starts every slot's next life
            self.user_model.reset_where(self.state, np.ones(self.num_envs, dtype=bool))
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self.user_model.observe(self.state)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        self.state, out = self.user_model.step(self.state, self._actions, inplace=True)
        done = out.terminated | out.truncated
        # Users still running share one read-only empty info: building thousands of dicts per step
        # costs more than stepping them. SB3 and its wrappers only write into the infos of done users.
        infos: list[Any] = [_NO_INFO] * self.num_envs
        rows = np.flatnonzero(done)
        if rows.size:
            terminal = self.user_model.observe(self.state, rows)
            truncated = (out.truncated & ~out.terminated)[rows].tolist()
            for j, (i, cut) in enumerate(zip(rows.tolist(), truncated, strict=True)):
                infos[i] = {"terminal_observation": _row(terminal, j), "TimeLimit.truncated": cut}
            self.user_model.reset_where(self.state, done)
        return self.user_model.observe(self.state), out.reward.astype(np.float32), done, infos

    def action_masks(self) -> np.ndarray:
        """(N, n_actions) masks, for sb3-contrib's MaskablePPO."""
        return self.user_model.action_masks(self.state)

    def close(self) -> None:
        self.state = None

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        value = getattr(self, attr_name, None) if attr_name != "render_mode" else None
        if value is None and attr_name not in ("render_mode",):
            raise AttributeError(f"ShopSimVecEnv has no attribute '{attr_name}'")
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        raise AttributeError(f"ShopSimVecEnv attributes are read-only (tried to set '{attr_name}')")

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        idx = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in idx]
        raise AttributeError(f"ShopSimVecEnv has no per-env method '{method_name}'")

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class ShopSimVectorEnv(gym.vector.VectorEnv):
    """Gymnasium ``VectorEnv`` of ``num_envs`` users, next-step autoreset (Gymnasium 1.x default)."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int, preset: str = "default", config: SimConfig | None = None,
                 **overrides: Any):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.config = config if config is not None else preset_config(preset, overrides)
        self.user_model = build_user_model(self.config)
        self.layout = self.user_model.layout
        self.num_envs = num_envs
        self.single_observation_space = self.user_model.observation_space
        self.single_action_space = self.user_model.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.state: Any = None
        self._autoreset = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int | Sequence[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed if isinstance(seed, (int, type(None))) else None)
        if seed is not None or self.state is None:
            keys = _slot_keys(seed, self.num_envs, self.np_random)
            self.state = self.user_model.init(keys, np.zeros(self.num_envs, dtype=np.int64))
        else:
            self.user_model.reset_where(self.state, np.ones(self.num_envs, dtype=bool))
        self._autoreset[:] = False
        return self.user_model.observe(self.state), {}

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self.state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        self.state, out = self.user_model.step(self.state, actions, inplace=True)
        reward, term, trunc = out.reward, out.terminated, out.truncated
        if self._autoreset.any():  # these users ended last step: this step starts their next life
            self.user_model.reset_where(self.state, self._autoreset)
            reward, term, trunc = (np.where(self._autoreset, 0, x) for x in (reward, term, trunc))
        self._autoreset = term | trunc
        info = {"click": out.click_pos >= 0, "purchase": out.purchase}
        return self.user_model.observe(self.state), reward, term, trunc, info


def _row(obs: Any, j: int) -> Any:
    if isinstance(obs, dict):
        return {k: v[j] for k, v in obs.items()}
    return obs[j]


def make_vec_env(preset: str = "default", n_users: int = 64, seed: int | None = None,
                 **overrides: Any) -> ShopSimVecEnv:
    """An SB3 VecEnv of ``n_users`` users of ``preset``; user i is seeded ``seed + i``."""
    return ShopSimVecEnv(n_users, preset=preset, seed=seed, **overrides)
