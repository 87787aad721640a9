"""Statistics of ``driftrec compare``: means with stratified bootstrap CIs, IQM over seeds, paired differences.

The tables (see :mod:`driftrec.experiments.compare`):

- ``results``: one row per (preset, seed, policy) with the summary metrics of
  :func:`driftrec.agents.evaluate.evaluate_policy`, ``family``, ``regret`` and training cost;
- ``users``: one row per (preset, seed, policy, user_id) with the per-user outcomes. Within a
  (preset, seed) every policy meets the same users (common random numbers), so differences
  between two policies can be taken user by user.

Two levels of noise are in play: users within a seed, and seeds (each a catalog and a set of
users). The headline estimate is the mean over seeds of the per-seed mean reward per user. Its
CI comes from a *stratified* bootstrap: users are resampled within each seed, never across, and
the statistic is recomputed as the mean of the per-seed means. ``scipy.stats.bootstrap`` given
several samples resamples each one independently, which is exactly that; with one seed it is
the per-user CI of ``agents/evaluate.py`` (same method, same seed, the same numbers). The IQM
over seeds with a bootstrap over seeds follows rliable (Agarwal et al. 2021, "Deep RL at the
edge of the statistical precipice"), computed with ``scipy.stats.trim_mean`` as rliable does.

Everything is deterministic: each bootstrap draws from ``np.random.default_rng(ci_seed)``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from driftrec.agents.evaluate import BCA_MAX_USERS, CONFIDENCE, N_RESAMPLES
from driftrec.agents.plugins import ORACLE_FAMILY

ORACLE = "oracle-greedy"
"""Reads the hidden user state and maximises the immediate reward: the myopic reference."""
PLANNER = "oracle-planner"
"""Reads the hidden user state and plans beyond one step: the upper reference."""
HIDDEN_STATE = (ORACLE, PLANNER)
"""The references that read the hidden user state: never deployable, never 'the best policy'."""
KIND_BEST = "best vs runner-up"
"""Comparison kind: the best deployable policy of a preset against the second best."""
KIND_RL = "rl vs best supervised"
"""Comparison kind: an RL agent against the best supervised model of the preset."""
COMPARISON_COLUMNS = ("preset", "kind", "a", "b", "diff", "low", "high", "significant", "seeds")
"""Columns of :func:`comparisons`."""
KEYS = ("preset", "seed", "policy")
SKIPPED = ("family", "reward", "reward_ci_low", "reward_ci_high")
"""Columns of ``results`` that :func:`aggregate` does not average over seeds (the per-seed CIs
are superseded by the stratified one)."""


def _scipy_stats() -> Any:
    """``scipy.stats``, imported on first use: it takes most of a second, which ``driftrec compare
    --help`` and ``--show-config`` should not wait for."""
    from scipy import stats

    return stats


def iqm(values: ArrayLike) -> float:
    """Interquartile mean: the mean of the middle 50% of ``values``, NaNs ignored.

    rliable's definition, ``scipy.stats.trim_mean(values, 0.25)``: ``floor(n / 4)`` values are cut
    from each end (1..8 -> mean of 3..6; with fewer than 4 values nothing is cut). NaN if no
    finite value is left.
    """
    x = _finite(values)
    return float(_scipy_stats().trim_mean(x, 0.25)) if x.size else math.nan


def significant(low: float, high: float) -> bool:
    """Whether the CI [low, high] excludes 0 (False for a NaN CI: nothing is established)."""
    return bool(low > 0 or high < 0)


def stratified_ci(strata: Sequence[ArrayLike], *, ci_seed: int = 0, confidence: float = CONFIDENCE,
                  n_resamples: int = N_RESAMPLES, method: str | None = None) -> tuple[float, float, float]:
    """The mean of the stratum means and its stratified bootstrap CI: ``(mean, low, high)``.

    Each stratum (the users of one seed) is resampled on its own by ``scipy.stats.bootstrap``
    (several samples are resampled independently); the statistic is the mean of the per-stratum
    means. ``method`` is "BCa" or "percentile"; None picks as :func:`driftrec.agents.evaluate.bootstrap_ci`
    does (BCa up to ``BCA_MAX_USERS`` values in all, percentile above), so one stratum gives
    exactly that function's CI. NaN values are ignored and a stratum without a finite value is
    left out; a stratum of one value or of equal values has a constant mean and is not resampled.
    No strata: all NaN. Every stratum constant: the CI is the point (mean, mean).
    """
    samples = [x for x in (_finite(s) for s in strata) if x.size]
    if not samples:
        return math.nan, math.nan, math.nan
    mean = float(sum(np.mean(x) for x in samples) / len(samples))
    varying = [x for x in samples if np.ptp(x) > 0]
    if not varying:  # the bootstrap distribution is a point; scipy would warn and give NaN
        return mean, mean, mean
    fixed = sum(float(np.mean(x)) for x in samples if np.ptp(x) == 0)
    n_strata = len(samples)

    def mean_of_means(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        # ``sum`` starts from 0 and adds exactly, so one stratum gives np.mean itself
        return (sum(np.mean(r, axis=axis) for r in resampled) + fixed) / n_strata

    total = sum(x.size for x in varying)
    if method is None:
        method = "BCa" if total <= BCA_MAX_USERS else "percentile"
    with warnings.catch_warnings():  # a degenerate BCa gives NaN, which we return as it is
        stats = _scipy_stats()
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(varying, mean_of_means, n_resamples=n_resamples, confidence_level=confidence,
                              method=method, vectorized=True, rng=np.random.default_rng(ci_seed),
                              batch=max(1, 2**24 // total))  # the same batches as bootstrap_ci: same draws
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def iqm_ci(values: ArrayLike, *, ci_seed: int = 0, confidence: float = CONFIDENCE,
           n_resamples: int = N_RESAMPLES) -> tuple[float, float, float]:
    """IQM of per-seed values and its bootstrap CI over seeds: ``(iqm, low, high)``.

    rliable's runs-level bootstrap: the seeds are resampled, the IQM recomputed, percentile
    interval. With fewer than 3 finite values the CI is NaN (a bootstrap over one or two seeds
    says nothing about the spread of seeds); with 3 to 7 values the IQM cuts nothing or one value
    per end, and a percentile bootstrap of so few seeds is too narrow: read it as a rough guide.
    Equal values give the point (iqm, iqm).
    """
    x = _finite(values)
    centre = iqm(x)
    if x.size < 3:
        return centre, math.nan, math.nan
    if np.ptp(x) == 0:
        return centre, centre, centre
    stats = _scipy_stats()
    res = stats.bootstrap((x,), lambda s, axis=-1: stats.trim_mean(s, 0.25, axis=axis), n_resamples=n_resamples,
                          confidence_level=confidence, method="percentile", vectorized=True,
                          rng=np.random.default_rng(ci_seed))
    return centre, float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_strata(users: pd.DataFrame, a: str, b: str, *, preset: str | None = None,
                  metric: str = "reward") -> list[np.ndarray]:
    """Per seed, ``metric`` of policy ``a`` minus that of ``b``, user by user (joined on user_id).

    ``preset`` selects the rows of one preset (None: ``users`` holds one preset). ValueError (one
    line) if either policy has no users, if a seed holds one policy but not the other, if a
    user_id repeats within a (seed, policy), or if the user ids of ``a`` and ``b`` differ within a
    seed: the difference is only paired on the same users.
    """
    _require(users, ("seed", "policy", "user_id", metric), "users")
    where = f" on preset '{preset}'" if preset is not None else ""
    if preset is not None:
        _require(users, ("preset",), "users")
        users = users[users["preset"] == preset]
    by_policy = {}
    for policy in (a, b):
        rows = users.loc[users["policy"] == policy, ["seed", "user_id", metric]]
        if rows.empty:
            raise ValueError(f"paired difference: policy '{policy}' has no users{where}")
        dup = rows.duplicated(["seed", "user_id"])
        if dup.any():
            seed, uid = rows.loc[dup, ["seed", "user_id"]].iloc[0]
            raise ValueError(f"paired difference: user_id {uid} appears twice for policy '{policy}' in seed {seed}"
                             f"{where}")
        by_policy[policy] = {seed: g.set_index("user_id")[metric] for seed, g in rows.groupby("seed", sort=True)}
    seeds_a, seeds_b = set(by_policy[a]), set(by_policy[b])
    if seeds_a != seeds_b:
        seed = min(seeds_a ^ seeds_b)
        have, lack = (a, b) if seed in seeds_a else (b, a)
        raise ValueError(f"paired difference: seed {seed}{where} has users of '{have}' but none of '{lack}'")
    strata = []
    for seed in sorted(seeds_a):
        xa, xb = by_policy[a][seed], by_policy[b][seed]
        if len(xa) != len(xb) or not xa.index.isin(xb.index).all():
            raise ValueError(f"paired difference: the user ids of '{a}' and '{b}' differ in seed {seed}{where} "
                             "(they must be evaluated on the same users)")
        strata.append((xa - xb.reindex(xa.index)).to_numpy(dtype=np.float64))
    return strata


def paired_difference(users: pd.DataFrame, a: str, b: str, *, preset: str | None = None, metric: str = "reward",
                      ci_seed: int = 0, confidence: float = CONFIDENCE,
                      n_resamples: int = N_RESAMPLES) -> tuple[float, float, float]:
    """``a`` minus ``b`` in ``metric`` on the same users: the mean over seeds of the per-seed mean
    per-user difference and its stratified bootstrap CI, ``(diff, low, high)``.

    See :func:`paired_strata` for the join and its errors, :func:`stratified_ci` for the CI.
    Identical outcomes give exactly (0, 0, 0).
    """
    strata = paired_strata(users, a, b, preset=preset, metric=metric)
    return stratified_ci(strata, ci_seed=ci_seed, confidence=confidence, n_resamples=n_resamples)


def aggregate(results: pd.DataFrame, users: pd.DataFrame, *, ci_seed: int = 0, confidence: float = CONFIDENCE,
              n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """One row per (preset, policy) of ``results``, in their order of first appearance.

    | column | meaning |
    |---|---|
    | preset, policy, family | as in ``results`` |
    | seeds | seeds of this (preset, policy) |
    | reward, reward_low, reward_high | mean over seeds of the per-seed mean reward per user (from ``users``), stratified 95% CI (:func:`stratified_ci`) |
    | reward_iqm, reward_iqm_low, reward_iqm_high | IQM over seeds of the per-seed mean reward, bootstrap CI over seeds (:func:`iqm_ci`; NaN CI below 3 seeds) |
    | every other numeric column of ``results`` | its mean over seeds, NaNs skipped (users, clicks, ..., regret, train_wall_s, env_steps, eval_wall_s) |

    ValueError (one line) if a column is missing or a (preset, policy) of ``results`` has no rows in ``users``.
    """  # noqa: E501 (a table row)
    _require(results, (*KEYS, "family"), "results")
    _require(users, (*KEYS, "reward"), "users")
    per_user = {key: g for key, g in users.groupby(["preset", "policy"], sort=False)}
    skip = set(KEYS) | set(SKIPPED)
    metrics = [c for c in results.columns if c not in skip and pd.api.types.is_numeric_dtype(results[c])]
    rows = []
    for (preset, policy), cell in results.groupby(["preset", "policy"], sort=False):
        group = per_user.get((preset, policy))
        if group is None:
            raise ValueError(f"aggregate: the users table has no rows for policy '{policy}' on preset '{preset}'")
        strata = [g["reward"].to_numpy(dtype=np.float64) for _, g in group.groupby("seed", sort=True)]
        mean, low, high = stratified_ci(strata, ci_seed=ci_seed, confidence=confidence, n_resamples=n_resamples)
        centre, iqm_low, iqm_high = iqm_ci([np.nanmean(s) if np.isfinite(s).any() else math.nan for s in strata],
                                           ci_seed=ci_seed, confidence=confidence, n_resamples=n_resamples)
        rows.append({"preset": preset, "policy": policy, "family": cell["family"].iloc[0],
                     "seeds": int(cell["seed"].nunique()), "reward": mean, "reward_low": low, "reward_high": high,
                     "reward_iqm": centre, "reward_iqm_low": iqm_low, "reward_iqm_high": iqm_high,
                     **{m: float(cell[m].mean()) for m in metrics}})
    columns = ["preset", "policy", "family", "seeds", "reward", "reward_low", "reward_high", "reward_iqm",
               "reward_iqm_low", "reward_iqm_high", *metrics]
    return pd.DataFrame(rows, columns=columns)


def comparisons(users: pd.DataFrame, results: pd.DataFrame, *, ci_seed: int = 0, confidence: float = CONFIDENCE,
                n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """The paired comparisons of each preset (columns :data:`COMPARISON_COLUMNS`).

    Per preset, in order: the best deployable policy (any but the references that read the hidden
    state, :func:`hidden_state`) against the runner-up (kind :data:`KIND_BEST`; needs two deployable policies),
    then each RL agent against the best supervised model (kind :data:`KIND_RL`; needs both
    families). "Best" is the highest mean over seeds of the per-seed mean reward per user; a
    policy whose reward is NaN is never best. ``diff`` is a minus b (:func:`paired_difference`),
    ``low``/``high`` its stratified CI, ``significant`` whether the CI excludes 0.
    """
    _require(results, (*KEYS, "family"), "results")
    _require(users, (*KEYS, "user_id", "reward"), "users")
    rows = []
    for preset, cell in results.groupby("preset", sort=False):
        family = cell.drop_duplicates("policy").set_index("policy")["family"]
        present = users[users["preset"] == preset]
        means = _policy_means(present, family.index)
        ranked = means.dropna().sort_values(ascending=False, kind="stable")
        pairs = []
        deployable = [p for p in ranked.index if p not in hidden_state(cell)]
        if len(deployable) >= 2:
            pairs.append((KIND_BEST, deployable[0], deployable[1]))
        supervised = [p for p in ranked.index if family[p] == "supervised"]
        if supervised:
            pairs += [(KIND_RL, p, supervised[0]) for p in family.index if family[p] == "rl"]
        for kind, a, b in pairs:
            diff, low, high = paired_difference(present, a, b, ci_seed=ci_seed, confidence=confidence,
                                                n_resamples=n_resamples)
            rows.append({"preset": preset, "kind": kind, "a": a, "b": b, "diff": diff, "low": low, "high": high,
                         "significant": significant(low, high),
                         "seeds": int(present.loc[present["policy"] == a, "seed"].nunique())})
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


LADDER_COLUMNS = ("preset", "seeds", "rl", "supervised", "rl_n", "supervised_n", "gap", "gap_low", "gap_high",
                  "rl_eq", "rl_eq_n", "gap_eq", "gap_eq_low", "gap_eq_high",
                  "adapted", "stale", "adapt", "adapt_low", "adapt_high", "plan", "plan_low", "plan_high")
"""Columns of :func:`ladder`."""
EQUAL_EXPERIENCE = 1.25
"""The ladder's equal-experience gap admits the RL agents whose environment user-steps (requests
interacted with, the logs' included for a warm start) are at most this multiple of the supervised
models' (the logs' requests): budgets in user-steps cannot be matched exactly (PPO trains whole
rollouts), and a warm agent that sees the logs *and* its own budget is not of equal experience."""


def ladder(results: pd.DataFrame, *, ci_seed: int = 0, confidence: float = CONFIDENCE,
           n_resamples: int = N_RESAMPLES) -> pd.DataFrame:
    """Per preset, the gaps that say where a gain comes from, each an IQM over seeds of per-seed
    differences of mean reward per user with a bootstrap CI over seeds (:func:`iqm_ci`: NaN below
    3 seeds).

    | column | meaning |
    |---|---|
    | rl, supervised | the best RL agent and the best supervised model of the preset (highest mean over seeds) |
    | rl_n, supervised_n | how many of each family they were selected among |
    | gap, gap_low, gap_high | rl minus supervised |
    | rl_eq, rl_eq_n, gap_eq, gap_eq_low, gap_eq_high | the same at equal experience: the best RL agent among the rl_eq_n whose mean ``env_steps`` are at most :data:`EQUAL_EXPERIENCE` times the supervised models' most, minus supervised (None / 0 / NaN without ``env_steps`` or such an agent) |
    | adapted, stale, adapt, adapt_low, adapt_high | the best drift-adapted supervised variant (``<kind>-finetune`` or ``<kind>-retrain``) minus its stale ``<kind>`` |
    | plan, plan_low, plan_high | oracle-planner minus oracle-greedy: how much the long-term effects are worth |

    The best policies are chosen on the same evaluation users the gap is measured on, so each
    side is its family's best, but the two were selected: the summary says among how many.
    """  # noqa: E501 (a table row)
    _require(results, (*KEYS, "family", "reward"), "results")
    ci = {"ci_seed": ci_seed, "confidence": confidence, "n_resamples": n_resamples}
    rows = []
    for preset, cell in results.groupby("preset", sort=False):
        per_seed = cell.pivot_table(index="seed", columns="policy", values="reward")
        family = cell.drop_duplicates("policy").set_index("policy")["family"]
        means = per_seed.mean()
        agents = [p for p in means.index if family[p] == "rl"]
        models = [p for p in means.index if family[p] == "supervised"]
        rl, supervised = _best(means, agents), _best(means, models)
        equal = _equal_experience(cell, agents, models)
        rl_eq = _best(means, equal)
        adapted = _best(means, [p for p in means.index if family[p] == "supervised" and "-" in p
                                and p.split("-", 1)[0] in means.index])
        stale = adapted.split("-", 1)[0] if adapted else None
        planned = PLANNER in means.index and ORACLE in means.index
        rows.append({"preset": preset, "seeds": int(len(per_seed)), "rl": rl, "supervised": supervised,
                     "rl_n": int((family == "rl").sum()), "supervised_n": int((family == "supervised").sum()),
                     **_seed_gap(per_seed, rl, supervised, "gap", ci),
                     "rl_eq": rl_eq, "rl_eq_n": len(equal), **_seed_gap(per_seed, rl_eq, supervised, "gap_eq", ci),
                     "adapted": adapted, "stale": stale, **_seed_gap(per_seed, adapted, stale, "adapt", ci),
                     **_seed_gap(per_seed, PLANNER if planned else None, ORACLE, "plan", ci)})
    return pd.DataFrame(rows, columns=list(LADDER_COLUMNS))


def hidden_state(table: pd.DataFrame) -> list[str]:
    """The policies of ``table`` (columns policy, family) that read the hidden user state: those of
    :data:`HIDDEN_STATE` and those of family ``oracle`` (policies from user modules that read it,
    :func:`driftrec.agents.plugins.plugin_family`), in order of appearance."""
    policies = table.drop_duplicates("policy")
    return [p for p, f in zip(policies["policy"], policies["family"], strict=True)
            if p in HIDDEN_STATE or f == ORACLE_FAMILY]


def _seed_gap(per_seed: pd.DataFrame, a: str | None, b: str | None, name: str,
              ci: dict[str, float]) -> dict[str, float]:
    """{name, name_low, name_high}: IQM over seeds of a - b with its CI over seeds (NaN without a or b)."""
    if a is None or b is None:
        return {name: math.nan, f"{name}_low": math.nan, f"{name}_high": math.nan}
    centre, low, high = iqm_ci((per_seed[a] - per_seed[b]).to_numpy(), **ci)  # type: ignore[arg-type]
    return {name: centre, f"{name}_low": low, f"{name}_high": high}


def _equal_experience(cell: pd.DataFrame, rl: Sequence[str], supervised: Sequence[str]) -> list[str]:
    """The agents of ``rl`` whose mean ``env_steps`` in ``cell`` (one preset's rows) are at most
    :data:`EQUAL_EXPERIENCE` times the largest of ``supervised``'s (none without that column)."""
    if "env_steps" not in cell.columns or not supervised:
        return []
    steps = cell.groupby("policy")["env_steps"].mean()
    budget = steps.reindex(list(supervised)).max()
    if not budget > 0:
        return []
    return [p for p in rl if steps.get(p, math.inf) <= EQUAL_EXPERIENCE * budget]


def _best(means: pd.Series, candidates: Sequence[str]) -> str | None:
    """The candidate with the highest finite mean (the first on ties), or None."""
    finite = means.reindex(list(candidates)).dropna()
    return str(finite.idxmax()) if len(finite) else None


def _policy_means(users: pd.DataFrame, policies: pd.Index) -> pd.Series:
    """Mean over seeds of the per-seed mean reward of each of ``policies`` (NaN if it has no users)."""
    seed_means = users.groupby(["policy", "seed"], sort=False)["reward"].mean()
    return seed_means.groupby(level="policy", sort=False).mean().reindex(policies)


def _finite(values: ArrayLike) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    return x[np.isfinite(x)]


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"the {name} table lacks the column '{missing[0]}'")
