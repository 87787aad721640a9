"""Choosing the user model a config names. Every model offers the same batched interface:

``init(slot_key, episode) -> state``, ``step(state, action, inplace) -> (state, StepOutput)``,
``observe(state)``, ``reset_where(state, mask)``, ``action_masks(state)``, and the single-user
``observation_space``, ``action_space`` and ``layout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftrec.envs.config import SimConfig
from driftrec.envs.presets import preset_config
from driftrec.envs.recsim_ie import RecSimIEModel
from driftrec.envs.shop import ShopModel


def build_user_model(cfg: SimConfig) -> Any:
    """The user model for ``cfg``: ShopSim or RecSim interest evolution."""
    if cfg.model == "recsim-ie":
        return RecSimIEModel(cfg)
    return ShopModel(cfg)


def user_model_for(preset: str = "default", overrides: Mapping[str, Any] | None = None) -> Any:
    """Shortcut: the model of a preset with overrides."""
    return build_user_model(preset_config(preset, overrides))
