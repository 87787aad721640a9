"""driftrec.envs: the ShopSim simulator, its presets and its Gymnasium / SB3 environments.

Importing this package registers ``driftrec/ShopSim-v0``::

    import gymnasium as gym
    import driftrec.envs
    env = gym.make("driftrec/ShopSim-v0", preset="default", slate_size=3)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.model import build_model, model_for
from driftrec.envs.presets import PRESETS, preset_config
from driftrec.envs.shopsim import ShopSimEnv

ENV_ID = "driftrec/ShopSim-v0"

if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point="driftrec.envs.shopsim:ShopSimEnv",
                 vector_entry_point="driftrec.envs.vector:ShopSimVectorEnv")

_VECTOR = ("ShopSimVecEnv", "ShopSimVectorEnv", "make_vec_env")


def __getattr__(name: str) -> Any:
    # The vector shells import stable-baselines3 and so torch (seconds); load them on first use so
    # `driftrec simulate` and `gym.make` don't pay for it.
    if name in _VECTOR:
        from driftrec.envs import vector

        return getattr(vector, name)
    raise AttributeError(f"module 'driftrec.envs' has no attribute '{name}'")


__all__ = ["ENV_ID", "PRESETS", "ConfigError", "ShopSimEnv", "ShopSimVecEnv", "ShopSimVectorEnv",
           "SimConfig", "build_model", "make_vec_env", "model_for", "preset_config"]
