"""driftrec.envs: the ShopSim simulator, its presets and its Gymnasium / SB3 environments.

Importing this package registers ``driftrec/ShopSim-v0``::

    import gymnasium as gym
    import driftrec.envs
    env = gym.make("driftrec/ShopSim-v0", preset="default", slate_size=3)
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.presets import PRESETS, preset_config

ENV_ID = "driftrec/ShopSim-v0"

if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point="driftrec.envs.shopsim:ShopSimEnv",
                 vector_entry_point="driftrec.envs.vector:ShopSimVectorEnv")

# name -> the module that defines it, loaded on first use: the simulator compiles numba kernels
# and the vector shells import stable-baselines3 and so torch (seconds), which the configs, the
# presets and `driftrec --help` don't need
_LAZY = {"ShopSimEnv": "driftrec.envs.shopsim", "build_user_model": "driftrec.envs.user_model",
         "user_model_for": "driftrec.envs.user_model", "ShopSimVecEnv": "driftrec.envs.vector",
         "ShopSimVectorEnv": "driftrec.envs.vector",
         "make_vec_env": "driftrec.envs.vector"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'driftrec.envs' has no attribute '{name}'")


__all__ = ["ENV_ID", "PRESETS", "ConfigError", "ShopSimEnv", "ShopSimVecEnv", "ShopSimVectorEnv",
           "SimConfig", "build_user_model", "make_vec_env", "user_model_for", "preset_config"]
