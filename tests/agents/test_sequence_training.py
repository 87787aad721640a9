"""How the supervised models train (agents/supervised/base.py ``fit`` and ``losses``): whole requests
per mini-batch, each request's encoder run once (a pseudo-request's sampled negatives and a slate's
impressions share it), next-event targets of a history window, the share of windows that trains
the next-event loss, and the sampled softmax with its log-Q correction.

Logs are hand-made (a deterministic next item, see test_offline.next_item_log); one torch thread,
fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from driftrec.agents.supervised import SupervisedConfig
from driftrec.agents.supervised.base import (
    Batch,
    _request_batches,
    auto_window_share,
    fit,
    next_event_targets,
    request_groups,
)
from driftrec.agents.supervised.offline import evaluate_popularity, prepare_offline, train_offline_network
from driftrec.agents.supervised.registry import make_network
from driftrec.envs.state import CART, CLICK, PAD, PURCHASE, SEARCH, VIEW
from tests.agents.test_offline import next_item_log

TINY = SupervisedConfig(epochs=1, hidden=16, embedding_dim=8, batch_size=256)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pseudo() -> object:
    """A log without impressions: each target is a pseudo-request with 4 sampled negatives."""
    return prepare_offline(next_item_log(n_users=120, length=10), negatives=4)


def test_request_batches_hold_whole_requests_and_cover_every_row_once() -> None:
    rng = np.random.default_rng(0)
    sizes = torch.as_tensor(rng.integers(1, 7, 300))
    first = torch.cumsum(sizes, 0) - sizes
    n = int(sizes.sum())
    batches = list(_request_batches(first, sizes, 64, torch.Generator().manual_seed(1)))
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(n))  # every row once
    owner = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    seen: set[int] = set()
    for b in batches:
        requests = set(owner[b].tolist())
        assert not requests & seen  # a request never straddles two batches
        seen |= requests
        assert sum(int(sizes[r]) for r in requests) == len(b)
        assert len(b) < 64 + 6
    assert len(batches) == pytest.approx(n / 64, abs=1.5)
    # one row per request: batches of exactly batch_size, as a plain shuffle gives
    ones = torch.ones(130, dtype=torch.int64)
    flat = list(_request_batches(torch.arange(130), ones, 32, torch.Generator().manual_seed(1)))
    assert [len(b) for b in flat] == [32, 32, 32, 32, 2]
    assert torch.equal(torch.cat(flat), torch.randperm(130, generator=torch.Generator().manual_seed(1)))


def test_request_groups_are_runs_of_identical_encoder_inputs() -> None:
    user = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    hist = torch.tensor([[3, 4], [3, 4], [4, 5], [4, 5], [4, 5]])
    first, group = request_groups(user, hist, torch.ones_like(hist))
    assert first.tolist() == [0, 2, 3, 4] and group.tolist() == [0, 0, 1, 2, 3]
    first, group = request_groups(user, hist[:, :0], hist[:, :0])  # the MLP: user features only
    assert first.tolist() == [0, 3, 4] and group.tolist() == [0, 0, 0, 1, 2]


def test_each_request_is_encoded_once_per_epoch(pseudo: object) -> None:
    network = make_network("gru", pseudo.spec, TINY, seed=0)
    network.set_pos_weights(pseudo.train)
    encoded: list[int] = []
    encode = network.encode

    def counting(user: torch.Tensor, hist_item: torch.Tensor, hist_beh: torch.Tensor) -> object:
        if network.training:
            encoded.append(len(user))
        return encode(user, hist_item, hist_beh)

    network.encode = counting  # type: ignore[method-assign]
    fit(network, pseudo.train, None, epochs=1, lr=1e-3, patience=1, seed=0)
    targets = int((pseudo.train.click > 0).sum())
    assert len(pseudo.train) == 5 * targets  # each target with its 4 negatives
    assert sum(encoded) == targets  # one encoder row per pseudo-request, not per example


def test_next_event_targets_are_the_items_a_user_moves_to() -> None:
    n_items = 10
    item = torch.tensor([[n_items, 1, 1, 1, 2, n_items, 3, 3]])
    beh = torch.tensor([[PAD, CLICK, CART, PURCHASE, PURCHASE, SEARCH, VIEW, CLICK]])
    # after PAD: no; cart / purchase of the clicked item: no; purchase of a new item: yes;
    # a search (no item): no; a view after a search: yes; a click of the item just viewed: yes
    expected = [[False, False, False, True, False, True, True]]
    assert next_event_targets(item, beh, n_items).tolist() == expected


def test_the_auto_window_share_sees_each_event_about_once_per_epoch(pseudo: object) -> None:
    data = Batch.from_examples(pseudo.train)
    first, _ = request_groups(data.user, data.hist_item, data.hist_beh)
    h = pseudo.spec.history_len
    # every pseudo-request adds one history event (the click before it): shift 1, H - 1 targets a window
    assert auto_window_share(data, first) == pytest.approx(1.0 / (h - 1), rel=0.02)


def test_sampled_softmax_is_log_q_corrected_and_masks_the_target() -> None:
    data = prepare_offline(next_item_log(n_users=40, length=6))
    cfg = SupervisedConfig(epochs=1, hidden=8, embedding_dim=8, softmax_samples=2000)
    network = make_network("gru", data.spec, cfg, seed=0)
    head = network.next_item
    counts = np.arange(data.spec.n_items, dtype=np.float64)
    head.set_sampling(counts, seed=3)
    q = (counts + 1) / (counts + 1).sum()
    np.testing.assert_allclose(head.log_q.exp().numpy(), q, rtol=1e-5)
    query = torch.randn(64, 8)
    target = torch.randint(0, data.spec.n_items, (64,))
    head.train()
    sampled = head.loss(query, target).detach()
    head.eval()
    full = head.loss(query, target).detach()
    # over S draws from q, sum_j e^(s_j) / q_j estimates S times the full partition function
    # (without the target's own draws, which are masked): the expected loss, row by row, is
    # -log(e^(s_t) / (e^(s_t) + q_t * S * (Z - e^(s_t))))
    with torch.no_grad():
        scores = (query @ head.tokens.item.weight[:-1].T + head.bias).double()
    e_t = scores.gather(1, target[:, None])[:, 0].exp()
    z = scores.exp().sum(1)
    expected = -torch.log(e_t / (e_t + torch.as_tensor(q)[target] * 2000 * (z - e_t))).mean()
    assert torch.isfinite(sampled) and float(sampled) == pytest.approx(float(expected), abs=0.05)
    assert float(full) == pytest.approx(float(-torch.log(e_t / z).mean()), abs=1e-4)
    head.train()
    head.samples = 1
    head.set_sampling(np.r_[1e9, np.zeros(data.spec.n_items - 1)], seed=0)  # always draws item 0
    hit = head.loss(query[:1], torch.tensor([0])).detach()  # the only sample is the target: masked out
    assert float(hit) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_a_sampled_softmax_learns_the_next_item_as_the_full_one_does() -> None:
    """The deterministic i -> i + 7 log (40 items): a softmax over 8 sampled items learns it as the
    full one does (HR@10 about 1.0 for both; popularity about 0.275)."""
    data = prepare_offline(next_item_log())
    pop = evaluate_popularity(data)
    cfg = dict(epochs=5, lr=1e-2, embedding_dim=16, hidden=16)
    _, full = train_offline_network("gru", data, SupervisedConfig(**cfg), seed=0)
    _, sampled = train_offline_network("gru", data, SupervisedConfig(**cfg, softmax_samples=8), seed=0)
    assert pop["hr@10"] < 0.45
    assert full["hr@10"] > 0.9 and sampled["hr@10"] > 0.9
