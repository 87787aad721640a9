"""Sequence feature extractors for ``history`` observations (SB3 ``BaseFeaturesExtractor``).

A ``history`` observation is a Dict of ``features`` (the flat float32 vector), ``item_ids`` (the
last ``history_len`` item ids, oldest first, ``n_items`` pads) and ``behaviours`` (their codes,
0 pads; 1 search ... 6 purchase). Both extractors embed each event as (item embedding +
behaviour embedding), encode the sequence, and concatenate the summary with the ``features``
vector, projected to ``features_dim``:

- :class:`GRUExtractor`: a GRU over the events; the summary is its last hidden state (the
  newest event is last, so it is read last; GRU4Rec, Hidasi et al. 2016).
- :class:`AttentionExtractor`: a small Transformer encoder (self-attention, learned positions)
  with a learned summary token in front that every event may attend to (SASRec, Kang & McAuley
  2018, with a BERT-style summary token): padding is masked out, and the summary token is never
  masked, so a user with no events yet gets a finite summary instead of attention over nothing.

SB3 one-hot encodes ``MultiDiscrete`` observations before an extractor sees them
(``preprocess_obs``); the extractors recover the ids with ``argmax``, which costs
``history_len * (n_items + 1)`` floats per observation: fine for catalogs up to ~10^4 items.
In YAML: ``policy_kwargs: {features_extractor: gru, features_extractor_kwargs: {hidden_dim: 64}}``.
"""

from __future__ import annotations

import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

HISTORY_KEYS = ("features", "item_ids", "behaviours")


def _history_sizes(observation_space: spaces.Space) -> tuple[int, int, int, int]:
    """(n_features, history_len, item vocabulary incl. pad, behaviour vocabulary incl. pad)."""
    if not isinstance(observation_space, spaces.Dict) or set(observation_space.spaces) != set(HISTORY_KEYS):
        raise ValueError(f"sequence extractors need the 'history' observation (a Dict of {', '.join(HISTORY_KEYS)}); "
                         f"got {observation_space}: set obs_mode=history")
    features, items, behaviours = (observation_space[k] for k in HISTORY_KEYS)
    return (int(features.shape[0]), int(items.nvec.shape[0]), int(items.nvec[0]), int(behaviours.nvec[0]))


class _SequenceExtractor(BaseFeaturesExtractor):
    """Shared part: event embeddings in, (sequence summary ++ features) -> Linear -> ReLU out."""

    def __init__(self, observation_space: spaces.Dict, features_dim: int, summary_dim: int,
                 item_dim: int, behaviour_dim: int):
        super().__init__(observation_space, features_dim)
        self.n_features, self.history_len, self.n_item_ids, self.n_behaviours = _history_sizes(observation_space)
        # the pad id is the last item id (n_items) and behaviour code 0: both get a zero embedding
        self.item_embedding = nn.Embedding(self.n_item_ids, item_dim, padding_idx=self.n_item_ids - 1)
        self.behaviour_embedding = nn.Embedding(self.n_behaviours, behaviour_dim, padding_idx=0)
        self.head = nn.Sequential(nn.Linear(summary_dim + self.n_features, features_dim), nn.ReLU())

    def _ids(self, observations: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H) item ids and behaviour codes, back from SB3's one-hot encoding."""
        batch = observations["features"].shape[0]
        items = observations["item_ids"].reshape(batch, self.history_len, self.n_item_ids).argmax(-1)
        behaviours = observations["behaviours"].reshape(batch, self.history_len, self.n_behaviours).argmax(-1)
        return items, behaviours

    def _events(self, items: torch.Tensor, behaviours: torch.Tensor) -> torch.Tensor:
        """(B, H, item_dim + behaviour_dim) event embeddings."""
        return torch.cat([self.item_embedding(items), self.behaviour_embedding(behaviours)], dim=-1)

    def _summary(self, events: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        items, behaviours = self._ids(observations)
        summary = self._summary(self._events(items, behaviours), behaviours == 0)
        return self.head(torch.cat([summary, observations["features"]], dim=-1))


class GRUExtractor(_SequenceExtractor):
    """GRU over the history events; its last hidden state ++ ``features`` -> ``features_dim``.

    :param observation_space: the ``history`` Dict space
    :param features_dim: output size
    :param hidden_dim: GRU hidden size
    :param item_dim: item-id embedding size
    :param behaviour_dim: behaviour-code embedding size
    """

    def __init__(self, observation_space: spaces.Dict, features_dim: int = 128, hidden_dim: int = 64,
                 item_dim: int = 32, behaviour_dim: int = 8):
        super().__init__(observation_space, features_dim, hidden_dim, item_dim, behaviour_dim)
        self.gru = nn.GRU(item_dim + behaviour_dim, hidden_dim, batch_first=True)

    def _summary(self, events: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        # Padding is at the front (oldest slots) and embeds to zeros, the same inputs for every
        # user, so the events that follow are read last and no sequence packing is needed.
        _, last = self.gru(events)
        return last[-1]


class AttentionExtractor(_SequenceExtractor):
    """Self-attention over the history events with a summary token; its output ++ ``features``
    -> ``features_dim``.

    :param observation_space: the ``history`` Dict space
    :param features_dim: output size
    :param d_model: attention width (item_dim + behaviour_dim are projected to it)
    :param n_heads: attention heads
    :param n_layers: encoder layers
    :param item_dim: item-id embedding size
    :param behaviour_dim: behaviour-code embedding size
    """

    def __init__(self, observation_space: spaces.Dict, features_dim: int = 128, d_model: int = 32,
                 n_heads: int = 2, n_layers: int = 1, item_dim: int = 32, behaviour_dim: int = 8):
        super().__init__(observation_space, features_dim, d_model, item_dim, behaviour_dim)
        self.project = nn.Linear(item_dim + behaviour_dim, d_model)
        self.position = nn.Parameter(torch.zeros(1, self.history_len + 1, d_model))
        self.summary_token = nn.Parameter(torch.zeros(1, 1, d_model))
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.summary_token, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward=2 * d_model, dropout=0.0,
                                           batch_first=True, norm_first=True)
        # enable_nested_tensor is an inference fast path that norm_first layers cannot use
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def _summary(self, events: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        batch = events.shape[0]
        tokens = torch.cat([self.summary_token.expand(batch, -1, -1), self.project(events)], dim=1) + self.position
        keep = torch.zeros(batch, 1, dtype=torch.bool, device=pad.device)  # the summary token is never padding
        encoded = self.encoder(tokens, src_key_padding_mask=torch.cat([keep, pad], dim=1))
        return encoded[:, 0]


FEATURE_EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {
    "gru": GRUExtractor,
    "attention": AttentionExtractor,
}
"""YAML name (``policy_kwargs: {features_extractor: NAME}``) -> extractor class."""
