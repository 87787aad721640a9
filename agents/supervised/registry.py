"""The supervised model kinds by name: :func:`make_model` and :func:`load_model`.

Each model module registers its class in :data:`driftrec.agents.supervised.base.MODELS` when
imported (:func:`~driftrec.agents.supervised.base.register`); this module imports them all, so
that the registry is full wherever models are made or loaded by name.
"""

from __future__ import annotations

from pathlib import Path

import torch

from driftrec.agents.model_file import ModelFileError, check_supervised_file, unreadable
from driftrec.agents.supervised import gru, mlp, transformer  # noqa: F401  (register the model kinds)
from driftrec.agents.supervised.base import CHECKPOINT_FORMAT, MODELS, SupervisedModel
from driftrec.agents.supervised.config import SupervisedConfig
from driftrec.agents.supervised.data import FeatureSpec
from driftrec.envs.config import ConfigError, SimConfig

__all__ = ["MODELS", "load_model", "make_model"]


def make_model(kind: str, spec: FeatureSpec, cfg: SupervisedConfig, seed: int = 0) -> SupervisedModel:
    """A fresh model of ``kind`` (seeded initial weights); unknown kinds raise ConfigError."""
    if kind not in MODELS:
        raise ConfigError(f"unknown supervised model '{kind}'; choose one of: {', '.join(sorted(MODELS))}")
    torch.manual_seed(seed)
    return MODELS[kind](spec, cfg)


def load_model(path: str | Path) -> SupervisedModel:
    """The model saved at ``path`` by :meth:`SupervisedModel.save`; a missing, truncated or foreign
    file raises :class:`~driftrec.agents.model_file.ModelFileError` (one line naming the file)."""
    path = check_supervised_file(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a corrupt or foreign file
        raise unreadable(path, "supervised model", err) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"model file '{path}': not a driftrec supervised model (format {CHECKPOINT_FORMAT})")
    if "log_spec" in ckpt:
        spec = FeatureSpec.from_state(ckpt["log_spec"])
    else:
        spec = FeatureSpec.from_config(SimConfig.from_dict(ckpt["sim_config"]))
    model = make_model(ckpt["kind"], spec, SupervisedConfig.from_dict(ckpt["train_config"]))
    model.load_state_dict(ckpt["state_dict"])
    model.uses_demographics = bool(ckpt.get("uses_demographics", False))  # older checkpoints: trained without
    model.eval()
    return model
