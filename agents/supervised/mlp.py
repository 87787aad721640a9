"""Multi-task MLP (or logistic, ``layers=0``) recommender on the observation's features.

The user representation is the user part of the ``features`` observation itself (demographics
from the log's users table, calendar, session context, events, decayed per-category counts, last
interactions; see :mod:`driftrec.agents.supervised.data`), so the shared scoring head *is* the MLP: its input
is those features, the item's category, price and id, and the user x item cross features. Two
outputs: P(click) and P(purchase | click), class-weighted (``click_pos_weight``,
``purchase_pos_weight``). Next-item ranking scores the catalog by P(click).
"""

from __future__ import annotations

import torch

from driftrec.agents.supervised.base import SupervisedNetwork, register
from driftrec.agents.supervised.config import SupervisedConfig
from driftrec.agents.supervised.data import FeatureSpec


@register
class MLPNetwork(SupervisedNetwork):
    """Feature MLP with click and purchase heads; a logistic model with ``layers=0``."""

    kind = "mlp"
    sequence = False

    def __init__(self, spec: FeatureSpec, cfg: SupervisedConfig):
        super().__init__(spec, cfg)
        self.build_head(spec.user_dim)

    def encode(self, user: torch.Tensor, hist_item: torch.Tensor,
               hist_beh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return user, None
