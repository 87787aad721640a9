"""The shared base of the supervised recommenders: scoring head, training loop, early stopping,
prediction, offline evaluation, saving and the policy wrapper (:mod:`.registry` makes and loads
models by kind).

A model is a user encoder (one file each: ``mlp.py``, ``gru.py``, ``transformer.py``) on top of
one scoring head shared by all. The head is an MLP over the concatenation of

- the user representation (the encoder's output),
- the item's features (category one-hot, log relative price) and its id (``item_ids``),
- cross features of the pair: the user's decayed counts of impressions, clicks, purchases and
  organic events in the item's category, its calendar event flag and whether each of the last
  interactions was in that category (the personal signal a logistic model needs),
- the slate position (position bias is learned here; the policy scores position 0),

with two outputs: the logits of P(click) and of P(purchase | click) (multi-task). Its first
layer is a sum of per-input linear maps, which is the same function as one linear map of the
concatenation, but lets the policy score users x items as (users, 1) + (1, items) broadcasts
instead of materialising every pair's input. With ``layers = 0`` the head is a logistic model.

Sequence models add a next-item head (tied to their item embeddings) trained with softmax
cross-entropy over the whole catalog (or a log-Q corrected sampled softmax, ``softmax_samples``):
the clicked item of each clicked impression from the user representation, and every item event of
the history window from the encoder's causal output at the event before it (every prefix of the
window in one pass, as SASRec trains; ``event_windows`` sets the share of windows that do).

Training (:func:`fit`) shuffles whole requests: the examples of one request (a slate's
impressions, a pseudo-request's target and its sampled negatives) are consecutive rows with the
same encoder input, land in the same mini-batch and are encoded once (:func:`request_groups`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from driftrec.agents.supervised.config import SupervisedConfig
from driftrec.agents.supervised.data import Examples, FeatureSpec
from driftrec.agents.supervised.losses import balanced_pos_weight, logit_offset, next_item_loss, weighted_bce
from driftrec.agents.supervised.metrics import binary_metrics, popularity_scores, ranking_metrics
from driftrec.agents.supervised.policy import SupervisedPolicy
from driftrec.envs.state import BEHAVIOURS, CART, CLICK, PAD, PURCHASE, VIEW

CHECKPOINT_FORMAT = 1
_PAIR_BUDGET = 1 << 19  # users x items x hidden floats scored at once (2 MiB of float32: stays in cache)
_LOGIT_BUDGET = 1 << 24  # next-event logits of a validation chunk (64 MiB of float32)

NETWORKS: dict[str, type[SupervisedNetwork]] = {}
"""kind -> model class; filled by :func:`register` as the model modules are imported."""


def register(cls: type[SupervisedNetwork]) -> type[SupervisedNetwork]:
    """Class decorator: make a model available under its ``kind``."""
    NETWORKS[cls.kind] = cls
    return cls


@dataclasses.dataclass
class Batch:
    """Examples as tensors (see :class:`driftrec.agents.supervised.data.Examples`)."""

    user: torch.Tensor  # (B, user_dim) float32
    hist_item: torch.Tensor  # (B, H) int64
    hist_beh: torch.Tensor  # (B, H) int64
    item: torch.Tensor  # (B,) int64
    position: torch.Tensor  # (B,) int64
    click: torch.Tensor  # (B,) float32
    purchase: torch.Tensor  # (B,) float32
    user_id: torch.Tensor  # (B,) int64

    @classmethod
    def from_examples(cls, ex: Examples) -> Batch:
        return cls(user=torch.from_numpy(np.ascontiguousarray(ex.user, dtype=np.float32)),
                   hist_item=torch.from_numpy(np.ascontiguousarray(ex.hist_item, dtype=np.int64)),
                   hist_beh=torch.from_numpy(np.ascontiguousarray(ex.hist_beh, dtype=np.int64)),
                   item=torch.from_numpy(np.ascontiguousarray(ex.item, dtype=np.int64)),
                   position=torch.from_numpy(np.ascontiguousarray(ex.position, dtype=np.int64)),
                   click=torch.from_numpy(np.ascontiguousarray(ex.click, dtype=np.float32)),
                   purchase=torch.from_numpy(np.ascontiguousarray(ex.purchase, dtype=np.float32)),
                   user_id=torch.from_numpy(np.ascontiguousarray(ex.user_id, dtype=np.int64)))

    def __len__(self) -> int:
        return len(self.item)

    def rows(self, idx: torch.Tensor | slice) -> Batch:
        return Batch(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})


class ScoreHead(nn.Module):
    """Click and purchase-given-click logits of (user, item, position) pairs; see the module doc."""

    def __init__(self, repr_dim: int, item_dim: int, cross_dim: int, n_ids: int, n_positions: int,
                 hidden: int, layers: int, dropout: float):
        super().__init__()
        width = hidden if layers else 2
        self.user = nn.Linear(repr_dim, width)
        self.item = nn.Linear(item_dim, width, bias=False)
        self.cross = nn.Linear(cross_dim, width, bias=False)
        self.position = nn.Embedding(n_positions, width)
        nn.init.zeros_(self.position.weight)
        self.ids = nn.Embedding(n_ids, width) if n_ids else None
        if self.ids is not None:
            nn.init.normal_(self.ids.weight, std=0.01)
        trunk: list[nn.Module] = []
        for _ in range(max(layers - 1, 0)):
            trunk += [nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, hidden)]
        if layers:
            trunk += [nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, 2)]
        self.trunk = nn.Sequential(*trunk)

    def forward(self, user: torch.Tensor, item_feat: torch.Tensor, cross: torch.Tensor, ids: torch.Tensor | None,
                position: torch.Tensor) -> torch.Tensor:
        """(B, J, 2) logits. ``user`` (B, R); ``item_feat`` (B or 1, J, F); ``cross`` (B, J, X);
        ``ids`` (B or 1, J) or None; ``position`` (B,)."""
        # the user and item parts are summed on their own small tensors first: only two additions
        # run at users x items x hidden size, which dominates serving a whole catalog
        item = self.item(item_feat)
        if self.ids is not None and ids is not None:
            item = item + self.ids(ids)
        z = self.cross(cross)
        z += (self.user(user) + self.position(position))[:, None]
        z += item
        return self.trunk(z)

    def by_category(self, user: torch.Tensor, cross_by_cat: torch.Tensor, item: torch.Tensor,
                    item_cat: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """(B, J, 2) logits, the same function as :meth:`forward` when every item's cross features
        are its category's: ``cross_by_cat`` (B, C, X) the cross features of each category, ``item``
        (B or 1, J, width) the item part of the first layer (:meth:`item_part`), ``item_cat`` (B or
        1, J). The user and cross parts are summed per category, so the users x items work is one
        gather, one addition and the trunk."""
        per_cat = self.cross(cross_by_cat)
        per_cat += (self.user(user) + self.position(position))[:, None]
        if item_cat.shape[0] == 1:  # the same items for every user (the catalog)
            z = per_cat.index_select(1, item_cat[0])
        else:
            z = per_cat[torch.arange(per_cat.shape[0])[:, None], item_cat]
        z += item
        return self.trunk(z)

    def item_part(self, item_feat: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
        """The item part of the first layer: (B or 1, J, width)."""
        item = self.item(item_feat)
        return item + self.ids(ids) if self.ids is not None and ids is not None else item


class ItemTokens(nn.Module):
    """Embeddings of history events for the sequence models: item id + behaviour + the item's category.

    Index ``n_items`` is "no item" (a search, or an empty slot, whose behaviour code 0 tells them apart).
    """

    def __init__(self, spec: FeatureSpec, dim: int):
        super().__init__()
        self.n_items = spec.n_items
        self.item = nn.Embedding(spec.n_items + 1, dim)
        self.behaviour = nn.Embedding(len(BEHAVIOURS) + 1, dim)
        self.category = nn.Embedding(spec.n_categories + 1, dim)
        for emb in (self.item, self.behaviour, self.category):
            nn.init.normal_(emb.weight, std=0.1)
        cats = np.r_[spec.item_category, spec.n_categories]
        self.register_buffer("item_category", torch.as_tensor(cats, dtype=torch.int64), persistent=False)

    def forward(self, item: torch.Tensor, behaviour: torch.Tensor) -> torch.Tensor:
        """(B, H, dim) token embeddings."""
        return self.item(item) + self.behaviour(behaviour) + self.category(self.item_category[item])


class NextItemHead(nn.Module):
    """Next-item logits over the catalog: a projection of the user representation (or of a
    sequence position's output) dotted with the (tied) item embeddings, plus a per-item bias.

    Trained with softmax cross-entropy over the whole catalog (``softmax_samples = 0``), or, for
    catalogs too big for that, a sampled softmax: ``softmax_samples`` items per batch shared by
    every row, drawn with replacement in proportion to their training frequency ``q`` (set by
    :meth:`set_sampling`), every logit corrected by ``- log q`` (Bengio and Senecal 2008; the
    log-Q correction of Yi et al. 2019), a sample equal to the row's target masked out.
    """

    def __init__(self, repr_dim: int, tokens: ItemTokens, samples: int = 0):
        super().__init__()
        self.tokens = tokens
        dim = tokens.item.embedding_dim
        self.proj = nn.Linear(repr_dim, dim)
        self.proj_positions = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(tokens.n_items))
        self.samples = int(samples)
        self.register_buffer("log_q", torch.full((tokens.n_items,), -math.log(tokens.n_items)), persistent=False)
        self.generator: torch.Generator | None = None

    def set_sampling(self, item_counts: np.ndarray, seed: int) -> None:
        """The sampled softmax's proposal: item frequencies ``item_counts`` (+1 each, so every item
        can be drawn) and the seed of its draws."""
        q = np.asarray(item_counts, dtype=np.float64) + 1.0
        self.log_q.copy_(torch.as_tensor(np.log(q / q.sum()), dtype=torch.float32))
        self.generator = torch.Generator().manual_seed(seed)

    def loss(self, query: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean next-item cross-entropy of projected queries (n, E) and their target items (n,):
        full softmax, or the sampled one while training with ``samples > 0``."""
        weight = self.tokens.item.weight[:-1]
        if not self.samples or not self.training:
            return next_item_loss(query @ weight.T + self.bias, target)
        if target.numel() == 0:
            return query.sum() * 0.0
        drawn = torch.multinomial(self.log_q.exp(), self.samples, replacement=True, generator=self.generator)
        items = torch.cat([target[:, None], drawn[None, :].expand(len(target), -1)], dim=1)  # (n, 1 + S)
        logits = (query[:, None, :] * weight[items]).sum(-1) + self.bias[items] - self.log_q[items]
        logits[:, 1:] = logits[:, 1:].masked_fill(drawn[None, :] == target[:, None], -torch.inf)
        return next_item_loss(logits, torch.zeros_like(target))

    def forward(self, user_repr: torch.Tensor) -> torch.Tensor:
        """(B, I) logits of the next clicked item from the user representation."""
        return self.proj(user_repr) @ self.tokens.item.weight[:-1].T + self.bias


def request_groups(user: torch.Tensor, hist_item: torch.Tensor,
                   hist_beh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first row of each run of consecutive rows with identical encoder inputs (R,), each row's
    run index (B,)): the requests of a batch whose examples are in log order (a slate's
    impressions, a target followed by its sampled negatives)."""
    n = len(user)
    new = torch.ones(n, dtype=torch.bool)
    if n > 1:
        same = (user[1:] == user[:-1]).all(1)
        if hist_item.shape[1]:
            same &= (hist_item[1:] == hist_item[:-1]).all(1) & (hist_beh[1:] == hist_beh[:-1]).all(1)
        new[1:] = ~same
    return new.nonzero().squeeze(1), new.cumsum(0) - 1


def next_event_targets(hist_item: torch.Tensor, hist_beh: torch.Tensor, n_items: int) -> torch.Tensor:
    """(B, H - 1) bool: whether history event ``t + 1`` is a next-item target for the prefix up to
    ``t``: an item event after a real one, except a cart or purchase of the item just before it
    (the simulator's click -> cart -> purchase of one item is one choice; a ratings log's
    purchase of a new item is a choice of its own)."""
    nxt_item, nxt_beh, prev_item = hist_item[:, 1:], hist_beh[:, 1:], hist_item[:, :-1]
    chosen = (nxt_beh == CLICK) | (nxt_beh == VIEW) | (((nxt_beh == CART) | (nxt_beh == PURCHASE))
                                                       & (nxt_item != prev_item))
    return chosen & (hist_beh[:, :-1] != PAD) & (nxt_item < n_items)


class SupervisedNetwork(nn.Module):
    """Base of every supervised recommender: a user encoder (subclass) and the shared scoring head.

    Subclasses set ``kind`` (the CLI name), ``sequence`` (reads the history observation), build
    their encoder (:meth:`encode`), then call :meth:`build_head` with the width of its output.
    """

    kind: ClassVar[str] = ""
    sequence: ClassVar[bool] = False

    def __init__(self, spec: FeatureSpec, cfg: SupervisedConfig):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        self.use_ids = cfg.item_ids
        c = spec.n_categories
        sl = spec.user_slices
        self.counts_slice = sl["counts"]
        self.events_slice = sl.get("events")
        self.last_slice = sl.get("last_interactions")
        self.cross_dim = 4 + (1 if self.events_slice else 0) + spec.last_interactions
        self.register_buffer("item_features", torch.tensor(spec.item_features), persistent=False)
        self.register_buffer("item_category", torch.tensor(spec.item_category), persistent=False)
        # click and purchase positive weights of the loss, and the logit shifts that undo them at
        # prediction (log pos_weight, then refit on validation data: see losses.py)
        self.register_buffer("pos_weight", torch.ones(2))
        self.register_buffer("logit_offset", torch.zeros(2))
        self.head: ScoreHead | None = None
        self.next_item: NextItemHead | None = None
        self._n_categories = c
        # whether the training data knew any user's demographics (a log with a users table); a model
        # trained without them is served with them zeroed, as its training data had them
        self.uses_demographics = False
        # sequence models: share of training requests whose window trains the next-event loss (set by fit)
        self.window_share = 1.0
        self.window_generator: torch.Generator | None = None

    # ------------------------------------------------------------------ architecture
    def build_head(self, repr_dim: int) -> None:
        """Create the shared scoring head for a user representation of width ``repr_dim``."""
        cfg, spec = self.cfg, self.spec
        self.head = ScoreHead(repr_dim, spec.n_categories + 1, self.cross_dim, spec.n_items if self.use_ids else 0,
                              max(spec.slate_size, 1), cfg.hidden, cfg.layers, cfg.dropout)

    def encode(self, user: torch.Tensor, hist_item: torch.Tensor,
               hist_beh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, R) user representation from the user features and (for sequence models) the history,
        and the sequence models' (B, H, E) output at every history position (None for the others)."""
        raise NotImplementedError

    def encode_user(self, user: torch.Tensor, hist_item: torch.Tensor, hist_beh: torch.Tensor) -> torch.Tensor:
        """(B, R) user representation (see :meth:`encode`)."""
        return self.encode(user, hist_item, hist_beh)[0]

    def cross_features(self, user: torch.Tensor, item_cat: torch.Tensor) -> torch.Tensor:
        """(B, J, cross_dim) user x item features; ``item_cat`` (B or 1, J)."""
        b, c = user.shape[0], self._n_categories
        idx = item_cat.expand(b, item_cat.shape[1])
        counts = user[:, self.counts_slice].reshape(b, 4, c)
        parts = [counts.gather(2, idx[:, None, :].expand(b, 4, idx.shape[1]))]
        if self.events_slice is not None:
            parts.append(user[:, self.events_slice].gather(1, idx)[:, None, :])
        n_last = self.spec.last_interactions
        if n_last:
            last = user[:, self.last_slice].reshape(b, n_last, c + len(BEHAVIOURS))[:, :, :c]
            parts.append(last.gather(2, idx[:, None, :].expand(b, n_last, idx.shape[1])))
        return torch.cat(parts, dim=1).transpose(1, 2)

    def pair_logits(self, user: torch.Tensor, user_repr: torch.Tensor, item_cat: torch.Tensor,
                    item_feat: torch.Tensor, ids: torch.Tensor | None, position: torch.Tensor) -> torch.Tensor:
        """(B, J, 2) raw click and purchase-given-click logits (class-weighted scale)."""
        assert self.head is not None
        return self.head(user_repr, item_feat, self.cross_features(user, item_cat),
                         ids if self.use_ids else None, position)

    # ------------------------------------------------------------------ training
    def set_pos_weights(self, train: Examples, click: float = 0.0, purchase: float = 0.0) -> None:
        """Positive weights of the click and purchase losses (0 = balanced from ``train``)."""
        clicked = train.purchase[train.click > 0]
        w_click = click or balanced_pos_weight(torch.as_tensor(train.click))
        w_buy = purchase or balanced_pos_weight(torch.as_tensor(clicked))
        self.pos_weight.copy_(torch.tensor([w_click, w_buy], dtype=torch.float32))
        self.logit_offset.copy_(torch.log(self.pos_weight))

    @torch.no_grad()
    def recalibrate(self, val: Examples) -> None:
        """Refit the two logit shifts so the mean predicted P(click) on ``val`` is its click rate
        and the mean P(purchase | click) on its clicks their purchase rate (no-op for a class
        that ``val`` lacks)."""
        if len(val) == 0:
            return
        z = self.raw_logits(val)
        clicked = torch.from_numpy(val.click > 0)
        click, purchase = torch.from_numpy(val.click), torch.from_numpy(val.purchase)
        if 0 < int(clicked.sum()) < len(val):
            self.logit_offset[0] = logit_offset(z[:, 0], click)
        buys = int(purchase[clicked].sum())
        if 0 < buys < int(clicked.sum()):
            self.logit_offset[1] = logit_offset(z[clicked, 1], purchase[clicked])

    def losses(self, b: Batch) -> dict[str, torch.Tensor]:
        """The loss terms of a batch: click (all impressions), purchase (clicked ones); for sequence
        models also next item (the clicked item from the whole history, on clicked impressions)
        and next event (every item the history moves to, predicted from the events before it:
        each prefix of the window in the encoder's one causal pass); ``total`` is their weighted sum.

        Consecutive examples of one request (a slate's impressions, a target and its sampled
        negatives: identical encoder inputs) are encoded once, and their window's next-event
        targets count once."""
        first, group = request_groups(b.user, b.hist_item, b.hist_beh)
        hist_item, hist_beh = b.hist_item[first], b.hist_beh[first]
        req_repr, seq_out = self.encode(b.user[first], hist_item, hist_beh)
        user_repr = req_repr[group]
        item = b.item[:, None]
        z = self.pair_logits(b.user, user_repr, self.item_category[item], self.item_features[item], item,
                             b.position)[:, 0]
        clicked = b.click > 0
        out = {"click": weighted_bce(z[:, 0], b.click, self.pos_weight[0]),
               "purchase": weighted_bce(z[clicked, 1], b.purchase[clicked], self.pos_weight[1])}
        total = out["click"] + out["purchase"]
        if self.next_item is not None:
            out["next_item"] = self.next_item.loss(self.next_item.proj(user_repr[clicked]), b.item[clicked])
            total = total + self.cfg.rank_weight * out["next_item"]
        if self.next_item is not None and seq_out is not None:
            # every position predicts the next item event of the history (SASRec-style), far more
            # targets than the clicked impressions alone; while training only a share of the
            # windows (consecutive requests' windows overlap in all but their newest events)
            valid = next_event_targets(hist_item, hist_beh, self.spec.n_items)
            if self.training and self.window_share < 1.0:
                drawn = torch.rand(len(first), generator=self.window_generator) < self.window_share
                valid &= drawn[:, None]
            out["next_event"] = self.next_item.loss(self.next_item.proj_positions(seq_out[:, :-1][valid]),
                                                    hist_item[:, 1:][valid])
            total = total + self.cfg.rank_weight * out["next_event"]
        out["total"] = total
        return out

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def raw_logits(self, ex: Examples, batch_size: int = 8192) -> torch.Tensor:
        """(n, 2) click and purchase-given-click logits of each example, before the calibration shift."""
        self.eval()
        b = Batch.from_examples(ex)
        out = [torch.zeros(0, 2)]
        for lo in range(0, len(b), batch_size):
            part = b.rows(slice(lo, lo + batch_size))
            first, group = request_groups(part.user, part.hist_item, part.hist_beh)
            user_repr = self.encode_user(part.user[first], part.hist_item[first], part.hist_beh[first])[group]
            item = part.item[:, None]
            out.append(self.pair_logits(part.user, user_repr, self.item_category[item], self.item_features[item],
                                        item, part.position)[:, 0])
        return torch.cat(out)

    def predict(self, ex: Examples) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated (P(click), P(purchase | click)) of each example, numpy float64 (n,)."""
        p = torch.sigmoid(self.raw_logits(ex) - self.logit_offset).double().numpy()
        return p[:, 0], p[:, 1]

    @torch.no_grad()
    def score_items(self, user: torch.Tensor, hist_item: torch.Tensor, hist_beh: torch.Tensor,
                    item_cat: torch.Tensor, item_feat: torch.Tensor, ids: torch.Tensor | None,
                    position: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated (P(click), P(purchase | click)), each (B, J), of J items per user at slate
        ``position``: ``item_cat`` (B or 1, J), ``item_feat`` (B or 1, J, C + 1), ``ids`` (B or 1, J)
        or None. Users are encoded once; the pairs are scored by category
        (:meth:`ScoreHead.by_category`) in chunks of users that keep users x items x hidden small."""
        assert self.head is not None
        self.eval()
        n, j = user.shape[0], item_cat.shape[1]
        if n == 0:
            empty = torch.zeros(0, j)
            return empty, empty.clone()
        user_repr = self.encode_user(user, hist_item, hist_beh)
        all_cats = torch.arange(self._n_categories)[None, :]
        item = self.head.item_part(item_feat, ids if self.use_ids else None)
        shared = item_cat.shape[0] == 1
        chunk = max(1, _PAIR_BUDGET // max(j * max(self.cfg.hidden, 2), 1))
        p = torch.empty(n, j, 2)
        for lo in range(0, n, chunk):
            rows = slice(lo, lo + chunk)
            u = user[rows]
            pos = torch.full((u.shape[0],), position, dtype=torch.int64)
            z = self.head.by_category(user_repr[rows], self.cross_features(u, all_cats), item if shared else item[rows],
                                      item_cat if shared else item_cat[rows], pos)
            torch.sigmoid(z - self.logit_offset, out=p[rows])
        return p[..., 0], p[..., 1]

    @torch.no_grad()
    def ranking_scores(self, ex: Examples, batch_size: int = 1024, by_click: bool = False) -> np.ndarray:
        """(n, n_items) next-item scores of each example's request: the next-item head for
        sequence models, P(click) over the whole catalog at position 0 otherwise (or with ``by_click``)."""
        self.eval()
        b = Batch.from_examples(ex)
        all_ids = torch.arange(self.spec.n_items)[None, :]
        out = []
        for lo in range(0, len(b), batch_size):
            part = b.rows(slice(lo, lo + batch_size))
            if self.next_item is not None and not by_click:
                out.append(self.next_item(self.encode_user(part.user, part.hist_item, part.hist_beh)))
            else:
                p_click, _ = self.score_items(part.user, part.hist_item, part.hist_beh, self.item_category[all_ids],
                                              self.item_features[all_ids], all_ids)
                out.append(p_click)
        if not out:
            return np.zeros((0, self.spec.n_items))
        return torch.cat(out).double().numpy()

    # ------------------------------------------------------------------ persistence and serving
    def save(self, path: str | Path) -> Path:
        """Write the model (weights, kind, training and simulator config) to ``path`` (torch format)."""
        path = Path(path)
        ckpt = {"format": CHECKPOINT_FORMAT, "kind": self.kind, "train_config": self.cfg.to_dict(),
                "sim_config": self.spec.cfg.to_dict(), "state_dict": self.state_dict(),
                "uses_demographics": bool(self.uses_demographics)}
        if self.spec.source == "log":  # a log's own catalog: the sim config does not rebuild it
            ckpt["log_spec"] = self.spec.to_state()
        torch.save(ckpt, path)
        return path

    def as_policy(self, user_model: Any) -> SupervisedPolicy:
        """This model as a :class:`driftrec.envs.policy.Policy` on ``user_model``'s observations
        (see :class:`driftrec.agents.supervised.policy.SupervisedPolicy`)."""
        return SupervisedPolicy(self, user_model)


# ---------------------------------------------------------------------------------- training loop
@dataclasses.dataclass
class FitReport:
    """What one call of :func:`fit` did."""

    epochs_run: int
    best_epoch: int  # 1-based; 0 when no validation data (the last epoch is kept)
    best_val_loss: float
    train_loss: list[float]
    val_loss: list[float]
    seconds: float


@torch.no_grad()
def mean_loss(network: SupervisedNetwork, data: Batch, batch_size: int | None = None) -> float:
    """Example-weighted mean total loss of ``data`` (eval mode), in chunks of ``batch_size``
    examples (default: as many as keep the next-event logits, rows x history x items, bounded)."""
    network.eval()
    if batch_size is None:
        per_row = network.spec.n_items * max(network.spec.history_len, 1) if network.next_item is not None else 1
        batch_size = int(min(8192, max(64, _LOGIT_BUDGET // per_row)))
    total, n = 0.0, 0
    for lo in range(0, len(data), batch_size):
        part = data.rows(slice(lo, lo + batch_size))
        total += float(network.losses(part)["total"]) * len(part)
        n += len(part)
    return total / n if n else math.nan


def fit(network: SupervisedNetwork, train: Examples, val: Examples | None, *, epochs: int, lr: float,
        patience: int, seed: int, on_epoch: Callable[[int, float, float], Any] | None = None) -> FitReport:
    """Adam on the total loss, shuffled mini-batches, early stopping on the validation loss.

    The best validation epoch's weights are restored at the end (patience: epochs without
    improvement before stopping). Without validation data every epoch runs and the last is kept.
    """
    cfg = network.cfg
    start = time.perf_counter()
    data = Batch.from_examples(train)
    held = Batch.from_examples(val) if val is not None and len(val) else None
    opt = torch.optim.Adam(network.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    if network.next_item is not None and network.next_item.samples:
        network.next_item.set_sampling(np.bincount(train.item[train.click > 0], minlength=network.spec.n_items),
                                     seed + 1)
    first, _ = request_groups(data.user, data.hist_item, data.hist_beh)
    sizes = torch.diff(first, append=torch.tensor([len(data)]))
    if network.sequence:
        network.window_share = cfg.event_windows or auto_window_share(data, first)
        network.window_generator = torch.Generator().manual_seed(seed + 2)
    best, best_epoch, best_state, stale = math.inf, 0, None, 0
    train_curve: list[float] = []
    val_curve: list[float] = []
    epoch = 0
    for epoch in range(1, epochs + 1):
        network.train()
        running, n = 0.0, 0
        for rows in _request_batches(first, sizes, cfg.batch_size, gen):
            part = data.rows(rows)
            loss = network.losses(part)["total"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(part)
            n += len(part)
        train_curve.append(running / max(n, 1))
        val_loss = mean_loss(network, held) if held is not None else math.nan
        val_curve.append(val_loss)
        if on_epoch is not None:
            on_epoch(epoch, train_curve[-1], val_loss)
        if held is None:
            continue
        if val_loss < best:
            best, best_epoch, stale = val_loss, epoch, 0
            best_state = copy.deepcopy(network.state_dict())
        else:
            stale += 1
            if stale >= patience:
                break
    if best_state is not None:
        network.load_state_dict(best_state)
    network.eval()
    return FitReport(epochs_run=epoch, best_epoch=best_epoch, best_val_loss=best, train_loss=train_curve,
                     val_loss=val_curve, seconds=time.perf_counter() - start)


def auto_window_share(data: Batch, first: torch.Tensor) -> float:
    """The share of requests whose history window makes each history event a next-event target
    about once per epoch: (mean new events per request) / (targets per window), the new events of
    a request being the shift that lines its window up with the user's previous request's."""
    h = data.hist_item.shape[1]
    if h < 2 or len(first) < 2:
        return 1.0
    a, b = first[:-1], first[1:]
    same = data.user_id[a] == data.user_id[b]
    a, b = a[same], b[same]
    if not len(a):
        return 1.0
    old = torch.stack([data.hist_item[a], data.hist_beh[a]], -1)
    new = torch.stack([data.hist_item[b], data.hist_beh[b]], -1)
    shift = torch.full((len(a),), h)
    for k in range(h - 1, -1, -1):  # the smallest shift that lines the windows up wins
        shift[(new[:, :h - k] == old[:, k:]).flatten(1).all(1)] = k
    return float(min(1.0, max(shift.double().mean().item(), 1.0 / h) / (h - 1)))


def _request_batches(first: torch.Tensor, sizes: torch.Tensor, batch_size: int,
                     gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Row indices of shuffled mini-batches of whole requests (first rows ``first``, ``sizes`` rows
    each), about ``batch_size`` examples each: a batch ends with the request that reaches a
    multiple of it (one example per request: exactly ``batch_size``, the rows shuffled)."""
    perm = torch.randperm(len(first), generator=gen)
    lengths = sizes[perm]
    ends = lengths.cumsum(0)
    rows = torch.repeat_interleave(first[perm] - (ends - lengths), lengths) + torch.arange(int(ends[-1]) if len(ends)
                                                                                            else 0)
    crossed = torch.diff(torch.div(ends, batch_size, rounding_mode="floor"), prepend=torch.zeros(1, dtype=ends.dtype))
    cuts = [0, *ends[crossed > 0].tolist()]
    if cuts[-1] < len(rows):
        cuts.append(len(rows))
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        yield rows[lo:hi]


def evaluate(network: SupervisedNetwork, test: Examples, train_clicked_items: np.ndarray) -> dict[str, Any]:
    """Offline metrics on ``test``: click and purchase (entire space: P(click) * P(purchase | click))
    classification metrics, and next-item HR@k / NDCG@k on its clicked impressions for the model
    (``ranking``; sequence models also ``ranking_by_click``, the policy's P(click) ranking) and
    for popularity (click counts of ``train_clicked_items``)."""
    cfg = network.cfg
    p_click, p_buy = network.predict(test)
    clicked = test.click > 0
    out: dict[str, Any] = {
        "click": binary_metrics(test.click, p_click, cfg.threshold),
        "purchase": binary_metrics(test.purchase, p_click * p_buy, cfg.threshold),
        "purchase_given_click": binary_metrics(test.purchase[clicked], p_buy[clicked], cfg.threshold),
    }
    targets = test.take(clicked)
    out["ranking"] = ranking_metrics(network.ranking_scores(targets), targets.item, cfg.top_k)
    if network.next_item is not None:  # also the policy's ranking: P(click) over the catalog
        out["ranking_by_click"] = ranking_metrics(network.ranking_scores(targets, by_click=True), targets.item,
                                                  cfg.top_k)
    pop = popularity_scores(train_clicked_items, network.spec.n_items)
    out["popularity"] = ranking_metrics(np.broadcast_to(pop, (len(targets), pop.size)), targets.item, cfg.top_k)
    return out
