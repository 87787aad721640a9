"""Statistics of ``driftrec compare``: IQM as rliable defines it, the stratified bootstrap against a
brute-force resampling and against the per-user CI, CI coverage, paired differences, the tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from driftrec.agents.evaluate import bootstrap_ci
from driftrec.experiments import stats
from driftrec.experiments.stats import (
    KIND_BEST,
    KIND_RL,
    aggregate,
    comparisons,
    iqm,
    iqm_ci,
    paired_difference,
    stratified_ci,
)

FAMILY = {"random": "reference", "popularity": "reference", "oracle-greedy": "reference", "mlp": "supervised",
          "gru": "supervised", "ppo": "rl", "dqn": "rl"}


def make_users(means: dict[str, float], seeds: tuple[int, ...] = (0, 1, 2), n: int = 200, noise: float = 1.0,
               preset: str = "default", rng_seed: int = 0) -> pd.DataFrame:
    """A per-user table with common random numbers: each user has one luck shared by every policy
    (sd 3, so pairing pays) plus a policy's own noise (sd ``noise``)."""
    rng = np.random.default_rng(rng_seed)
    frames = []
    for seed in seeds:
        user_id = seed * 10**6 + np.arange(n)
        luck = rng.normal(0.0, 3.0, n)
        for policy, mean in means.items():
            reward = 10.0 + mean + luck + rng.normal(0.0, noise, n)
            frames.append(pd.DataFrame({"preset": preset, "seed": seed, "policy": policy, "user_id": user_id,
                                        "reward": reward, "clicks": rng.poisson(5.0, n).astype(float)}))
    return pd.concat(frames, ignore_index=True)


def make_results(users: pd.DataFrame) -> pd.DataFrame:
    """``results`` as compare writes it, from a per-user table."""
    rows = []
    for (preset, seed, policy), g in users.groupby(["preset", "seed", "policy"], sort=False):
        low, high = bootstrap_ci(g["reward"].to_numpy(), n_resamples=199)
        rows.append({"preset": preset, "seed": seed, "policy": policy, "family": FAMILY[policy], "users": len(g),
                     "reward": g["reward"].mean(), "reward_ci_low": low, "reward_ci_high": high,
                     "clicks": g["clicks"].mean(), "ctr": 0.1 + seed / 100, "env_steps": 1000.0 * (seed + 1)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------- IQM
def rliable_iqm(x: np.ndarray) -> float:
    """rliable's IQM written out: sort, cut floor(n / 4) from each end, mean of the rest."""
    x = np.sort(x)
    k = int(0.25 * len(x))
    return float(x[k:len(x) - k].mean())


def test_iqm_of_known_arrays() -> None:
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5, abs=1e-12)  # mean of 3..6
    assert iqm([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(3.0, abs=1e-12)  # one cut per end: mean of 2, 3, 4
    assert iqm([5.0, -1.0, 3.0]) == pytest.approx(7 / 3, abs=1e-12)  # fewer than 4: nothing cut
    assert iqm([7.0, 1.0, 100.0, 2.0, 3.0, -50.0, 4.0, 5.0, 6.0, 0.0]) == pytest.approx(3.5, abs=1e-12)  # 1..6


def test_iqm_matches_rliable_definition_on_random_arrays() -> None:
    rng = np.random.default_rng(3)
    for n in (4, 5, 6, 7, 9, 10, 13, 101):
        x = rng.standard_cauchy(n)
        assert iqm(x) == pytest.approx(rliable_iqm(x), rel=1e-12, abs=1e-12), n


def test_iqm_ignores_nan_and_is_nan_when_empty() -> None:
    assert iqm([np.nan, *range(1, 9), np.nan]) == pytest.approx(4.5, abs=1e-12)
    assert math.isnan(iqm([]))
    assert math.isnan(iqm([np.nan, np.nan]))


# ----------------------------------------------------------------------------------- stratified CI
def test_stratified_ci_with_one_stratum_is_the_per_user_ci() -> None:
    """One seed: exactly agents/evaluate.py's per-user bootstrap CI (same method, seed and draws)."""
    x = np.random.default_rng(5).exponential(2.0, 300)
    mean, low, high = stratified_ci([x], ci_seed=7, n_resamples=999)
    assert mean == pytest.approx(x.mean(), abs=1e-12)
    assert (low, high) == bootstrap_ci(x, ci_seed=7, n_resamples=999)


def test_stratified_ci_equals_brute_force_resampling() -> None:
    """scipy.stats.bootstrap with several samples is a stratified bootstrap: users resampled within
    their own seed. A brute-force numpy version with other random draws agrees within Monte-Carlo
    error (0.1 standard errors; the endpoints' Monte-Carlo sd is ~0.02 here)."""
    rng = np.random.default_rng(11)
    strata = [rng.normal(1.0, 1.0, 40), rng.exponential(3.0, 60), rng.normal(-5.0, 2.0, 25)]
    se = math.sqrt(sum(s.var(ddof=1) / len(s) for s in strata)) / len(strata)
    b = 20_000
    mean, low, high = stratified_ci(strata, ci_seed=1, n_resamples=b, method="percentile")

    draw = np.random.default_rng(12345)
    boot = sum(s[draw.integers(0, len(s), (b, len(s)))].mean(axis=1) for s in strata) / len(strata)
    bf_low, bf_high = np.percentile(boot, [2.5, 97.5])
    assert mean == pytest.approx(np.mean([s.mean() for s in strata]), abs=1e-12)
    assert low == pytest.approx(bf_low, abs=0.1 * se)
    assert high == pytest.approx(bf_high, abs=0.1 * se)
    # the default (BCa) differs from the percentile interval by a skew correction only
    _, bca_low, bca_high = stratified_ci(strata, ci_seed=1, n_resamples=4999)
    assert bca_low == pytest.approx(bf_low, abs=0.3 * se) and bca_high == pytest.approx(bf_high, abs=0.3 * se)


def test_stratified_ci_is_narrower_than_pooled_resampling_when_seeds_differ() -> None:
    """Seeds far apart: resampling users across seeds would mix the seeds' levels into the noise."""
    rng = np.random.default_rng(2)
    strata = [rng.normal(mu, 1.0, 50) for mu in (0.0, 10.0, 20.0)]
    _, low, high = stratified_ci(strata, n_resamples=2000, method="percentile")
    pooled = np.concatenate(strata)
    _, p_low, p_high = stratified_ci([pooled], n_resamples=2000, method="percentile")
    assert (high - low) < 0.25 * (p_high - p_low)  # analytic ratio: sd 1 vs sd ~8.2 within the pool


def test_stratified_ci_covers_a_known_mean_about_95_percent() -> None:
    """300 repeats of 3 normal strata (means 1, 2, 4): the target is the mean of the means, 7/3.
    Binomial sd of the coverage is ~1.3 points; the bootstrap of 30 users per stratum runs a
    little short of 95%, so the band is [0.90, 0.985]."""
    rng = np.random.default_rng(2024)
    target = (1.0 + 2.0 + 4.0) / 3
    hits = 0
    repeats = 300
    for r in range(repeats):
        strata = [rng.normal(mu, sd, 30) for mu, sd in ((1.0, 1.0), (2.0, 2.0), (4.0, 3.0))]
        _, low, high = stratified_ci(strata, ci_seed=r, n_resamples=999)
        hits += low <= target <= high
    assert 0.90 <= hits / repeats <= 0.985


def test_stratified_ci_is_deterministic_and_seeded() -> None:
    strata = [np.random.default_rng(s).normal(size=50) for s in range(3)]
    assert stratified_ci(strata, ci_seed=4, n_resamples=500) == stratified_ci(strata, ci_seed=4, n_resamples=500)
    assert stratified_ci(strata, ci_seed=4, n_resamples=500) != stratified_ci(strata, ci_seed=5, n_resamples=500)


def test_stratified_ci_nan_and_degenerate_cases() -> None:
    x = np.random.default_rng(0).normal(size=40)
    y = np.random.default_rng(1).normal(size=30)
    # NaN users are ignored, a stratum with no finite value is left out
    with_nan = stratified_ci([np.append(x, np.nan), [np.nan, np.nan], y], n_resamples=300)
    assert with_nan == stratified_ci([x, y], n_resamples=300)
    assert all(math.isnan(v) for v in stratified_ci([]))
    assert all(math.isnan(v) for v in stratified_ci([[np.nan]]))
    # constant strata: the point; a constant stratum beside a varying one only shifts the mean
    assert stratified_ci([[2.0, 2.0], [4.0]]) == (3.0, 3.0, 3.0)
    mean, low, high = stratified_ci([x, [5.0, 5.0, 5.0]], n_resamples=300, method="percentile")
    x_mean, x_low, x_high = stratified_ci([x], n_resamples=300, method="percentile")
    assert mean == pytest.approx((x_mean + 5.0) / 2, abs=1e-12)
    assert (low, high) == pytest.approx(((x_low + 5.0) / 2, (x_high + 5.0) / 2), abs=1e-12)


# ------------------------------------------------------------------------------------ IQM CI
def test_iqm_ci_needs_three_seeds() -> None:
    centre, low, high = iqm_ci([1.0, 2.0])
    assert centre == pytest.approx(1.5, abs=1e-12) and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in iqm_ci([np.nan, 1.0, 2.0, np.nan])[1:])  # NaNs don't count as seeds
    assert iqm_ci([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)


def test_iqm_ci_is_the_runs_level_percentile_bootstrap() -> None:
    """Resample the seeds, recompute the IQM: a brute-force version with other draws agrees within
    Monte-Carlo error (0.1 bootstrap sd; the IQM of 20 seeds takes lumpy values, so not tighter)."""
    x = np.random.default_rng(8).standard_t(3, 20)
    centre, low, high = iqm_ci(x, ci_seed=3, n_resamples=20_000)
    assert centre == pytest.approx(rliable_iqm(x), abs=1e-12)
    draw = np.random.default_rng(99)
    boot = np.array([rliable_iqm(x[draw.integers(0, len(x), len(x))]) for _ in range(20_000)])
    bf_low, bf_high = np.percentile(boot, [2.5, 97.5])
    assert low <= centre <= high
    assert low == pytest.approx(bf_low, abs=0.1 * boot.std()) and high == pytest.approx(bf_high, abs=0.1 * boot.std())


# ------------------------------------------------------------------------------ paired difference
def test_paired_difference_of_identical_policies_is_exactly_zero() -> None:
    users = make_users({"mlp": 0.0})
    twin = users.assign(policy="gru")
    assert paired_difference(pd.concat([users, twin]), "gru", "mlp", n_resamples=200) == (0.0, 0.0, 0.0)


def test_paired_difference_of_a_constant_shift_is_that_shift() -> None:
    users = make_users({"mlp": 0.0}, n=50)
    users["reward"] = np.round(users["reward"])  # integers: + 2.5 - x is exactly 2.5
    shifted = users.assign(policy="ppo", reward=users["reward"] + 2.5)
    assert paired_difference(pd.concat([users, shifted]), "ppo", "mlp") == (2.5, 2.5, 2.5)
    assert paired_difference(pd.concat([users, shifted]), "mlp", "ppo") == (-2.5, -2.5, -2.5)


def test_paired_difference_recovers_a_noisy_shift_and_pairing_pays() -> None:
    users = make_users({"mlp": 0.0, "ppo": 0.4}, n=400, noise=0.5)
    diff, low, high = paired_difference(users, "ppo", "mlp", n_resamples=999)
    a = users[users["policy"] == "ppo"].groupby("seed")["reward"].mean()
    b = users[users["policy"] == "mlp"].groupby("seed")["reward"].mean()
    assert diff == pytest.approx((a - b).mean(), abs=1e-12)  # the mean of per-seed mean differences
    assert low < 0.4 < high and low > 0  # covers the truth and is significant
    # unpaired, the users' shared luck (sd 3) would swamp a 0.4 difference
    _, a_low, a_high = stratified_ci([g.to_numpy() for _, g in users[users.policy == "ppo"].groupby("seed").reward],
                                     n_resamples=999)
    assert (high - low) < 0.5 * (a_high - a_low)


def test_paired_difference_selects_the_preset() -> None:
    one = make_users({"mlp": 0.0, "ppo": 1.0}, preset="gradual", rng_seed=1)
    two = make_users({"mlp": 0.0, "ppo": -1.0}, preset="default", rng_seed=2)
    both = pd.concat([one, two], ignore_index=True)
    assert paired_difference(both, "ppo", "mlp", preset="gradual", n_resamples=200) == \
        paired_difference(one, "ppo", "mlp", n_resamples=200)


@pytest.mark.parametrize("breakage, match", [
    ("other_ids", "user ids of 'ppo' and 'mlp' differ in seed 1"),
    ("fewer_users", "user ids of 'ppo' and 'mlp' differ in seed 1"),
    ("missing_seed", "seed 2 has users of 'mlp' but none of 'ppo'"),
    ("duplicate", "appears twice for policy 'ppo' in seed 0"),
    ("unknown_policy", "policy 'ppo' has no users"),
])
def test_paired_difference_refuses_unpaired_users(breakage: str, match: str) -> None:
    users = make_users({"mlp": 0.0, "ppo": 1.0}, n=20)
    is_b = users["policy"] == "ppo"
    if breakage == "other_ids":
        users.loc[is_b & (users["seed"] == 1), "user_id"] += 7
    elif breakage == "fewer_users":
        users = users.drop(users.index[is_b & (users["seed"] == 1)][:3])
    elif breakage == "missing_seed":
        users = users[~(is_b & (users["seed"] == 2))]
    elif breakage == "duplicate":
        users = pd.concat([users, users[is_b & (users["seed"] == 0)].head(1)], ignore_index=True)
    else:
        users = users[~is_b]
    with pytest.raises(ValueError, match=match) as err:
        paired_difference(users, "ppo", "mlp")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------------ tables
def test_aggregate_one_seed_reproduces_the_per_user_ci() -> None:
    users = make_users({"random": -2.0, "mlp": 0.0}, seeds=(4,), n=120)
    results = make_results(users)
    agg = aggregate(results, users, n_resamples=199)
    for _, row in agg.iterrows():
        cell = results[results["policy"] == row["policy"]].iloc[0]
        assert row["reward"] == pytest.approx(cell["reward"], abs=1e-12)
        assert (row["reward_low"], row["reward_high"]) == (cell["reward_ci_low"], cell["reward_ci_high"])
        assert math.isnan(row["reward_iqm_low"]) and math.isnan(row["reward_iqm_high"])  # one seed


def test_aggregate_columns_and_seed_means() -> None:
    users = pd.concat([make_users({"random": -2.0, "mlp": 0.0, "ppo": 1.0}, seeds=(0, 1, 2, 3)),
                       make_users({"random": -1.0, "mlp": 0.5, "ppo": 0.0}, seeds=(0, 1), preset="gradual",
                                  rng_seed=9)], ignore_index=True)
    results = make_results(users)
    results.loc[(results["policy"] == "mlp") & (results["seed"] == 0), "ctr"] = np.nan  # skipped in the seed mean
    agg = aggregate(results, users, n_resamples=199)
    assert list(agg.columns[:10]) == ["preset", "policy", "family", "seeds", "reward", "reward_low", "reward_high",
                                      "reward_iqm", "reward_iqm_low", "reward_iqm_high"]
    assert {"users", "clicks", "ctr", "env_steps"} <= set(agg.columns)
    assert "reward_ci_low" not in agg.columns and "seed" not in agg.columns
    assert agg[["preset", "policy"]].values.tolist() == [[preset, p] for preset in ("default", "gradual")
                                                         for p in ("random", "mlp", "ppo")]
    row = agg.set_index(["preset", "policy"]).loc[("default", "mlp")]
    cells = results[(results["preset"] == "default") & (results["policy"] == "mlp")]
    assert row["family"] == "supervised" and row["seeds"] == 4
    assert row["reward"] == pytest.approx(cells["reward"].mean(), abs=1e-12)
    assert row["reward_low"] < row["reward"] < row["reward_high"]
    assert row["reward_iqm"] == pytest.approx(rliable_iqm(cells["reward"].to_numpy()), abs=1e-12)
    assert row["reward_iqm_low"] <= row["reward_iqm"] <= row["reward_iqm_high"]
    assert row["ctr"] == pytest.approx(np.mean([0.11, 0.12, 0.13]), abs=1e-12)
    assert row["env_steps"] == pytest.approx(2500.0, abs=1e-9)
    two_seeds = agg.set_index(["preset", "policy"]).loc[("gradual", "mlp")]
    assert two_seeds["seeds"] == 2 and math.isnan(two_seeds["reward_iqm_low"])


def test_aggregate_errors_name_what_is_missing() -> None:
    users = make_users({"mlp": 0.0, "ppo": 1.0}, seeds=(0,), n=10)
    results = make_results(users)
    with pytest.raises(ValueError, match="no rows for policy 'ppo' on preset 'default'"):
        aggregate(results, users[users["policy"] != "ppo"], n_resamples=99)
    with pytest.raises(ValueError, match="the results table lacks the column 'family'"):
        aggregate(results.drop(columns="family"), users, n_resamples=99)


def test_comparisons_pick_the_best_deployable_and_the_best_supervised() -> None:
    means = {"oracle-greedy": 5.0, "random": -3.0, "popularity": -1.0, "mlp": 0.0, "gru": 1.0, "ppo": 2.0,
             "dqn": 0.8}
    users = pd.concat([make_users(means, seeds=(0, 1), n=300, noise=0.3),
                       make_users({**means, "gru": 1.5, "ppo": 1.5}, seeds=(0,), n=300, noise=0.3,
                                  preset="gradual", rng_seed=5)], ignore_index=True)
    results = make_results(users)
    table = comparisons(users, results, n_resamples=499)
    assert list(table.columns) == list(stats.COMPARISON_COLUMNS)
    default = table[table["preset"] == "default"]
    assert default[["kind", "a", "b"]].values.tolist() == [[KIND_BEST, "ppo", "gru"], [KIND_RL, "ppo", "gru"],
                                                           [KIND_RL, "dqn", "gru"]]
    assert (default["seeds"] == 2).all()
    ppo = default.iloc[1]
    assert ppo["diff"] == pytest.approx(1.0, abs=0.1) and bool(ppo["significant"])
    dqn = default.iloc[2]
    assert dqn["diff"] == pytest.approx(-0.2, abs=0.1) and bool(dqn["significant"]) and dqn["high"] < 0
    for r in table.itertuples():
        assert r.significant == (r.low > 0 or r.high < 0)
        assert r.diff == pytest.approx(paired_difference(users, r.a, r.b, preset=r.preset, n_resamples=499)[0])
    gradual = table[table["preset"] == "gradual"]
    best = gradual[gradual["kind"] == KIND_BEST].iloc[0]
    assert {best["a"], best["b"]} == {"gru", "ppo"} and not best["significant"]  # equal means: within noise


def test_comparisons_skip_what_cannot_be_compared() -> None:
    users = make_users({"oracle-greedy": 3.0, "random": 0.0, "ppo": 1.0}, seeds=(0,), n=30)
    table = comparisons(users, make_results(users), n_resamples=99)
    assert table[["kind", "a", "b"]].values.tolist() == [[KIND_BEST, "ppo", "random"]]  # no supervised model
    only = make_users({"oracle-greedy": 3.0, "mlp": 0.0}, seeds=(0,), n=30)
    empty = comparisons(only, make_results(only), n_resamples=99)
    assert empty.empty and list(empty.columns) == list(stats.COMPARISON_COLUMNS)


# ------------------------------------------------------------------------------------- ladder
def _ladder_results(seeds: int = 4) -> pd.DataFrame:
    """Per-seed rewards: on 'bandit' the supervised side leads by 1 on every seed, on 'migration'
    RL leads by 2 + seed; the retraining mlp gains 0.5 over mlp there; the planner gains 3."""
    families = {"oracle-greedy": "reference", "oracle-planner": "reference", "random": "reference",
                "mlp": "supervised", "gru": "supervised", "mlp-retrain": "supervised", "ppo": "rl", "dqn": "rl"}
    rows = []
    for preset, rl_lead in (("bandit", -1.0), ("migration", 2.0)):
        for seed in range(seeds):
            reward = {"oracle-greedy": 20.0, "oracle-planner": 23.0, "random": 1.0, "mlp": 10.0, "gru": 9.0,
                      "mlp-retrain": 10.5, "dqn": 8.0, "ppo": 10.0 + rl_lead + (seed if preset == "migration" else 0)}
            if preset == "bandit":
                reward["mlp-retrain"] = 10.0  # no drift: nothing to adapt to
            rows += [{"preset": preset, "seed": seed, "policy": p, "family": families[p], "reward": r}
                     for p, r in reward.items()]
    return pd.DataFrame(rows)


def test_ladder_gaps_are_iqms_over_seeds_of_the_best_of_each_family() -> None:
    table = stats.ladder(_ladder_results(), n_resamples=499).set_index("preset")
    bandit, migration = table.loc["bandit"], table.loc["migration"]
    assert (bandit["rl"], bandit["supervised"], bandit["rl_n"], bandit["supervised_n"]) == ("ppo", "mlp", 2, 3)
    assert bandit["gap"] == pytest.approx(-1.0) and bandit["gap_low"] == bandit["gap_high"] == pytest.approx(-1.0)
    # migration: ppo - mlp-retrain (the best supervised) = 2 + seed - 0.5 over seeds 0..3: IQM of 1.5, 2.5, 3.5, 4.5
    assert migration["supervised"] == "mlp-retrain"
    assert migration["gap"] == pytest.approx(stats.iqm([1.5, 2.5, 3.5, 4.5]))
    assert migration["gap_low"] < migration["gap"] < migration["gap_high"]
    assert (migration["adapted"], migration["stale"], migration["adapt"]) == ("mlp-retrain", "mlp", pytest.approx(0.5))
    assert bandit["adapt"] == pytest.approx(0.0)
    assert migration["plan"] == pytest.approx(3.0)


def test_ladder_at_equal_experience_leaves_out_agents_that_saw_more_requests() -> None:
    """A warm agent (the logs' 90 requests and 100 of its own) leads; at equal experience the cold ppo
    (102: within 1.25x of the supervised models' 90) is compared instead, and dqn (120) is out."""
    results = _ladder_results()
    steps = {"mlp": 90, "gru": 90, "mlp-retrain": 90, "ppo": 102, "dqn": 120}
    results["env_steps"] = results["policy"].map(steps).fillna(0)
    warm = results[results["policy"] == "ppo"].assign(policy="ppo-warm", env_steps=190,
                                                       reward=lambda f: f["reward"] + 2)
    table = stats.ladder(pd.concat([results, warm], ignore_index=True), n_resamples=499).set_index("preset")
    bandit = table.loc["bandit"]
    assert (bandit["rl"], bandit["rl_eq"], bandit["rl_eq_n"]) == ("ppo-warm", "ppo", 1)
    assert bandit["gap"] == pytest.approx(1.0) and bandit["gap_eq"] == pytest.approx(-1.0)
    assert bandit["gap_eq_low"] == bandit["gap_eq_high"] == pytest.approx(-1.0)
    assert table.loc["migration", "gap_eq"] == pytest.approx(stats.iqm([1.5, 2.5, 3.5, 4.5]))
    results["env_steps"] = results["policy"].map({**steps, "ppo": 200, "dqn": 200}).fillna(0)  # none within 1.25x
    none = stats.ladder(results).set_index("preset").loc["bandit"]
    assert none["rl_eq"] is None and none["rl_eq_n"] == 0 and math.isnan(none["gap_eq"])
    assert none["rl"] == "ppo" and none["gap"] == pytest.approx(-1.0)  # the all-agents gap is unchanged


def test_ladder_without_env_steps_has_no_equal_experience_gap() -> None:
    row = stats.ladder(_ladder_results(seeds=2)).set_index("preset").loc["bandit"]
    assert row["rl_eq"] is None and row["rl_eq_n"] == 0 and math.isnan(row["gap_eq"])


def test_ladder_leaves_a_gap_out_when_a_side_is_missing() -> None:
    results = _ladder_results(seeds=2)
    table = stats.ladder(results[~results["policy"].isin(["oracle-planner", "mlp-retrain"])]).set_index("preset")
    row = table.loc["migration"]
    assert row["adapted"] is None and math.isnan(row["adapt"]) and math.isnan(row["plan"])
    assert row["gap"] == pytest.approx(2.5) and math.isnan(row["gap_low"])  # 2 seeds: no CI over seeds
