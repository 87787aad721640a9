"""The supervised model kinds by name: :func:`make_network` and :func:`load_network`.

Each model module registers its class in :data:`driftrec.agents.supervised.base.NETWORKS` when
imported (:func:`~driftrec.agents.supervised.base.register`); this module imports them all, so
that the registry is full wherever models are made or loaded by name.
"""

from __future__ import annotations

from pathlib import Path

import torch

from driftrec.agents.model_file import ModelFileError, check_supervised_file, unreadable
from driftrec.agents.supervised import gru, mlp, transformer  # noqa: F401  (register the model kinds)
from driftrec.agents.supervised.base import CHECKPOINT_FORMAT, NETWORKS, SupervisedNetwork
from driftrec.agents.supervised.config import SupervisedConfig
from driftrec.agents.supervised.data import FeatureSpec
from driftrec.envs.config import ConfigError, SimConfig

__all__ = ["NETWORKS", "load_network", "make_network"]


def make_network(kind: str, spec: FeatureSpec, cfg: SupervisedConfig, seed: int = 0) -> SupervisedNetwork:
    """A fresh model of ``kind`` (seeded initial weights); unknown kinds raise ConfigError."""
    if kind not in NETWORKS:
        raise ConfigError(f"unknown supervised model '{kind}'; choose one of: {', '.join(sorted(NETWORKS))}")
    torch.manual_seed(seed)
    return NETWORKS[kind](spec, cfg)


def load_network(path: str | Path) -> SupervisedNetwork:
    """The model saved at ``path`` by :meth:`SupervisedNetwork.save`; a missing, truncated or foreign
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
    network = make_network(ckpt["kind"], spec, SupervisedConfig.from_dict(ckpt["train_config"]))
    network.load_state_dict(ckpt["state_dict"])
    network.uses_demographics = bool(ckpt.get("uses_demographics", False))  # older checkpoints: trained without
    network.eval()
    return network
