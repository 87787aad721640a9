"""recsim-ie: Google RecSim's interest-evolution environment behind driftrec's batched interface.

Every rule below is re-derived from RecSim's source (google-research/recsim: the function that
``recsim/environments/interest_evolution.py:create_environment`` assembles, with its defaults),
and each names where it comes from. RecSim itself is neither installed nor copied.
:class:`RecSimIEModel` offers exactly the interface of :class:`~driftrec.envs.shop.ShopModel`, so
the env shells, vector envs, agents and the event log drive it unchanged (``preset="recsim-ie"``).
Reference: Ie et al., "RecSim: A Configurable Simulation Platform for Recommender Systems",
arXiv:1909.04847.

## Documents (``UtilityModelVideoSampler``)
20 clusters (``IEvVideo.NUM_FEATURES``); a document's cluster is uniform over them
(``randint(0, 20)``), its features the one-hot cluster, its length 4 minutes and its hidden
quality ~ Normal(m_c, 0.1) (RecSim's ``quality_variance = 0.1`` is passed as the standard
deviation of ``rng.normal``). The cluster means m are ``linspace(-3, 0, int(20 * 0.7))`` (14
"trashy" clusters 0-13, from -3 to 0) followed by ``linspace(0, 3, int(20 * 0.3))`` (6
"nutritious" clusters 14-19, from 0 to 3): 0 appears twice, for clusters 13 and 14.

**Deliberate deviation 1, a fixed corpus**: RecSim creates ``num_candidates`` brand-new
documents for every request (``resample_documents=True``). Here a corpus of ``n_items``
documents is drawn once from ``world_seed`` (sorted by cluster), so that every document has an
item id for the event log, the history observation and the supervised models. Each request
brings ``n_candidates`` (10) *distinct* documents of the corpus, a uniformly random ordered
sample without replacement from the user's own stream: as in RecSim the candidates are
``n_candidates`` different documents, and since the corpus is an i.i.d. sample, distinct
documents of it have i.i.d. clusters and qualities, exactly as fresh RecSim documents (over
corpora). What differs: a document can come back in a later request, with the same quality.

## User (``UtilityModelUserSampler``, ``IEvUserModel``)
Interest u ~ Uniform(-1, 1)^20, drawn at the start of each life (episode); time budget
``recsim_budget`` (RecSim: ``time_budget = 200.0``) minutes. Fixed per-user constants:
``no_click_mass = 1`` (``IEvUserModel``'s default), ``min_normalizer = -1``,
``step_penalty = 0.5``, ``user_quality_factor = 0``, ``document_quality_factor = 1``,
``user_update_alpha = 0.9 * (1 / 3.4)`` (0.9: the fraction of a video's length that the budget
can move by; 3.4: normalises quality, within about +-3.3, to [-1, 1]).
(RecSim's ``score_scaling`` and ``attention_prob`` feed only its cascade models, unused here.)

## Choice (``MultinomialProportionalChoiceModel``, the model ``create_environment`` passes)
Score of a document = u . features = u_c for its cluster c; every score and the no-click mass
are shifted by ``-min_normalizer``: weight u_c + 1 per document, 1 + 1 = 2 for no click, and
P(click doc i) = (u_{c_i} + 1) / (sum over the slate of (u_{c_j} + 1) + 2). At most one click;
position plays no role.

**Deliberate deviation 2, duplicates**: RecSim shows a candidate index repeated in a slate twice
(two terms in the sum). driftrec applies the duplicates rule of every driftrec model: a document
repeated in a slate is shown only at its first position and counted once. A slate of distinct
candidates (hence distinct documents) is unaffected.

## Response and state update, in RecSim's order (``simulate_response``, ``update_state``)
1. Choose (above). On a click the user watches w = min(budget, length) (``_generate_click_response``).
2. On a click on cluster c, with the interest u before the update:
   - interest (``update_state``): step a = (-0.3 / 1) |u_c| + 0.3 = 0.3 (1 - |u_c|)
     (``compute_alpha`` with ``alpha_x_intercept = 1``, ``alpha_y_intercept = 0.3``); the target
     is features - u and the mask the one-hot features, so only u_c moves, by a (1 - u_c): up
     with probability (u_c + 1) / 2, else down; then u is clipped to [-1, 1];
   - budget: received utility = user_quality_factor * (u_c + 1) + document_quality_factor *
     quality = quality; ``budget -= w``, then ``budget += user_update_alpha * w * quality``.
     A click costs w (1 - 0.2647 quality) minutes: a document of quality above 3.4 / 0.9 = 3.78
     would lengthen the life, one of negative quality shortens it by more than w. A click that
     watches the last w = budget minutes leaves 0.2647 w quality, positive for a good document:
     the life then goes on until a step without a click (or a click on a bad document).
3. Without a click: ``budget -= step_penalty`` (0.5 minutes); the interest is unchanged.

## Reward and episode end
Reward (and ``StepOutput.watch``) is the watch time w of the clicked document, 0 without a
click (``clicked_watchtime_reward``). Terminated when the budget is <= 0 (``is_terminal``),
checked after the update. Simulated time advances by the minutes spent (w, or 0.5 without a
click) so that the event log has timestamps; ``horizon_days`` truncation is a driftrec addition
that the defaults never reach: a watched minute costs 1 - 0.2647 quality >= about 0.1 minutes of
budget (the corpus's qualities stay below 3.4) and a step without a click 0.5 minutes of both,
so a 200-minute budget lasts under about 2000 minutes (1.4 days). There are no carts,
purchases, sessions or organic events.

## Observation (``layout`` names the slices)
| part | width | bounds | meaning |
|---|---|---|---|
| interest | 20 | [-1, 1] | the user's interest vector (RecSim's user observation) |
| candidates | M * 20 | [0, 1] | one-hot cluster of each candidate (RecSim's document features) |
| hidden_quality (oracle) | M | corpus min/max | quality of each candidate |
| hidden_budget (oracle) | 1 | [0, budget max] | remaining budget in minutes (0 once spent) |

``history`` mode is a Dict of these ``features`` plus ``item_ids`` (the last ``history_len``
clicked documents, oldest to newest, padded with ``n_items``) and ``behaviours`` (CLICK codes,
0 pads), the same keys as ShopSim.

**Deliberate deviation 3, no response observation**: RecSim's observation also holds the
previous step's responses, one per slate position: click, watch_time, liked (always 0),
quality and cluster_id. driftrec returns the click and watch time as the reward and in the
event log (and the clicked ids in ``history``), but not the quality of the documents shown,
which with a fixed corpus would reveal the hidden quality of documents that come back.

## Action
Candidates mode only: ``Discrete(M)`` for a slate of one, ``MultiDiscrete([M] * K)`` otherwise;
K <= M, as RecSim's environment asserts.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

import driftrec.envs.rng as rngs
from driftrec.envs.choice import sample_choice
from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.layout import Layout, observation_space, slate_action_space
from driftrec.envs.shop import MINUTES_PER_DAY, shown_mask
from driftrec.envs.state import BEHAVIOURS, CLICK, PAD, StepOutput, copy_state, set_rows, take_rows

# --- documents: interest_evolution.UtilityModelVideoSampler --------------------------------------------
N_TOPICS = 20  # IEvVideo.NUM_FEATURES = IEvUserState.NUM_FEATURES: clusters, features and interests
DOC_LENGTH = 4.0  # video_length=4.0 minutes, every document
QUALITY_STD = 0.1  # "quality_variance = 0.1", passed as the scale (standard deviation) of rng.normal
MIN_UTILITY, MAX_UTILITY = -3.0, 3.0
# cluster quality means: int(20 * 0.7) = 14 "trashy" clusters (-3 .. 0), then int(20 * 0.3) = 6 "nutritious" (0 .. 3)
CLUSTER_MEANS = np.concatenate([np.linspace(MIN_UTILITY, 0.0, int(N_TOPICS * 0.7)),
                                np.linspace(0.0, MAX_UTILITY, int(N_TOPICS * 0.3))])

# --- user: interest_evolution.UtilityModelUserSampler and IEvUserModel ---------------------------------
RECSIM_NO_CLICK_MASS = 1.0  # IEvUserModel(no_click_mass=1.0), handed to the user sampler
MIN_NORMALIZER = -1.0  # subtracted from every score (and the no-click mass) by the proportional model
NO_CLICK_WEIGHT = RECSIM_NO_CLICK_MASS - MIN_NORMALIZER  # 2: the weight of not clicking
NO_CLICK_MASS = NO_CLICK_WEIGHT  # older name of the no-click *weight*, still imported by agents/policies.py
STEP_PENALTY = 0.5  # minutes of budget a step without a click costs
USER_QUALITY_FACTOR = 0.0  # weight of the expected utility (the click score) in the budget update
DOCUMENT_QUALITY_FACTOR = 1.0  # weight of the document's quality in the budget update
USER_UPDATE_ALPHA = 0.9 * (1.0 / 3.4)  # alpha * utility_range, evaluated as RecSim does
ALPHA_X_INTERCEPT, ALPHA_Y_INTERCEPT = 1.0, 0.3  # IEvUserModel: interest step (-y / x) |u| + y
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
    quality = CLUSTER_MEANS[category] + QUALITY_STD * rng.standard_normal(n)  # loc + scale * z, as rng.normal
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
    cand: np.ndarray  # (N, M) int64 distinct candidate documents of the pending request


class RecSimIEModel:
    """RecSim interest evolution bound to one config: spaces, layout and the pure batched dynamics."""

    READS: frozenset[str] = frozenset({
        "model", "obs_mode", "action_mode", "slate_size", "n_candidates", "history_len", "horizon_days",
        "world_seed", "n_items", "n_categories", "topic_dim", "recsim_budget",
    })
    """The :class:`~driftrec.envs.config.SimConfig` keys this model reads (``n_categories``,
    ``topic_dim``, ``model`` and ``action_mode`` only to check them); every other key is ignored."""

    def __init__(self, cfg: SimConfig):
        if cfg.model != "recsim-ie":
            raise ConfigError(f"config key 'model' must be 'recsim-ie' for RecSimIEModel, got {cfg.model!r}")
        cfg.refuse_unread(self.READS)
        if cfg.action_mode != "candidates":
            raise ConfigError(f"config key 'action_mode' must be 'candidates' for model 'recsim-ie', "
                              f"got {cfg.action_mode!r}")
        for key in ("n_categories", "topic_dim"):
            if getattr(cfg, key) != N_TOPICS:
                raise ConfigError(f"config key '{key}' must be {N_TOPICS} for model 'recsim-ie', "
                                  f"got {getattr(cfg, key)!r}")
        if cfg.n_candidates > cfg.n_items:
            raise ConfigError(f"config key 'n_candidates' ({cfg.n_candidates}) must be <= n_items ({cfg.n_items})")
        if cfg.slate_size > cfg.n_candidates:  # RecSim's Environment asserts slate_size <= num_candidates
            raise ConfigError(f"config key 'slate_size' ({cfg.slate_size}) must be <= n_candidates "
                              f"({cfg.n_candidates}) for model 'recsim-ie'")
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
        """Largest budget a user can reach: a click changes it by w (alpha * quality - 1)
        (user_quality_factor is 0), which is never positive unless the corpus holds a document of
        quality above 3.4 / 0.9."""
        if USER_UPDATE_ALPHA * DOCUMENT_QUALITY_FACTOR * float(self.world.quality.max()) <= 1.0:
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
            interest=2.0 * u - 1.0,  # rng.uniform(-1.0, 1.0, 20)
            budget=np.full(n, float(self.cfg.recsim_budget)), time=np.zeros(n),
            hist_item=np.full((n, self.cfg.history_len), -1, dtype=np.int64), hist_n=zero.copy(),
            cand=self._candidates(key, zero),
        )

    def reset_where(self, state: RecSimIEState, mask: np.ndarray) -> None:
        """In place: start the next life in the slots where ``mask`` (autoreset)."""
        rows = np.flatnonzero(mask)
        if rows.size:
            set_rows(state, rows, self.init(state.slot_key[rows], state.episode[rows] + 1))

    def _candidates(self, key: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(N, M) distinct documents, a uniformly random ordered sample of the corpus without
        replacement (RecSim's M candidates are M different documents).

        M <= I / 2: M uniform draws, then every repeat of a document drawn at an earlier position
        is drawn again (from further columns of the same stream) until none is left. Each round
        depends on which draws are equal, never on the ids themselves, so the result is the same
        in law for every relabelling of the corpus: uniform over ordered samples. Denser requests
        take the first M of a random permutation (random keys), where repeats would be frequent."""
        m, n_docs = self.m, self.cfg.n_items
        if 2 * m > n_docs:
            u = rngs.uniforms(key, rngs.STREAM_CANDIDATES, t, n_docs)
            return np.argsort(u, axis=1, kind="stable")[:, :m].astype(np.int64)
        cand = (rngs.uniforms(key, rngs.STREAM_CANDIDATES, t, m) * n_docs).astype(np.int64)
        rows, rounds = np.arange(len(t)), 0
        while True:
            ranked = np.sort(cand[rows], axis=1)  # cheap test first: few requests hold a repeat
            rows = rows[(ranked[:, 1:] == ranked[:, :-1]).any(axis=1)]
            if not rows.size:
                return cand
            repeat = _repeats(cand[rows])
            rounds += 1
            fresh = rngs.uniforms(key[rows], rngs.STREAM_CANDIDATES, t[rows], (rounds + 1) * m)[:, rounds * m:]
            sub = cand[rows]
            sub[repeat] = (fresh[repeat] * n_docs).astype(np.int64)
            cand[rows] = sub

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
        """One request for every user, in RecSim's order: choice, watch time, interest update,
        budget update, termination, next candidates. Pure unless ``inplace`` (shells that own the
        state use it)."""
        if not inplace:
            state = copy_state(state)
        w = self.world
        n = len(state.t)
        rows = np.arange(n)
        items = self.slate_items(state, action)
        u = rngs.uniforms(state.key, rngs.STREAM_STEP, state.t, N_STEP_DRAWS)
        time0 = state.time.copy()

        # simulate_response: choose, and watch min(budget, length) of the clicked document
        shown = shown_mask(items)
        cats = w.category[items]
        probs = self._probs(state.interest, cats, shown)
        choice = sample_choice(probs, u[:, _U_CHOICE])
        click = choice < self.k
        item_c = items[rows, np.minimum(choice, self.k - 1)]
        watch = np.where(click, self._watch(state.budget, item_c), 0.0)

        # update_state on a click: the interest first, then the budget
        r = np.flatnonzero(click)
        score = np.zeros(n)
        if r.size:
            c = cats[r, choice[r]]
            uc = state.interest[r, c]
            score[r] = uc - MIN_NORMALIZER  # the choice model's score of the clicked document (before the update)
            alpha = (-ALPHA_Y_INTERCEPT / ALPHA_X_INTERCEPT) * np.abs(uc) + ALPHA_Y_INTERCEPT
            update = alpha * (1.0 - uc)  # alpha * mask * (features - u) at the clicked topic; 0 elsewhere
            up = u[r, _U_FLIP] < (uc + 1.0) / 2  # positive_update_prob = ((u + 1) / 2) . mask
            state.interest[r, c] = np.clip(np.where(up, uc + update, uc - update), -1.0, 1.0)
            slot = state.hist_n[r] % self.cfg.history_len
            state.hist_item[r, slot] = item_c[r]
            state.hist_n[r] += 1
        received = USER_QUALITY_FACTOR * score + DOCUMENT_QUALITY_FACTOR * w.quality[item_c]
        refilled = (state.budget - watch) + USER_UPDATE_ALPHA * watch * received
        state.budget = np.where(click, refilled, state.budget - STEP_PENALTY)
        state.time += np.where(click, watch, STEP_PENALTY) / MINUTES_PER_DAY
        state.t += 1
        state.cand = self._candidates(state.key, state.t)

        terminated = state.budget <= 0.0  # is_terminal
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

    # ----------------------------------------------------------------------------- expected values
    def choice_probs(self, state: RecSimIEState, items: np.ndarray) -> np.ndarray:
        """(N, K + 1) choice probabilities of a slate of document ids, exactly as ``step`` samples them."""
        items = np.asarray(items, dtype=np.int64)
        return self._probs(state.interest, self.world.category[items], shown_mask(items))

    def click_values(self, state: RecSimIEState, items: np.ndarray) -> np.ndarray:
        """(N, X) expected reward of the step given that the user clicks document ``items[n, x]``:
        the watch time min(budget, length) it gives (0 for a user whose budget is spent)."""
        return self._watch(state.budget[:, None], np.asarray(items, dtype=np.int64))

    def one_item_expected_rewards(self, state: RecSimIEState, items: np.ndarray,
                                  rows: slice | np.ndarray = slice(None)) -> np.ndarray:
        """(N, X) expected immediate reward of showing document ``items[n, x]`` alone, as a
        one-document slate: P(click) * watch time, with P(click) = (u_c + 1) / (u_c + 1 + 2).

        ``rows`` selects users of ``state``; ``items`` is already restricted to those rows."""
        items = np.asarray(items, dtype=np.int64)
        weight = self._click_weight(state.interest[rows], self.world.category[items])
        return weight / (weight + NO_CLICK_WEIGHT) * self._watch(state.budget[rows][:, None], items)

    def _watch(self, budget: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Watch time of a click on ``items``: min(budget, length), and 0 once the budget is spent
        (only a caller stepping a finished user, which the shells never do, sees that case)."""
        return np.clip(budget, 0.0, self.world.length[items])

    @staticmethod
    def _click_weight(interest: np.ndarray, cats: np.ndarray) -> np.ndarray:
        """Proportional-choice weight of documents of clusters ``cats``: score u . one-hot = u_c, minus
        min_normalizer."""
        return np.take_along_axis(interest, cats, axis=1) - MIN_NORMALIZER

    @classmethod
    def _probs(cls, interest: np.ndarray, cats: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """Proportional choice: weight u_c + 1 per shown position, NO_CLICK_WEIGHT for no click."""
        weight = cls._click_weight(interest, cats) * shown
        probs = np.empty((len(cats), cats.shape[1] + 1))
        denom = weight.sum(axis=1, keepdims=True) + NO_CLICK_WEIGHT
        np.divide(weight, denom, out=probs[:, :-1])
        np.divide(NO_CLICK_WEIGHT, denom[:, 0], out=probs[:, -1])
        return probs


def _repeats(a: np.ndarray) -> np.ndarray:
    """(N, M) bool: ``a[n, j]`` equals ``a[n, i]`` for some earlier position i < j."""
    order = np.argsort(a, axis=1, kind="stable")  # equal values keep their position order
    ranked = np.take_along_axis(a, order, axis=1)
    later = np.zeros(a.shape, dtype=bool)
    later[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    out = np.empty_like(later)
    np.put_along_axis(out, order, later, axis=1)
    return out
