"""Transformer sequence recommender: causal self-attention over the user's recent events.

Tokens as in the recurrent model (item id + behaviour + category of each history event, oldest
first) plus a learned position embedding, followed by one *query* token made from the
observation's user features (SASRec, Kang and McAuley 2018, with the context as the last token).
Attention is causal (a token sees itself and older ones) and skips empty history slots; every
token may always attend to itself, so a row of padding never leaves a softmax with nothing to
attend to (which would give NaN). The query token's output, concatenated with the user
features, is the user representation for the shared click / purchase head and the next-item
head (tied item embeddings, cross-entropy on clicked impressions).
"""

from __future__ import annotations

import torch
from torch import nn

from driftrec.agents.supervised.base import ItemTokens, NextItemHead, SupervisedNetwork, register
from driftrec.agents.supervised.config import SupervisedConfig
from driftrec.agents.supervised.data import FeatureSpec
from driftrec.envs.state import PAD


@register
class TransformerNetwork(SupervisedNetwork):
    """Causal self-attention over the event history, with click, purchase and next-item heads."""

    kind = "transformer"
    sequence = True

    def __init__(self, spec: FeatureSpec, cfg: SupervisedConfig):
        super().__init__(spec, cfg)
        dim = cfg.embedding_dim
        self.tokens = ItemTokens(spec, dim)
        self.query = nn.Linear(spec.user_dim, dim)
        self.positions = nn.Parameter(torch.randn(spec.history_len + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, cfg.heads, dim_feedforward=2 * dim, dropout=cfg.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        length = spec.history_len + 1
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)  # True = may not attend
        self.register_buffer("causal", causal, persistent=False)
        repr_dim = spec.user_dim + dim
        self.build_head(repr_dim)
        self.next_item = NextItemHead(repr_dim, self.tokens, cfg.softmax_samples)

    def encode(self, user: torch.Tensor, hist_item: torch.Tensor,
               hist_beh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        b = user.shape[0]
        x = torch.cat([self.tokens(hist_item, hist_beh), self.query(user)[:, None]], dim=1) + self.positions
        empty = torch.cat([hist_beh == PAD, torch.zeros(b, 1, dtype=torch.bool)], dim=1)  # (B, L) keys to skip
        blocked = self.causal[None] | empty[:, None, :]
        blocked = blocked & ~torch.eye(blocked.shape[-1], dtype=torch.bool)[None]  # always see yourself
        mask = blocked.repeat_interleave(self.cfg.heads, dim=0)  # (B * heads, L, L)
        out = self.norm(self.encoder(x, mask=mask))
        return torch.cat([user, out[:, -1]], dim=1), out[:, :-1]
