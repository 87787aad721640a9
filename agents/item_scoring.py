"""Item-scoring policies for the SB3 agents: one score function shared by every item.

A flat policy network (``MlpPolicy``) maps a user's observation to one output per catalog item,
so nothing learned about one item transfers to another, and a 500-item catalog needs 500
separately learned outputs. Here the score of item ``i`` for a user is

    score(u, i) = phi_h(u) . psi(i) + b(i) + kappa_h(u)[category(i)] (+ v_h(u) for value heads)

- **user encoding** ``u``: SB3's features extractor (the flat ``features`` vector, or for ``history``
  observations the GRU / attention extractor of :mod:`driftrec.agents.extractors`) followed by an
  MLP (``net_arch``); ``phi_h(u)`` is a linear map of it into the item space (one per head ``h``);
- **item representation** ``psi(i) = E[i] + A f(i)``: a learned item embedding (``item_ids``) plus a
  linear map of the item's observable features ``f(i)`` (category one-hot, clipped log relative
  price: ``world.category``, ``world.price_feature``); ``b(i)`` is a learned per-item bias plus a
  linear map of ``f(i)`` (how good an item is for everyone: its hidden appeal and quality);
- **category term** ``kappa_h(u)[c] = w_h(u) . X(u)[:, c]`` (``cross_features``): the observation's
  per-category columns (decayed impressions, clicks, purchases, organic events; the calendar event
  flag; each recent interaction's category, one column per behaviour), weighted by weights the
  user encoding chooses. The same weights serve every category, so "recommend what the user just
  searched for" is learned once, not once per category (the supervised models' cross features,
  :mod:`driftrec.agents.supervised.base`, do the same);
- **heads**: actor logits of PPO / A2C / MaskablePPO (one head; a slate of K positions has K heads
  that share the item scores and add a per-position term ``(P_k u) . psi(i)``, zero at the start),
  Q-values of DQN (one head plus a state value ``v(u)``: a dueling split, Wang et al. 2016), the
  quantiles of QR-DQN (one head per quantile, each with its own state value).

Every term is a (users x dim) @ (dim x items) product or a gather by category, so scoring the
whole catalog costs about as much as the flat MLP's last layer.

**Candidates mode.** The observation holds the M candidates' features (category one-hot, price)
but not their item ids (a feature vector does not name an item), so candidates are scored from
their features alone: ``psi = A f``, ``b = a . f``, the category term of their category. The item
embeddings exist only in catalog mode.

**The catalog travels in ``policy_kwargs``.** :func:`catalog_kwargs` turns a ShopSim model into a
plain mapping (item categories and price features as lists, the observation columns of the
per-category parts); :func:`driftrec.agents.rl.build_agent` adds it as ``policy_kwargs['catalog']``.
SB3 saves ``policy_kwargs`` with the model and ``load`` rebuilds the policy from them, so a saved
agent loads without the simulator; the item features are also buffers of the state dict.

Selection (see :mod:`driftrec.agents.rl`): ``policy: ItemScoringPolicy`` in the hyperparameter
YAML, for every algorithm and both observation modes; :func:`item_scoring_policy` gives the
algorithm's class. ``policy_kwargs`` keys besides SB3's: ``embedding_dim``, ``item_ids``,
``cross_features``; for DQN and QR-DQN also ``layer_norm``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.qrdqn.policies import QRDQNPolicy, QuantileNetwork
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, MlpExtractor, create_mlp
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn

from driftrec.agents.extractors import GRUExtractor
from driftrec.envs.state import BEHAVIOURS

__all__ = ["ITEM_SCORING_POLICY", "ItemScorer", "ItemScoringActorCriticPolicy", "ItemScoringDQNPolicy",
           "ItemScoringExtractor", "ItemScoringMaskablePolicy", "ItemScoringQRDQNPolicy", "catalog_kwargs",
           "item_scoring_policy"]

ITEM_SCORING_POLICY = "ItemScoringPolicy"
"""The name of the item-scoring policies in the hyperparameter YAML (``policy: ItemScoringPolicy``)."""

_PER_CATEGORY_PARTS = ("counts", "events", "last_interactions", "candidates")


# ------------------------------------------------------------------------------------- the catalog
def catalog_kwargs(user_model: Any) -> dict[str, Any]:
    """The catalog and observation layout an item-scoring policy needs, as plain YAML/JSON values.

    ``item_category`` (I,) and ``item_price`` (I,) (the clipped log relative price of the
    observation), ``n_categories``, ``n_behaviours``, ``last_interactions``, ``n_candidates`` (0 in
    catalog mode), and ``columns``: the ``[start, stop)`` columns of the ``features`` vector that
    hold per-category parts (``counts``, ``events``, ``last_interactions``, ``candidates``; absent
    parts are left out). Raises ValueError for a user model without a ShopSim catalog.
    """
    world, layout = getattr(user_model, "world", None), getattr(user_model, "layout", None)
    if world is None or not hasattr(world, "price_feature") or layout is None or "counts" not in layout:
        name = getattr(getattr(user_model, "cfg", None), "model", type(user_model).__name__)
        raise ValueError(f"item-scoring policies need the ShopSim catalog and observation layout; "
                         f"user model '{name}' has none (use MlpPolicy)")
    cfg = user_model.cfg
    columns = {name: [int(layout[name].start), int(layout[name].stop)]
               for name in _PER_CATEGORY_PARTS if name in layout}
    return {
        "n_categories": int(cfg.n_categories),
        "n_behaviours": len(BEHAVIOURS),
        "last_interactions": int(cfg.last_interactions),
        "n_candidates": int(user_model.m),
        "columns": columns,
        "item_category": [int(c) for c in np.asarray(world.category)],
        "item_price": [float(p) for p in np.asarray(world.price_feature, dtype=np.float32)],
    }


def _check_catalog(catalog: Mapping[str, Any], action_space: spaces.Space) -> tuple[int, int]:
    """(actions per slate position, slate positions); ValueError when the catalog and the action
    space disagree."""
    if isinstance(action_space, spaces.Discrete):
        n, k = int(action_space.n), 1
    elif isinstance(action_space, spaces.MultiDiscrete) and action_space.nvec.ndim == 1 \
            and len(set(action_space.nvec.tolist())) == 1:
        n, k = int(action_space.nvec[0]), int(action_space.nvec.size)
    else:
        raise ValueError(f"item-scoring policies need a Discrete or MultiDiscrete([n] * K) action space, "
                         f"got {action_space}")
    expected = int(catalog["n_candidates"]) or len(catalog["item_category"])
    if n != expected:
        what = "candidates per request" if catalog["n_candidates"] else "catalog items"
        raise ValueError(f"the catalog in policy_kwargs has {expected} {what} but the action space has {n} "
                         "actions per slate position: it comes from another simulator config")
    return n, k


# ------------------------------------------------------------------------------------- features
class ItemScoringExtractor(BaseFeaturesExtractor):
    """The user-side features: the observation itself (``features`` mode), or for ``history``
    observations a sequence extractor's output followed by the raw ``features`` vector.

    The scorer reads the per-category columns of the raw vector at ``raw_start`` (see
    :class:`ItemScorer`), so they must come through unprojected.

    :param observation_space: a Box (``features``) or the ``history`` Dict
    :param sequence: the sequence extractor class for ``history`` (default :class:`GRUExtractor`)
    :param sequence_kwargs: its keyword arguments
    :param sequence_encoder: False: no sequence extractor on ``history`` (the user encoding reads
        the ``features`` vector; the history reaches the scores through the item term only)
    """

    def __init__(self, observation_space: spaces.Space, sequence: type[BaseFeaturesExtractor] | None = None,
                 sequence_kwargs: dict[str, Any] | None = None, sequence_encoder: bool = True):
        self.history_len = 0
        if isinstance(observation_space, spaces.Dict):
            inner = (sequence or GRUExtractor)(observation_space, **(sequence_kwargs or {})) if sequence_encoder \
                else None
            n_raw = int(observation_space["features"].shape[0])
            self.history_len = int(observation_space["item_ids"].nvec.size)
            self.n_item_ids = int(observation_space["item_ids"].nvec[0])  # n_items + 1 (the pad)
            self.n_behaviour_codes = int(observation_space["behaviours"].nvec[0])
            inner_dim = inner.features_dim if inner is not None else 0
            super().__init__(observation_space, inner_dim + n_raw + 2 * self.history_len)
            self.sequence: BaseFeaturesExtractor | None = inner
            self.raw_start = inner_dim
        else:
            if sequence is not None:
                raise ValueError("a sequence extractor reads history observations: set obs_mode=history")
            n_raw = int(np.prod(observation_space.shape))
            super().__init__(observation_space, n_raw)
            self.sequence = None
            self.raw_start = 0
        self.n_raw = n_raw
        self.history_start = self.raw_start + n_raw  # the history's item ids, then its behaviour codes

    def forward(self, observations: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.history_len:
            assert isinstance(observations, torch.Tensor)
            return observations.flatten(1)
        assert isinstance(observations, dict)
        b, h = observations["features"].shape[0], self.history_len
        # SB3 one-hot encodes MultiDiscrete observations; the ids come back as exact small floats
        ids = observations["item_ids"].reshape(b, h, self.n_item_ids).argmax(-1)
        codes = observations["behaviours"].reshape(b, h, self.n_behaviour_codes).argmax(-1)
        parts = [observations["features"], ids.float(), codes.float()]
        if self.sequence is not None:
            parts.insert(0, self.sequence(observations))
        return torch.cat(parts, dim=1)


def _wrap_extractor(observation_space: spaces.Space, cls: type[BaseFeaturesExtractor] | None,
                    kwargs: dict[str, Any] | None) -> tuple[type[BaseFeaturesExtractor], dict[str, Any]]:
    """SB3's ``features_extractor_class`` / ``_kwargs`` -> the :class:`ItemScoringExtractor` around them."""
    if cls is ItemScoringExtractor:
        return cls, dict(kwargs or {})
    if cls in (None, FlattenExtractor):
        if kwargs:
            raise ValueError(f"features_extractor_kwargs {kwargs} given without a sequence extractor")
        return ItemScoringExtractor, {}
    if not isinstance(observation_space, spaces.Dict):
        raise ValueError(f"{cls.__name__} reads history observations: set obs_mode=history")
    return ItemScoringExtractor, {"sequence": cls, "sequence_kwargs": dict(kwargs or {})}


# ------------------------------------------------------------------------------------- the scorer
class ItemScorer(nn.Module):
    """Scores of every action (catalog item or request candidate) from the extracted features.

    ``forward(features)`` -> (B, heads * n_actions), head-major: head ``h``'s scores are columns
    ``h * n_actions : (h + 1) * n_actions`` (SB3's MultiCategorical split for a slate, QR-DQN's
    ``view(-1, n_quantiles, n_actions)`` for quantiles). See the module doc for the formula.

    :param features_dim: width of the extracted features
    :param raw_start: where the raw ``features`` vector starts within them
    :param catalog: :func:`catalog_kwargs` of the simulator
    :param n_actions: actions per head (catalog size or candidates per request)
    :param heads: slate positions, quantiles, or 1
    :param net_arch: hidden layers of the user MLP
    :param activation_fn: its activation
    :param embedding_dim: width of the item space
    :param item_ids: learn an embedding and a bias per item id (catalog mode only)
    :param cross_features: add the per-category term
    :param state_value: add a per-head state value ``v_h(u)`` (value-based heads)
    :param head_residuals: per-head projections on top of a shared one (slates, quantiles)
    :param init_scale: std of the shared projection's initial weights (small: near-uniform logits)
    :param history: (start column, length, behaviour codes) of a history's item ids, or None
    :param layer_norm: a LayerNorm after each hidden layer of the user MLP, before its activation
        (steadier bootstrapped targets for the value-based heads)
    """

    def __init__(self, features_dim: int, raw_start: int, catalog: Mapping[str, Any], n_actions: int, heads: int,
                 net_arch: list[int], activation_fn: type[nn.Module], embedding_dim: int = 32,
                 item_ids: bool = True, cross_features: bool = True, state_value: bool = False,
                 head_residuals: bool = False, init_scale: float = 0.01, history: tuple[int, int, int] | None = None,
                 layer_norm: bool = False):
        super().__init__()
        c = int(catalog["n_categories"])
        columns = {k: tuple(v) for k, v in dict(catalog["columns"]).items()}
        self.n_categories, self.n_actions, self.heads = c, int(n_actions), int(heads)
        self.n_candidates = int(catalog["n_candidates"])
        self.n_last, self.n_behaviours = int(catalog["last_interactions"]), int(catalog["n_behaviours"])
        self.raw_start = int(raw_start)
        self.columns = columns
        self.embedding_dim = int(embedding_dim)
        # the user MLP reads the user's columns only: not the history's raw item ids and codes, nor
        # the candidates' features (a candidate's score is a function of its own features, whatever
        # slot it came in)
        self.user_columns = history[0] if history else features_dim
        user_index = torch.arange(self.user_columns)
        if "candidates" in columns:
            start, stop = columns["candidates"]
            user_index = user_index[(user_index < raw_start + start) | (user_index >= raw_start + stop)]
        self.register_buffer("user_index", user_index, persistent=False)
        layers = create_mlp(len(user_index), -1, list(net_arch), activation_fn)
        if layer_norm:  # each hidden layer normalised before its activation
            layers = [m for layer in layers for m in
                      ((layer, nn.LayerNorm(layer.out_features)) if isinstance(layer, nn.Linear) else (layer,))]
        self.user = nn.Sequential(*layers)
        user_dim = int(net_arch[-1]) if net_arch else len(user_index)
        self.project = nn.Linear(user_dim, embedding_dim)
        nn.init.normal_(self.project.weight, std=init_scale)
        nn.init.zeros_(self.project.bias)
        self.head_project: nn.Linear | None = None
        if head_residuals and heads > 1:
            self.head_project = nn.Linear(user_dim, heads * embedding_dim, bias=False)
            nn.init.zeros_(self.head_project.weight)
        self.item_features = nn.Linear(c + 1, embedding_dim, bias=False)  # A f(i)
        self.item_feature_bias = nn.Linear(c + 1, 1, bias=False)  # a . f(i)
        nn.init.zeros_(self.item_feature_bias.weight)
        catalog_mode = self.n_candidates == 0
        self.ids: nn.Embedding | None = None
        self.id_bias: nn.Embedding | None = None
        if catalog_mode:
            cat = torch.as_tensor(np.asarray(catalog["item_category"], dtype=np.int64))
            feats = torch.zeros(len(cat), c + 1)
            feats[torch.arange(len(cat)), cat] = 1.0
            feats[:, c] = torch.as_tensor(np.asarray(catalog["item_price"], dtype=np.float32))
            self.register_buffer("catalog_features", feats)
            self.register_buffer("catalog_category", cat)
            if item_ids:
                self.ids = nn.Embedding(len(cat), embedding_dim)
                nn.init.normal_(self.ids.weight, std=0.1)
                self.id_bias = nn.Embedding(len(cat), 1)
                nn.init.zeros_(self.id_bias.weight)
        elif "candidates" not in columns:
            raise ValueError("candidates mode needs the 'candidates' columns of the observation in the catalog")
        self.cross: nn.Linear | None = None
        if cross_features:
            self.n_cross = 4 + ("events" in columns) + self.n_last * self.n_behaviours
            self.cross = nn.Linear(user_dim, heads * self.n_cross)
            nn.init.zeros_(self.cross.weight)
            nn.init.zeros_(self.cross.bias)
        self.value: nn.Linear | None = nn.Linear(user_dim, heads) if state_value else None
        # the item term of history observations: what the user recently did with this very item
        self.history_start, self.history_len, self.n_codes = history if history and catalog_mode else (0, 0, 0)
        self.history_user: nn.Linear | None = None
        if self.history_len:
            self.history_user = nn.Linear(user_dim, heads * self.n_codes)
            nn.init.zeros_(self.history_user.weight)
            nn.init.zeros_(self.history_user.bias)
            self.history_static = nn.Parameter(torch.zeros(self.n_codes, self.history_len))

    # --------------------------------------------------------------------------------- parts
    def _raw(self, features: torch.Tensor, part: str) -> torch.Tensor:
        start, stop = self.columns[part]
        return features[:, self.raw_start + start:self.raw_start + stop]

    def per_category(self, features: torch.Tensor) -> torch.Tensor:
        """(B, n_cross, C) the observation's per-category columns: 4 decayed counts, the event
        flag, and each recent interaction's category one-hot split by its behaviour."""
        b, c = features.shape[0], self.n_categories
        parts = [self._raw(features, "counts").reshape(b, 4, c)]
        if "events" in self.columns:
            parts.append(self._raw(features, "events").reshape(b, 1, c))
        if self.n_last:
            last = self._raw(features, "last_interactions").reshape(b, self.n_last, c + self.n_behaviours)
            # (B, L, behaviours, C): "recent event j was a <behaviour> in category c"
            split = last[:, :, c:, None] * last[:, :, None, :c]
            parts.append(split.reshape(b, self.n_last * self.n_behaviours, c))
        return torch.cat(parts, dim=1)

    def items(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Item vectors, biases and category one-hots: catalog mode (I, E), (I,), (I, C) shared by
        every user; candidates mode (B, M, E), (B, M), (B, M, C) from the observation."""
        c = self.n_categories
        if self.n_candidates == 0:
            feats = self.catalog_features
        else:
            feats = self._raw(features, "candidates").reshape(features.shape[0], self.n_candidates, c + 1)
        vec = self.item_features(feats)
        bias = self.item_feature_bias(feats)[..., 0]
        if self.ids is not None and self.id_bias is not None:
            vec = vec + self.ids.weight
            bias = bias + self.id_bias.weight[:, 0]
        return vec, bias, feats[..., :c]

    def user_vectors(self, user: torch.Tensor) -> torch.Tensor:
        """(B, heads, E) the user's vector in the item space, per head."""
        shared = self.project(user)[:, None, :]
        if self.head_project is None:
            return shared.expand(-1, self.heads, -1)
        return shared + self.head_project(user).reshape(-1, self.heads, self.embedding_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b = features.shape[0]
        user = self.user(features.index_select(1, self.user_index))
        phi = self.user_vectors(user)
        vec, bias, onehot = self.items(features)
        if vec.dim() == 2:  # the catalog, shared by the batch
            score = phi @ vec.T + bias
        else:  # each user's candidates
            score = torch.einsum("bhe,bme->bhm", phi, vec) + bias[:, None, :]
        if self.cross is not None:
            weights = self.cross(user).reshape(b, self.heads, self.n_cross)
            kappa = torch.einsum("bhk,bkc->bhc", weights, self.per_category(features))  # (B, H, C)
            if onehot.dim() == 2:
                score = score + kappa[:, :, self.catalog_category]
            else:
                score = score + torch.einsum("bhc,bmc->bhm", kappa, onehot)
        if self.history_user is not None:
            score = score + self.history_term(features, user)
        if self.value is not None:
            score = score + self.value(user)[:, :, None]
        return score.reshape(b, self.heads * self.n_actions)

    def history_term(self, features: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """(B, heads, I): the sum over the history events that name item i of a weight per behaviour
        (chosen by the user encoding) plus a weight per (behaviour, position): e.g. "bought it two
        events ago". Searches and empty slots name no item and add nothing."""
        assert self.history_user is not None
        b, h, start = features.shape[0], self.history_len, self.history_start
        ids = features[:, start:start + h].long()
        codes = features[:, start + h:start + 2 * h].long()
        per_code = self.history_user(user).reshape(b, self.heads, self.n_codes)
        weight = per_code.gather(2, codes[:, None, :].expand(b, self.heads, h))
        weight = weight + self.history_static[codes, torch.arange(h, device=codes.device)][:, None, :]
        out = torch.zeros(b, self.heads, self.n_actions + 1, dtype=weight.dtype, device=weight.device)
        out.scatter_add_(2, ids[:, None, :].expand(b, self.heads, h), weight)
        return out[:, :, :self.n_actions]  # the last column is the pad id (n_items)


def _history(extractor: Any) -> tuple[int, int, int] | None:
    """(start column, length, behaviour codes) of the history ids an :class:`ItemScoringExtractor`
    appends, or None for ``features`` observations."""
    if not getattr(extractor, "history_len", 0):
        return None
    return extractor.history_start, extractor.history_len, extractor.n_behaviour_codes


def _scorer_options(embedding_dim: int, item_ids: bool, cross_features: bool) -> dict[str, Any]:
    if int(embedding_dim) < 1:
        raise ValueError(f"policy_kwargs 'embedding_dim' must be >= 1, got {embedding_dim!r}")
    return {"embedding_dim": int(embedding_dim), "item_ids": bool(item_ids), "cross_features": bool(cross_features)}


def _split_arch(net_arch: list[int] | dict[str, list[int]] | None, default: list[int]) -> tuple[list[int], list[int]]:
    """(user MLP, value MLP) layers from SB3's ``net_arch`` (a list for both, or dict(pi, vf))."""
    if net_arch is None:
        return list(default), list(default)
    if isinstance(net_arch, dict):
        return list(net_arch.get("pi", default)), list(net_arch.get("vf", default))
    return list(net_arch), list(net_arch)


# ------------------------------------------------------------------------------------- actor-critic
class _CriticExtractor(MlpExtractor):
    """SB3's MlpExtractor with no actor layers (the actor latent is the features: the scorer has its
    own user MLP) and a critic that reads the user columns only (not a history's raw item ids)."""

    def __init__(self, feature_dim: int, critic_arch: list[int], activation_fn: type[nn.Module],
                 user_columns: int | None, device: torch.device | str):
        self.user_columns = user_columns if user_columns is not None else feature_dim
        super().__init__(self.user_columns, {"pi": [], "vf": list(critic_arch)}, activation_fn, device)
        self.latent_dim_pi = feature_dim

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return features

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(features[:, :self.user_columns])


class _ItemScoringActorCritic:
    """Shared part of the PPO / A2C and MaskablePPO policies: the actor's MLP is the scorer's user
    MLP (SB3's ``mlp_extractor`` gets ``pi=[]``, so the actor latent is the features themselves),
    and ``action_net`` is the :class:`ItemScorer`. Its constructor serves both subclasses: ``super()``
    reaches SB3's ActorCriticPolicy or sb3-contrib's MaskableActorCriticPolicy by the MRO."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule,
                 net_arch: list[int] | dict[str, list[int]] | None = None,
                 activation_fn: type[nn.Module] = nn.ReLU, ortho_init: bool = True, use_sde: bool = False,
                 features_extractor_class: type[BaseFeaturesExtractor] | None = None,
                 features_extractor_kwargs: dict[str, Any] | None = None, share_features_extractor: bool = True,
                 normalize_images: bool = True, optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
                 optimizer_kwargs: dict[str, Any] | None = None, catalog: Mapping[str, Any] | None = None,
                 embedding_dim: int = 32, item_ids: bool = True, cross_features: bool = True):
        if use_sde:
            raise ValueError("use_sde is for continuous actions; item-scoring policies choose items")
        built = self._item_scoring_init(observation_space, action_space, catalog, net_arch, features_extractor_class,
                                        features_extractor_kwargs,
                                        _scorer_options(embedding_dim, item_ids, cross_features))
        super().__init__(observation_space, action_space, lr_schedule, activation_fn=activation_fn,
                         ortho_init=ortho_init, share_features_extractor=share_features_extractor,
                         normalize_images=normalize_images, optimizer_class=optimizer_class,
                         optimizer_kwargs=optimizer_kwargs, **built)

    def _item_scoring_init(self, observation_space: spaces.Space, action_space: spaces.Space,
                           catalog: Mapping[str, Any] | None, net_arch: Any,
                           features_extractor_class: type[BaseFeaturesExtractor] | None,
                           features_extractor_kwargs: dict[str, Any] | None, options: dict[str, Any]) -> dict[str, Any]:
        if catalog is None:
            raise ValueError("item-scoring policies need policy_kwargs['catalog'] (driftrec.agents.rl.build_agent "
                             "adds it from the simulator; see catalog_kwargs)")
        self._n_actions, self._heads = _check_catalog(catalog, action_space)
        self.catalog = dict(catalog)
        self.scorer_options = options
        self.user_arch, value_arch = _split_arch(net_arch, [64, 64])
        self.item_net_arch = net_arch
        cls, kwargs = _wrap_extractor(observation_space, features_extractor_class, features_extractor_kwargs)
        return {"net_arch": {"pi": [], "vf": value_arch}, "features_extractor_class": cls,
                "features_extractor_kwargs": kwargs}

    def _build_mlp_extractor(self) -> None:
        history = _history(self.pi_features_extractor)  # type: ignore[attr-defined]
        self.mlp_extractor = _CriticExtractor(self.features_dim, self.net_arch["vf"],  # type: ignore[attr-defined]
                                              self.activation_fn, history[0] if history else None,  # type: ignore[attr-defined]
                                              self.device)  # type: ignore[attr-defined]

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        self.action_net = ItemScorer(
            self.features_dim, self.pi_features_extractor.raw_start, self.catalog, self._n_actions,  # type: ignore[attr-defined]
            self._heads, self.user_arch, self.activation_fn, head_residuals=True,  # type: ignore[attr-defined]
            history=_history(self.pi_features_extractor), **self.scorer_options)  # type: ignore[attr-defined]
        # the optimizer was made for the replaced action_net: make it again over the new parameters
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1),  # type: ignore[attr-defined]
                                              **self.optimizer_kwargs)  # type: ignore[attr-defined]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        data.update(net_arch=self.item_net_arch, catalog=self.catalog, **self.scorer_options)
        return data


class ItemScoringActorCriticPolicy(_ItemScoringActorCritic, ActorCriticPolicy):
    """PPO / A2C policy whose actor logits are item scores (:class:`ItemScorer`).

    ``net_arch``: the user MLP and the critic's MLP (a list for both, or ``dict(pi=..., vf=...)``).
    ``catalog``: :func:`catalog_kwargs` (the builder adds it). ``embedding_dim``, ``item_ids``,
    ``cross_features``: see :class:`ItemScorer`. Other arguments as SB3's ActorCriticPolicy.
    """


class ItemScoringMaskablePolicy(_ItemScoringActorCritic, MaskableActorCriticPolicy):
    """MaskablePPO policy whose actor logits are item scores (arguments as
    :class:`ItemScoringActorCriticPolicy`)."""


# ------------------------------------------------------------------------------------- value-based
class ItemScoringQNetwork(QNetwork):
    """DQN's Q-network with Q(s, i) = v(u) + item score (:class:`ItemScorer`, ``state_value``)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete,
                 features_extractor: BaseFeaturesExtractor, features_dim: int, net_arch: list[int] | None = None,
                 activation_fn: type[nn.Module] = nn.ReLU, normalize_images: bool = True, *,
                 catalog: Mapping[str, Any], scorer_options: dict[str, Any]):
        super().__init__(observation_space, action_space, features_extractor, features_dim, net_arch=[],
                         activation_fn=activation_fn, normalize_images=normalize_images)
        self.net_arch = list(net_arch if net_arch is not None else [64, 64])
        self.catalog, self.scorer_options = dict(catalog), dict(scorer_options)
        n, heads = _check_catalog(catalog, action_space)
        self.q_net = ItemScorer(features_dim, features_extractor.raw_start, catalog, n, heads,  # type: ignore[assignment]
                                self.net_arch, activation_fn, state_value=True, init_scale=0.1,
                                history=_history(features_extractor), **scorer_options)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(catalog=self.catalog, scorer_options=self.scorer_options)
        return data



class _ItemScoringValueBased:
    """Shared part of the DQN and QR-DQN policies: the catalog and scorer options they keep for
    their networks, and the :class:`ItemScoringExtractor` around the requested extractor."""

    def _value_based_init(self, observation_space: spaces.Space, action_space: spaces.Space,
                          catalog: Mapping[str, Any] | None, features_extractor_class: Any,
                          features_extractor_kwargs: dict[str, Any] | None, embedding_dim: int, item_ids: bool,
                          cross_features: bool, layer_norm: bool) -> tuple[type[BaseFeaturesExtractor], dict[str, Any]]:
        if catalog is None:
            raise ValueError("item-scoring policies need policy_kwargs['catalog'] (see catalog_kwargs)")
        _check_catalog(catalog, action_space)
        self.catalog = dict(catalog)
        self.scorer_options = {**_scorer_options(embedding_dim, item_ids, cross_features),
                               "layer_norm": bool(layer_norm)}
        return _wrap_extractor(observation_space, features_extractor_class, features_extractor_kwargs)


class ItemScoringDQNPolicy(_ItemScoringValueBased, DQNPolicy):
    """DQN policy whose Q-values are item scores plus a state value (:class:`ItemScoringQNetwork`).

    ``net_arch``: the user MLP. ``catalog``, ``embedding_dim``, ``item_ids``, ``cross_features``:
    as :class:`ItemScoringActorCriticPolicy`; ``layer_norm``: see :class:`ItemScorer`. Other
    arguments as SB3's DQNPolicy.
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule,
                 net_arch: list[int] | None = None, activation_fn: type[nn.Module] = nn.ReLU,
                 features_extractor_class: type[BaseFeaturesExtractor] | None = None,
                 features_extractor_kwargs: dict[str, Any] | None = None, normalize_images: bool = True,
                 optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
                 optimizer_kwargs: dict[str, Any] | None = None, catalog: Mapping[str, Any] | None = None,
                 embedding_dim: int = 32, item_ids: bool = True, cross_features: bool = True,
                 layer_norm: bool = False):
        cls, kwargs = self._value_based_init(observation_space, action_space, catalog, features_extractor_class,
                                             features_extractor_kwargs, embedding_dim, item_ids, cross_features,
                                             layer_norm)
        super().__init__(observation_space, action_space, lr_schedule, net_arch=net_arch, activation_fn=activation_fn,
                         features_extractor_class=cls, features_extractor_kwargs=kwargs,
                         normalize_images=normalize_images, optimizer_class=optimizer_class,
                         optimizer_kwargs=optimizer_kwargs)

    def make_q_net(self) -> ItemScoringQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return ItemScoringQNetwork(**net_args, catalog=self.catalog, scorer_options=self.scorer_options).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(catalog=self.catalog, **self.scorer_options)
        return data


class ItemScoringQuantileNetwork(QuantileNetwork):
    """QR-DQN's quantile network: one item-scoring head per quantile, each with its state value."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete,
                 features_extractor: BaseFeaturesExtractor, features_dim: int, n_quantiles: int = 200,
                 net_arch: list[int] | None = None, activation_fn: type[nn.Module] = nn.ReLU,
                 normalize_images: bool = True, *, catalog: Mapping[str, Any], scorer_options: dict[str, Any]):
        super().__init__(observation_space, action_space, features_extractor, features_dim, n_quantiles=n_quantiles,
                         net_arch=[], activation_fn=activation_fn, normalize_images=normalize_images)
        self.net_arch = list(net_arch if net_arch is not None else [64, 64])
        self.catalog, self.scorer_options = dict(catalog), dict(scorer_options)
        n, _ = _check_catalog(catalog, action_space)
        self.quantile_net = ItemScorer(features_dim, features_extractor.raw_start, catalog, n,  # type: ignore[assignment]
                                       n_quantiles, self.net_arch, activation_fn, state_value=True,
                                       head_residuals=True, init_scale=0.1, history=_history(features_extractor),
                                       **scorer_options)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(catalog=self.catalog, scorer_options=self.scorer_options)
        return data


class ItemScoringQRDQNPolicy(_ItemScoringValueBased, QRDQNPolicy):
    """QR-DQN policy whose quantiles are item scores (arguments as :class:`ItemScoringDQNPolicy`,
    plus ``n_quantiles``)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule,
                 n_quantiles: int = 200, net_arch: list[int] | None = None, activation_fn: type[nn.Module] = nn.ReLU,
                 features_extractor_class: type[BaseFeaturesExtractor] | None = None,
                 features_extractor_kwargs: dict[str, Any] | None = None, normalize_images: bool = True,
                 optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
                 optimizer_kwargs: dict[str, Any] | None = None, catalog: Mapping[str, Any] | None = None,
                 embedding_dim: int = 32, item_ids: bool = True, cross_features: bool = True,
                 layer_norm: bool = False):
        cls, kwargs = self._value_based_init(observation_space, action_space, catalog, features_extractor_class,
                                             features_extractor_kwargs, embedding_dim, item_ids, cross_features,
                                             layer_norm)
        super().__init__(observation_space, action_space, lr_schedule, n_quantiles=n_quantiles, net_arch=net_arch,
                         activation_fn=activation_fn, features_extractor_class=cls, features_extractor_kwargs=kwargs,
                         normalize_images=normalize_images, optimizer_class=optimizer_class,
                         optimizer_kwargs=optimizer_kwargs)

    def make_quantile_net(self) -> ItemScoringQuantileNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return ItemScoringQuantileNetwork(**net_args, catalog=self.catalog,
                                          scorer_options=self.scorer_options).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(catalog=self.catalog, **self.scorer_options)
        return data


_POLICIES: dict[str, type[nn.Module]] = {
    "ppo": ItemScoringActorCriticPolicy, "a2c": ItemScoringActorCriticPolicy,
    "maskable-ppo": ItemScoringMaskablePolicy, "dqn": ItemScoringDQNPolicy, "qrdqn": ItemScoringQRDQNPolicy,
}


def item_scoring_policy(algo: str) -> type[nn.Module]:
    """The item-scoring policy class of ``algo`` (ppo, a2c, maskable-ppo, dqn, qrdqn)."""
    if algo not in _POLICIES:
        raise ValueError(f"no item-scoring policy for algorithm '{algo}'; choose one of: {', '.join(_POLICIES)}")
    return _POLICIES[algo]
