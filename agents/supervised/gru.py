"""Recurrent sequence recommender: a GRU (or LSTM, ``cell=lstm``) over the user's recent events.

The sequence is the ``history`` observation: the last ``history_len`` clicks, carts, purchases,
searches and views, oldest first, each embedded as item id + behaviour + the item's category
(a search has no item id, only its behaviour; empty slots are padding tokens at the start, which
the recurrence reads like any token, identically in training and serving). The final hidden
state, concatenated with the observation's user features, is the user representation for

- the shared click / purchase-given-click head (as the MLP), and
- a next-item head: softmax over the catalog tied to the item embeddings, trained with
  cross-entropy on the clicked impressions (GRU4Rec, Hidasi et al. 2016, without its session
  batching: each example carries its own window).
"""

from __future__ import annotations

import torch
from torch import nn

from driftrec.agents.supervised.base import ItemTokens, NextItemHead, SupervisedNetwork, register
from driftrec.agents.supervised.config import SupervisedConfig
from driftrec.agents.supervised.data import FeatureSpec


@register
class RecurrentNetwork(SupervisedNetwork):
    """GRU or LSTM over the event history, with click, purchase and next-item heads."""

    kind = "gru"
    sequence = True

    def __init__(self, spec: FeatureSpec, cfg: SupervisedConfig):
        super().__init__(spec, cfg)
        dim = cfg.embedding_dim
        self.tokens = ItemTokens(spec, dim)
        cell = nn.GRU if cfg.cell == "gru" else nn.LSTM
        self.rnn = cell(dim, dim, batch_first=True)
        repr_dim = spec.user_dim + dim
        self.build_head(repr_dim)
        self.next_item = NextItemHead(repr_dim, self.tokens, cfg.softmax_samples)

    def encode(self, user: torch.Tensor, hist_item: torch.Tensor,
               hist_beh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out, _ = self.rnn(self.tokens(hist_item, hist_beh))
        return torch.cat([user, out[:, -1]], dim=1), out
