"""Typed, validated training configuration of the supervised recommenders.

One :class:`~driftrec.envs.config.Config` of knobs, a one-line doc and an allowed range each (as :class:`SimConfig`).
``driftrec train ... --set key=value`` overrides go through :func:`split_overrides`: a key of
:class:`SupervisedConfig` sets a training knob, any other key must be a :class:`SimConfig` key and
describes the simulator the log came from (its catalog and observation layout are the model's
features), so every mistake is one :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from driftrec.envs.config import Config, ConfigError, SimConfig, knob
from driftrec.envs.presets import PRESETS


@dataclasses.dataclass(frozen=True)
class SupervisedConfig(Config):
    """Knobs of data splitting, model size, optimisation, fine-tuning and deployed retraining."""

    label = "training"

    # --- the simulator the log came from ------------------------------------------------------
    preset: str = knob("default", "simulator preset the log was simulated with (catalog and feature layout)",
                       choices=tuple(PRESETS))

    # --- splits (chronological) ----------------------------------------------------------------
    holdout_frac: float = knob(0.2, "share of the examples, latest in time, held out for the offline metrics",
                               0.01, 0.9)
    val_frac: float = knob(0.1, "share of the training examples, latest in time, used for early stopping",
                           0.01, 0.9)

    # --- model -------------------------------------------------------------------------------------
    hidden: int = knob(64, "width of the scoring MLP's hidden layers", 1, 4096)
    layers: int = knob(2, "hidden layers of the scoring MLP (0 = logistic regression on the features)", 0, 16)
    dropout: float = knob(0.1, "dropout between hidden layers", 0.0, 0.9)
    item_ids: bool = knob(True, "learn a vector per item id (its hidden appeal), besides its category and price")
    embedding_dim: int = knob(32, "sequence models: width of item/behaviour token embeddings and the encoder",
                              2, 1024)
    cell: str = knob("gru", "recurrent model: 'gru' or 'lstm' cell", choices=("gru", "lstm"))
    heads: int = knob(2, "transformer: attention heads (must divide embedding_dim)", 1, 64)
    blocks: int = knob(1, "transformer: self-attention blocks", 1, 16)
    rank_weight: float = knob(1.0, "sequence models: weight of the next-item cross-entropy in the loss", 0.0, 100.0)
    event_windows: float = knob(1.0, "sequence models: share of training requests whose history window trains the "
                                     "next-event loss (every position in one causal pass); 0 = auto: the share that "
                                     "makes each history event a target about once per epoch (driftrec offline's "
                                     "default for logs without impressions)", 0.0, 1.0)
    softmax_samples: int = knob(0, "sequence models: 0 = next-item softmax over the whole catalog; N > 0 = a "
                                   "sampled softmax of N items per batch drawn by training frequency, log-Q "
                                   "corrected (for catalogs too big for a full one)", 0, 1_000_000)

    # --- optimisation ------------------------------------------------------------------------------
    epochs: int = knob(20, "maximum training epochs", 1, 10_000)
    patience: int = knob(3, "early stopping: epochs without a better validation loss before stopping", 1, 1000)
    batch_size: int = knob(512, "examples per gradient step", 1, 1_000_000)
    lr: float = knob(3e-3, "Adam learning rate", 1e-6, 1.0)
    weight_decay: float = knob(1e-5, "Adam (L2) weight decay", 0.0, 1.0)
    click_pos_weight: float = knob(0.0, "weight of click positives in the loss (0 = balanced: negatives / "
                                        "positives); predictions are corrected back to calibrated probabilities",
                                   0.0, 1e6)
    purchase_pos_weight: float = knob(0.0, "weight of purchase positives among clicks (0 = balanced)", 0.0, 1e6)

    # --- fine-tuning (finetune_days) and retraining while deployed (see adapt.py) -------------------
    finetune_epochs: int = knob(5, "maximum fine-tuning epochs on the recent window (early-stopped)", 1, 10_000)
    finetune_lr_scale: float = knob(0.3, "fine-tuning and retraining learning rate = lr * this (with finetune_search "
                                         "the centre of the searched scales)", 1e-4, 10.0)
    finetune_search: bool = knob(True, "fine-tuning: choose the learning rate (finetune_lr_scale x 1/3, 1, 3) and "
                                       "the window (x 1/2, 1, 2) on the recent validation slice; false: one fit")
    finetune_val_frac: float = knob(0.25, "fine-tuning: newest share of the recent window held out to early-stop, "
                                          "choose and recalibrate the fine-tune", 0.01, 0.9)
    finetune_replay: float = knob(1.0, "fine-tuning and retraining: older examples replayed per recent example, so "
                                       "what still holds is not forgotten (0 = none)", 0.0, 100.0)
    retrain_every_days: float = knob(1.0, "deployed retraining: refit every this many simulated days", 0.01, 3650.0)
    retrain_window_days: float = knob(7.0, "deployed retraining: refit on the examples of the newest this many days",
                                      0.01, 3650.0)
    retrain_epochs: int = knob(5, "deployed retraining: maximum epochs per refit (early-stopped)", 1, 1000)
    retrain_val_frac: float = knob(0.25, "deployed retraining: newest share of a refit's window held out; the refit "
                                         "replaces the deployed model only if it lowers the loss there", 0.01, 0.9)

    # --- metrics -------------------------------------------------------------------------------------
    threshold: float = knob(0.5, "probability threshold of accuracy, precision, recall and F1", 0.0, 1.0)
    top_k: int = knob(10, "cut-off of HR@k and NDCG@k", 1, 10_000)

    def check(self) -> None:
        """The transformer's heads must divide its embedding width."""
        if self.embedding_dim % self.heads:
            raise ConfigError(f"config key 'heads' ({self.heads}) must divide embedding_dim ({self.embedding_dim})")


def split_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``--set`` overrides into (training keys, simulator keys); a key of neither raises
    :class:`ConfigError` naming it (with the closest known key when there is one)."""
    train_keys = {f.name for f in dataclasses.fields(SupervisedConfig)}
    sim_keys = {f.name for f in dataclasses.fields(SimConfig)}
    train, sim = {}, {}
    for key, value in overrides.items():
        if key in train_keys:
            train[key] = value
        elif key in sim_keys:
            sim[key] = value
        else:
            close = difflib.get_close_matches(str(key), sorted(train_keys | sim_keys), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "; see SupervisedConfig or `driftrec presets --keys`"
            raise ConfigError(f"unknown override key '{key}': neither a training nor a simulator key{hint}")
    return train, sim
