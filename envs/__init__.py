"""driftrec.envs: the ShopSim simulator, its presets and its Gymnasium / SB3 environments.

Importing this package registers ``driftrec/ShopSim-v0``::

    import gymnasium as gym
    import driftrec.envs
    env = gym.make("driftrec/ShopSim-v0", preset="default", slate_size=3)
"""

import gymnasium as gym

from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.model import build_model, model_for
from driftrec.envs.presets import PRESETS, preset_config
from driftrec.envs.shopsim import ShopSimEnv
from driftrec.envs.vector import ShopSimVecEnv, ShopSimVectorEnv, make_vec_env

ENV_ID = "driftrec/ShopSim-v0"

if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point="driftrec.envs.shopsim:ShopSimEnv",
                 vector_entry_point="driftrec.envs.vector:ShopSimVectorEnv")

__all__ = ["ENV_ID", "PRESETS", "ConfigError", "ShopSimEnv", "ShopSimVecEnv", "ShopSimVectorEnv",
           "SimConfig", "build_model", "make_vec_env", "model_for", "preset_config"]
