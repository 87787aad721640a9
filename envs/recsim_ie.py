"""recsim-ie: Google RecSim's interest-evolution user model behind driftrec's batched interface.

Written from the facts listed in DESIGN.md (Ie et al., "RecSim: A Configurable Simulation
Platform for Recommender Systems", arXiv:1909.04847, ``recsim/environments/interest_evolution.py``);
RecSim itself is neither installed nor copied. :class:`RecSimIEModel` offers exactly the
interface of :class:`~driftrec.envs.shop.ShopModel`, so the env shells, vector envs, agents and
the event log drive it unchanged (``preset="recsim-ie"``).

## Documents
A corpus of ``n_items`` documents drawn once from ``world_seed``: cluster uniform over 20
topics (the corpus is sorted by cluster), features the one-hot cluster, length 4 minutes and a
hidden quality ~ Normal(m_c, 0.1), where m is 14 values evenly spaced from -3 to 0 (clusters
0-13) then 6 values from 0 to 3 (clusters 14-19). Each request brings ``n_candidates`` (10)
documents drawn uniformly from the corpus, independently and with replacement, from the
user's own stream.

**The one deliberate deviation from RecSim**: RecSim creates brand-new documents for every
request; here they are sampled from a fixed corpus, so that every document has an item id for
the event log, the history observation and the supervised models. A document's features are
only its cluster (and its quality a draw around the cluster mean), so a large ``n_items``
approaches fresh sampling.

## User
Interest u ~ Uniform(-1, 1)^20, redrawn each life (episode), observable. Time budget
``recsim_budget`` (200) minutes.

## Choice (at most one click; position plays no role)
P(click doc i) = (u[c_i] + 1) / (sum over the slate of (u[c_j] + 1) + 2); the remaining mass is
no click. Duplicates rule of ShopSim: a document repeated in a slate is shown only at its first
position, so it is counted once in the denominator.

## Response
After a click on cluster c: a = 0.3 (1 - |u_c|); with probability (u_c + 1) / 2,
u_c += a (1 - u_c), else u_c -= a (1 - u_c); clipped to [-1, 1]. The user watches
w = min(budget, length): budget -= w, then budget += 0.9 / 3.4 * w * quality. A step without a
click costs 0.5 minutes of budget.

## Reward and episode end
Reward (and ``StepOutput.watch``) is the watch time w of the clicked document, 0 without a
click. Terminated when the budget is <= 0. Simulated time advances by the minutes spent (w, or
0.5 without a click), so ``horizon_days`` truncation is kept but never reached by the default
budget. There are no carts, purchases, sessions or organic events.

## Observation (``layout`` names the slices)
| part | width | bounds | meaning |
|---|---|---|---|
| interest | 20 | [-1, 1] | the user's interest vector |
| candidates | M * 20 | [0, 1] | one-hot cluster of each candidate |
| hidden_quality (oracle) | M | corpus min/max | quality of each candidate |
| hidden_budget (oracle) | 1 | [0, budget max] | remaining budget in minutes (0 once spent) |

``history`` mode is a Dict of these ``features`` plus ``item_ids`` (the last ``history_len``
clicked documents, oldest to newest, padded with ``n_items``) and ``behaviours`` (CLICK codes,
0 pads), the same keys as ShopSim.

## Action
Candidates mode only: ``Discrete(M)`` for a slate of one, ``MultiDiscrete([M] * K)`` otherwise.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from driftrec.envs import rng as rngs
from driftrec.envs.choice import sample_choice
from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.layout import Layout, observation_space, slate_action_space
from driftrec.envs.shop import MINUTES_PER_DAY, shown_mask
from driftrec.envs.state import BEHAVIOURS, CLICK, PAD, StepOutput, copy_state, set_rows, take_rows

N_TOPICS = 20  # RecSim's interest_evolution fixes 20 topics (clusters)
DOC_LENGTH = 4.0  # minutes of every document
QUALITY_STD = 0.1  # spread of a document's quality around its cluster mean
# cluster quality means: 14 low-quality clusters (-3 .. 0) then 6 high-quality ones (0 .. 3)
CLUSTER_MEANS = np.concatenate([np.linspace(-3.0, 0.0, 14), np.linspace(0.0, 3.0, 6)])
NO_CLICK_MASS = 2.0  # added to the choice denominator: the weight of not clicking
STEP_SIZE = 0.3  # interest update a = STEP_SIZE * (1 - |u_c|)
BUDGET_REFILL = 0.9 / 3.4  # budget regained per watched minute per unit quality
NO_CLICK_COST = 0.5  # minutes of budget a step without a click costs
# columns of the per-step uniforms
_U_CHOICE, _U_FLIP = range(2)
N_STEP_DRAWS = 2


@dataclasses.dataclass(frozen=True)
class RecSimWorld:
    """The document corpus every user shares. Arrays are read-only once built.

    Holds the fields of :class:`~driftrec.envs.world.World` that logs and agents read from any
    model (``category``, ``quality``, ``price``, ``cat_start``, ``cat_count``).
    """

    category: np.ndarray  # (I,) int64 cluster of each document, sorted ascending
    quality: np.ndarray  # (I,) float64 hidden quality ~ Normal(cluster_mean[category], 0.1)
    length: np.ndarray  # (I,) float64 document length in minutes (4.0)
    price: np.ndarray  # (I,) float64 zeros: documents are free (the event log's price column)
    cat_start: np.ndarray  # (C,) first document id of each cluster
    cat_count: np.ndarray  # (C,) documents per cluster (may be 0 for a tiny corpus)
    cluster_mean: np.ndarray  # (C,) mean quality of each cluster (CLUSTER_MEANS)


def build_recsim_world(cfg: SimConfig) -> RecSimWorld:
    """Draw the corpus of ``cfg.n_items`` documents from ``cfg.world_seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.world_seed, 0x2EC5]))
    n = cfg.n_items
    category = np.sort(rng.integers(0, N_TOPICS, size=n))  # sorted, like ShopSim's catalog
    counts = np.bincount(category, minlength=N_TOPICS).astype(np.int64)
    quality = CLUSTER_MEANS[category] + QUALITY_STD * rng.standard_normal(n)
    world = RecSimWorld(
        category=category, quality=quality, length=np.full(n, DOC_LENGTH), price=np.zeros(n),
        cat_start=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64), cat_count=counts,
        cluster_mean=CLUSTER_MEANS.copy(),
    )
    for field in dataclasses.fields(world):
        getattr(world, field.name).flags.writeable = False
    return world


@dataclasses.dataclass
class RecSimIEState:
    """Batch state of N users; every field has the users axis first."""

    slot_key: np.ndarray  # (N,) uint64 stream key of the slot (from the seed)
    episode: np.ndarray  # (N,) int64 how many lives this slot has started before this one
    key: np.ndarray  # (N,) uint64 stream key of this life
    t: np.ndarray  # (N,) int64 requests served in this life (the step counter of the stream)
    user_id: np.ndarray  # (N,) int64 id of this life in the event log
    interest: np.ndarray  # (N, 20) float64 interest per topic, in [-1, 1] (observable)
    budget: np.ndarray  # (N,) float64 time budget left, minutes (hidden; <= 0 ends the life)
    time: np.ndarray  # (N,) float64 days since the life began (minutes spent / 1440)
    hist_item: np.ndarray  # (N, H) int64 ring buffer of clicked document ids (-1 empty)
    hist_n: np.ndarray  # (N,) int64 clicks ever written (next slot is hist_n % H)
    cand: np.ndarray  # (N, M) int64 candidate documents of the pending request


class RecSimIEModel:
    """RecSim interest evolution bound to one config: spaces, layout and the pure batched dynamics."""

    def __init__(self, cfg: SimConfig):
        if cfg.action_mode != "candidates":
            raise ConfigError(f"config key 'action_mode' must be 'candidates' for model 'recsim-ie', "
                              f"got {cfg.action_mode!r}")
        for key in ("n_categories", "topic_dim"):
            if getattr(cfg, key) != N_TOPICS:
                raise ConfigError(f"config key '{key}' must be {N_TOPICS} for model 'recsim-ie', "
                                  f"got {getattr(cfg, key)!r}")
        self.cfg = cfg
        self.world = build_recsim_world(cfg)
        self.k = cfg.slate_size
        self.m = cfg.n_candidates
        self.n_cat = N_TOPICS
        self.dim = N_TOPICS
        self.budget_max = self._budget_max()
        self.layout = self._layout()
        self.action_space = slate_action_space(self.m, self.k)
        self.observation_space = observation_space(self.layout, cfg.obs_mode, cfg.history_len, cfg.n_items,
                                                  len(BEHAVIOURS))
        # flat offsets of the candidates' one-hot blocks, for one scatter per observe
        self._cand_offsets = self.layout["candidates"].start + N_TOPICS * np.arange(self.m, dtype=np.int64)

    # ----------------------------------------------------------------------------- spaces
    def _layout(self) -> Layout:
        lay = Layout()
        lay.add("interest", N_TOPICS, -1.0, 1.0, "the user's interest in each topic")
        lay.add("candidates", self.m * N_TOPICS, 0.0, 1.0, "one-hot cluster of each candidate document")
        if self.cfg.obs_mode == "oracle":
            q = self.world.quality
            lay.add("hidden_quality", self.m, float(q.min()), float(q.max()), "quality of each candidate document")
            lay.add("hidden_budget", 1, 0.0, self.budget_max, "time budget left in minutes (0 once spent)")
        return lay

    def _budget_max(self) -> float:
        """Largest budget a user can reach: a click changes it by w (refill * quality - 1), which is
        never positive unless the corpus holds a document of quality above 3.4 / 0.9."""
        if BUDGET_REFILL * float(self.world.quality.max()) <= 1.0:
            return self.cfg.recsim_budget
        return math.inf

    # ----------------------------------------------------------------------------- reset
    def init(self, slot_key: np.ndarray, episode: np.ndarray) -> RecSimIEState:
        """Fresh users: the ``episode``-th life of each slot stream."""
        slot_key = np.asarray(slot_key, dtype=np.uint64).reshape(-1)
        episode = np.asarray(episode, dtype=np.int64).reshape(-1)
        n = len(slot_key)
        key = rngs.episode_key(slot_key, episode)
        zero = np.zeros(n, dtype=np.int64)
        u = rngs.uniforms(key, rngs.STREAM_INIT, zero, N_TOPICS)
        return RecSimIEState(
            slot_key=slot_key, episode=episode, key=key, t=zero.copy(),
            user_id=(key >> np.uint64(1)).astype(np.int64),
            interest=2.0 * u - 1.0, budget=np.full(n, float(self.cfg.recsim_budget)), time=np.zeros(n),
            hist_item=np.full((n, self.cfg.history_len), -1, dtype=np.int64), hist_n=zero.copy(),
            cand=self._candidates(key, zero),
        )

    def reset_where(self, state: RecSimIEState, mask: np.ndarray) -> None:
        """In place: start the next life in the slots where ``mask`` (autoreset)."""
        rows = np.flatnonzero(mask)
        if rows.size:
            set_rows(state, rows, self.init(state.slot_key[rows], state.episode[rows] + 1))

    def _candidates(self, key: np.ndarray, t: np.ndarray) -> np.ndarray:
        """M documents drawn uniformly from the corpus, independently and with replacement (as
        RecSim's document sampler draws each candidate independently)."""
        u = rngs.uniforms(key, rngs.STREAM_CANDIDATES, t, self.m)
        return (u * self.cfg.n_items).astype(np.int64)

    # ----------------------------------------------------------------------------- step
    def slate_items(self, state: RecSimIEState, action: np.ndarray) -> np.ndarray:
        """(N, K) document ids of an action batch (candidate indices mapped through ``state.cand``)."""
        a = np.asarray(action, dtype=np.int64).reshape(len(state.t), self.k)
        if a.size and (a.min() < 0 or a.max() >= self.m):
            bad = a[(a < 0) | (a >= self.m)][0]
            raise ValueError(f"action out of range: candidate index {bad} not in [0, {self.m})")
        return np.take_along_axis(state.cand, a, axis=1)

    def step(self, state: RecSimIEState, action: np.ndarray,
             inplace: bool = False) -> tuple[RecSimIEState, StepOutput]:
        """One request for every user. Pure unless ``inplace`` (shells that own the state use it)."""
        if not inplace:
            state = copy_state(state)
        w = self.world
        n = len(state.t)
        rows = np.arange(n)
        items = self.slate_items(state, action)
        u = rngs.uniforms(state.key, rngs.STREAM_STEP, state.t, N_STEP_DRAWS)
        time0 = state.time.copy()

        shown = shown_mask(items)
        cats = w.category[items]
        probs = self._probs(state.interest, cats, shown)
        choice = sample_choice(probs, u[:, _U_CHOICE])
        click = choice < self.k
        item_c = items[rows, np.minimum(choice, self.k - 1)]

        # watch time and budget, in the order RecSim applies them
        # a user stepped after their budget ran out (outside the shells, which reset) watches nothing
        watch = np.where(click, np.clip(state.budget, 0.0, w.length[item_c]), 0.0)
        spent = state.budget - watch
        state.budget = np.where(click, spent + BUDGET_REFILL * watch * w.quality[item_c], state.budget - NO_CLICK_COST)
        state.time += np.where(click, watch, NO_CLICK_COST) / MINUTES_PER_DAY

        r = np.flatnonzero(click)
        if r.size:
            c = cats[r, choice[r]]
            uc = state.interest[r, c]
            delta = STEP_SIZE * (1.0 - np.abs(uc)) * (1.0 - uc)
            up = u[r, _U_FLIP] < 0.5 * (uc + 1.0)
            state.interest[r, c] = np.clip(np.where(up, uc + delta, uc - delta), -1.0, 1.0)
            slot = state.hist_n[r] % self.cfg.history_len
            state.hist_item[r, slot] = item_c[r]
            state.hist_n[r] += 1
        state.t += 1
        state.cand = self._candidates(state.key, state.t)

        terminated = state.budget <= 0.0
        truncated = ~terminated & (state.time >= self.cfg.horizon_days)
        never = np.zeros(n, dtype=bool)
        none = np.full(n, -1, dtype=np.int64)
        out = StepOutput(
            reward=watch, terminated=terminated, truncated=truncated, items=items, shown=shown,
            click_pos=np.where(click, choice, -1), cart=never, purchase=never.copy(), watch=watch.copy(),
            time=time0, session=np.zeros(n, dtype=np.int64), search_cat=none, view_item=none.copy(),
            organic_time=state.time.copy(), organic_session=np.zeros(n, dtype=np.int64),
        )
        return state, out

    # ----------------------------------------------------------------------------- observation
    def observe(self, state: RecSimIEState, rows: np.ndarray | None = None) -> np.ndarray | dict[str, np.ndarray]:
        """Fresh observation arrays for the batch (or its ``rows``), laid out as ``self.layout``."""
        if rows is not None:
            state = take_rows(state, rows)
        lay, n = self.layout, len(state.t)
        obs = np.zeros((n, lay.size), dtype=np.float32)
        obs[:, lay["interest"]] = state.interest
        # one scatter sets every candidate's one-hot cluster
        flat = (np.arange(n, dtype=np.int64) * lay.size)[:, None] + self._cand_offsets + self.world.category[state.cand]
        obs.reshape(-1)[flat] = 1.0
        if self.cfg.obs_mode == "oracle":
            obs[:, lay["hidden_quality"]] = self.world.quality[state.cand]
            obs[:, lay["hidden_budget"].start] = np.clip(state.budget, 0.0, self.budget_max)
        if self.cfg.obs_mode != "history":
            return obs
        h = self.cfg.history_len
        order = (state.hist_n[:, None] + np.arange(h)[None, :]) % h  # oldest ... newest
        item = np.take_along_axis(state.hist_item, order, axis=1)
        empty = item < 0
        return {
            "features": obs,
            "item_ids": np.where(empty, self.cfg.n_items, item),
            "behaviours": np.where(empty, PAD, CLICK).astype(np.int64),
        }

    def action_masks(self, state: RecSimIEState) -> np.ndarray:
        """(N, M * K) valid-action mask for MaskablePPO: every candidate is valid at every position
        (duplicates are allowed by the duplicates rule)."""
        return np.ones((len(state.t), self.m * self.k), dtype=bool)

    # ----------------------------------------------------------------------------- helpers
    def choice_probs(self, state: RecSimIEState, items: np.ndarray) -> np.ndarray:
        """(N, K + 1) choice probabilities of a slate of document ids, exactly as ``step`` samples them."""
        items = np.asarray(items, dtype=np.int64)
        return self._probs(state.interest, self.world.category[items], shown_mask(items))

    @staticmethod
    def _probs(interest: np.ndarray, cats: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """Proportional choice: weight u[c] + 1 per shown position, NO_CLICK_MASS for no click."""
        weight = (np.take_along_axis(interest, cats, axis=1) + 1.0) * shown
        probs = np.empty((len(cats), cats.shape[1] + 1))
        denom = weight.sum(axis=1, keepdims=True) + NO_CLICK_MASS
        np.divide(weight, denom, out=probs[:, :-1])
        np.divide(NO_CLICK_MASS, denom[:, 0], out=probs[:, -1])
        return probs
