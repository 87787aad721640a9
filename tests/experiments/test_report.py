"""``summary.md``: every policy and preset shown, the numbers are the input's, the verdicts say what
the CIs say (a clear win, a difference within noise, an RL agent that loses), the write is atomic."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftrec.experiments import report
from driftrec.experiments.report import fmt, fmt_ci, policy_order, render_summary, verdicts, write_summary
from driftrec.experiments.stats import COMPARISON_COLUMNS, KIND_BEST, KIND_RL, aggregate, comparisons

FAMILY = {"oracle-greedy": "reference", "random": "reference", "popularity": "reference", "mlp": "supervised",
          "gru": "supervised", "ppo": "rl", "dqn": "rl"}
# reward per user (mean, low, high) on three constructed presets
REWARDS = {
    "win": {"oracle-greedy": (20.0, 19.0, 21.0), "ppo": (15.0, 14.0, 16.0), "gru": (12.0, 11.5, 12.5),
            "mlp": (11.0, 10.5, 11.5), "dqn": (10.5, 10.0, 11.0), "popularity": (8.0, 7.5, 8.5),
            "random": (3.0, 2.5, 3.5)},
    "noise": {"oracle-greedy": (18.0, 17.0, 19.0), "ppo": (11.8, 11.0, 12.6), "gru": (12.0, 11.2, 12.8),
              "mlp": (9.0, 8.5, 9.5), "dqn": (10.0, 9.5, 10.5), "popularity": (7.0, 6.5, 7.5),
              "random": (2.0, 1.5, 2.5)},
    "loses": {"oracle-greedy": (16.0, 15.0, 17.0), "ppo": (9.5, 9.0, 10.0), "gru": (12.0, 11.5, 12.5),
              "mlp": (10.5, 10.0, 11.0), "dqn": (8.0, 7.5, 8.5), "popularity": (6.0, 5.5, 6.5),
              "random": (1.0, 0.5, 1.5)},
}
# (kind, a, b, diff, low, high): the paired comparisons that go with REWARDS
COMPARISONS = {
    "win": [(KIND_BEST, "ppo", "gru", 3.0, 2.1, 3.9), (KIND_RL, "ppo", "gru", 3.0, 2.1, 3.9),
            (KIND_RL, "dqn", "gru", -1.5, -2.0, -1.0)],
    "noise": [(KIND_BEST, "gru", "ppo", 0.2, -0.3, 0.7), (KIND_RL, "ppo", "gru", -0.2, -0.7, 0.3),
              (KIND_RL, "dqn", "gru", -2.0, -3.0, -1.0)],
    "loses": [(KIND_BEST, "gru", "mlp", 1.5, 0.5, 2.5), (KIND_RL, "ppo", "gru", -2.5, -3.5, -1.5),
              (KIND_RL, "dqn", "gru", -4.0, -5.0, -3.0)],
}


def make_agg(seeds: int = 2) -> pd.DataFrame:
    """An ``aggregate`` table with distinct, recognisable numbers in every metric."""
    rows = []
    for i, (preset, cells) in enumerate(REWARDS.items()):
        for j, (policy, (mean, low, high)) in enumerate(cells.items()):
            iqm_ci = (mean - 0.25, mean - 1.25, mean + 0.75) if seeds >= 3 else (mean - 0.25, math.nan, math.nan)
            rows.append({"preset": preset, "policy": policy, "family": FAMILY[policy], "seeds": seeds, "users": 500.0,
                         "reward": mean, "reward_low": low, "reward_high": high, "reward_iqm": iqm_ci[0],
                         "reward_iqm_low": iqm_ci[1], "reward_iqm_high": iqm_ci[2],
                         "clicks": 40.0 + i + j / 8, "purchases": 1.5 + j / 100, "revenue": 12345.678 + 1000 * j,
                         "ctr": 0.0123 + j / 1000, "conversion": 0.05, "sessions": 7.25, "churn": 0.3 + j / 50,
                         "session_length": 11.0, "coverage": 0.875, "diversity": 0.5, "regret": 20.0 - mean,
                         "share": mean / 20.0,
                         "train_wall_s": 0.0 if FAMILY[policy] == "reference" else 61.5 + j,
                         "env_steps": 200_000.0 if FAMILY[policy] == "rl" else 0.0, "eval_wall_s": 1.0})
    return pd.DataFrame(rows)


def make_comparisons() -> pd.DataFrame:
    rows = [{"preset": preset, "kind": kind, "a": a, "b": b, "diff": d, "low": lo, "high": hi,
             "significant": lo > 0 or hi < 0, "seeds": 2}
            for preset, comps in COMPARISONS.items() for kind, a, b, d, lo, hi in comps]
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


def table_rows(text: str, header_start: str) -> list[list[str]]:
    """The cells of the markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def section(text: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = text.index(heading + "\n") + len(heading) + 1
    ends = [text.find("\n" + h + " ", start) for h in ("#" * n for n in range(1, len(level) + 1))]
    ends = [e for e in ends if e >= 0]
    return text[start:min(ends) if ends else len(text)]


@pytest.fixture(scope="module")
def text() -> str:
    return render_summary(make_agg(), make_comparisons(), title="driftrec compare: test",
                          notes=["RL agents trained for 200,000 user-steps.", "Wall time: ppo 61 s."])


# ------------------------------------------------------------------------------ numbers
@pytest.mark.parametrize("value, shown", [
    (1.23456, "1.235"), (0.0, "0"), (-0.0, "0"), (12345.678, "12,346"), (200_000.0, "200,000"),
    (0.0123, "0.0123"), (-2.5, "-2.5"), (3.0, "3"), (float("nan"), "–"), (None, "–"), (np.float32(0.5), "0.5"),
])
def test_fmt_is_compact(value: float | None, shown: str) -> None:
    assert fmt(value) == shown


def test_fmt_ci_drops_a_nan_ci() -> None:
    assert fmt_ci(1.5, 1.25, 1.75) == "1.5 [1.25, 1.75]"
    assert fmt_ci(1.5, math.nan, math.nan) == "1.5"


def test_summary_shows_every_policy_and_preset(text: str) -> None:
    assert text.startswith("# driftrec compare: test\n")
    headline = table_rows(text, "| policy | family |")
    assert headline[0] == ["policy", "family", "win", "noise", "loses"]
    assert {row[0] for row in headline[2:]} == set(FAMILY)
    for preset in REWARDS:
        assert f"### {preset}" in text
        assert f"- **{preset}**: " in section(text, "## Verdicts")


def test_headline_cells_are_the_input_numbers(text: str) -> None:
    headline = table_rows(text, "| policy | family |")
    presets = headline[0][2:]
    for row in headline[2:]:
        policy = row[0]
        assert row[1] == FAMILY[policy]
        for preset, cell in zip(presets, row[2:], strict=True):
            mean, low, high = REWARDS[preset][policy]
            assert cell == f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"
    assert ["ppo", "rl", "15 [14, 16]", "11.8 [11, 12.6]", "9.5 [9, 10]"] in headline


def test_rows_put_the_oracle_first_then_the_first_preset_ranking(text: str) -> None:
    order = ["oracle-greedy", "ppo", "gru", "mlp", "dqn", "popularity", "random"]
    assert policy_order(make_agg()) == order
    assert [row[0] for row in table_rows(text, "| policy | family |")[2:]] == order
    # the metrics tables use the same order
    assert [row[0] for row in table_rows(section(text, "### loses"), "| policy | clicks |")[2:]] == order


def test_policies_from_user_modules_are_placed_and_named_by_family() -> None:
    """A plugin of family oracle (it read the hidden state) goes with the references, never counts as
    deployable, however high it scores; a custom one is one more deployable policy."""
    agg = make_agg()
    extra = agg[agg["policy"] == "random"].assign(policy="mine:peek", family="oracle", reward=99.0)
    agg = pd.concat([agg, extra, agg[agg["policy"] == "ppo"].assign(policy="mine:own", family="custom",
                                                                     reward=0.5)], ignore_index=True)
    assert policy_order(agg) == ["oracle-greedy", "mine:peek", "ppo", "gru", "mlp", "dqn", "popularity", "random",
                                 "mine:own"]
    best, _ = verdicts(agg, make_comparisons(), "win")
    assert best.startswith("ppo is the best of 7 deployable policies")
    text = render_summary(agg, make_comparisons(), title="t")
    assert "From user modules (module:factory): mine:peek (oracle), mine:own (custom);" in text
    assert "Family custom: in no built-in family" in text and "Family oracle: it reads the hidden user state" in text
    assert "From user modules" not in render_summary(make_agg(), make_comparisons(), title="t")


def test_metrics_tables_show_the_input_numbers(text: str) -> None:
    agg = make_agg().set_index(["preset", "policy"])
    for preset in REWARDS:
        rows = table_rows(section(text, f"### {preset}"), "| policy | clicks |")
        assert rows[0] == ["policy", *(h for _, h in report.METRICS)]
        for row in rows[2:]:
            expected = [fmt(agg.at[(preset, row[0]), c]) for c, _ in report.METRICS]
            assert row[1:] == expected
    win = table_rows(section(text, "### win"), "| policy | clicks |")  # header, rule, oracle, ppo, gru, ...
    gru = win[4]
    assert gru[0] == "gru" and gru[3] == "14,346" and gru[-2:] == ["63.5", "0"]  # revenue, train s, env steps
    assert gru[-3] == fmt(make_agg().set_index(["preset", "policy"]).at[("win", "gru"), "share"])
    assert win[3][0] == "ppo" and win[3][-1] == "200,000"


def test_comparisons_table_matches_the_input(text: str) -> None:
    rows = table_rows(text, "| preset | comparison |")
    assert len(rows) == 2 + sum(len(c) for c in COMPARISONS.values())
    expected = [[preset, kind, a, b, fmt(d), f"[{fmt(lo)}, {fmt(hi)}]", "yes" if lo > 0 or hi < 0 else "no"]
                for preset, comps in COMPARISONS.items() for kind, a, b, d, lo, hi in comps]
    assert rows[2:] == expected
    assert ["noise", KIND_BEST, "gru", "ppo", "0.2", "[-0.3, 0.7]", "no"] in rows


def test_notes_are_bullets(text: str) -> None:
    notes = section(text, "## Notes")
    assert "- RL agents trained for 200,000 user-steps.\n- Wall time: ppo 61 s.\n" in notes


def test_iqm_table_only_with_three_seeds(text: str) -> None:
    assert "Interquartile mean" not in text
    three = render_summary(make_agg(seeds=3), make_comparisons(), title="t")
    rows = table_rows(three, "| policy | win |")
    assert rows[2] == ["oracle-greedy", "19.75 [18.75, 20.75]", "17.75 [16.75, 18.75]", "15.75 [14.75, 16.75]"]


# ------------------------------------------------------------------------------ verdicts
def test_verdict_clear_win() -> None:
    best, rl = verdicts(make_agg(), make_comparisons(), "win")
    assert best == "ppo is the best of 6 deployable policies: 3 more reward per user than the runner-up gru " \
                   "(95% CI [2.1, 3.9])."
    assert rl == "The best RL agent, ppo, beats the best supervised model, gru, by 3 reward per user " \
                 "(95% CI [2.1, 3.9]) (the best of 2 RL agents and of 2 supervised models)."


def test_verdict_within_noise() -> None:
    best, rl = verdicts(make_agg(), make_comparisons(), "noise")
    assert best == "The best deployable policies, gru and ppo, are within noise of each other: gru earns 0.2 more " \
                   "reward per user (95% CI [-0.3, 0.7], which includes 0)."
    # the best RL agent is ppo (dqn loses clearly, but it is not the best RL agent)
    assert rl == "The best RL agent, ppo, and the best supervised model, gru, are within noise of each other: " \
                 "ppo − gru = -0.2 reward per user (95% CI [-0.7, 0.3], which includes 0) (the best of 2 RL agents " \
                 "and of 2 supervised models)."


def test_verdict_when_the_two_best_acted_alike() -> None:
    comparisons = make_comparisons()
    best_row = (comparisons["preset"] == "noise") & (comparisons["kind"] == KIND_BEST)
    comparisons.loc[best_row, ["diff", "low", "high"]] = 0.0
    best, _ = verdicts(make_agg(), comparisons, "noise")
    assert best == "The best deployable policies, gru and ppo, earned exactly the same reward from every user: " \
                   "they acted alike."


def test_verdict_rl_loses() -> None:
    best, rl = verdicts(make_agg(), make_comparisons(), "loses")
    assert best.startswith("gru is the best of 6 deployable policies: 1.5 more reward per user than the runner-up "
                           "mlp")
    assert rl == "The best RL agent, ppo, does not beat the best supervised model, gru: it earns 2.5 less reward " \
                 "per user (95% CI [-3.5, -1.5]) (the best of 2 RL agents and of 2 supervised models)."


def test_verdicts_are_in_the_summary(text: str) -> None:
    verdict_text = section(text, "## Verdicts")
    for preset in REWARDS:
        line = f"- **{preset}**: " + " ".join(verdicts(make_agg(), make_comparisons(), preset))
        assert line in verdict_text


def test_verdicts_when_a_family_is_missing() -> None:
    agg = make_agg()
    agg = agg[(agg["preset"] == "win") & ~agg["policy"].isin(["ppo", "dqn"])]
    comps = pd.DataFrame([{"preset": "win", "kind": KIND_BEST, "a": "gru", "b": "mlp", "diff": 1.0, "low": math.nan,
                           "high": math.nan, "significant": False, "seeds": 1}])
    best, rl = verdicts(agg, comps, "win")
    assert "no CI" in best and "not shown to be the best" in best
    assert rl == "No RL agent ran here, so there is no RL-versus-supervised verdict."
    solo = agg[agg["policy"].isin(["oracle-greedy", "gru"])]
    best, _ = verdicts(solo, pd.DataFrame(columns=list(COMPARISON_COLUMNS)), "win")
    assert best == "Only one deployable policy, gru, ran here."


# ------------------------------------------------------------------------------ writing
def test_write_summary_is_atomic_and_returns_the_text(tmp_path: Path) -> None:
    path = tmp_path / "run" / "summary.md"
    path.parent.mkdir()
    path.write_text("old")
    text = write_summary(path, make_agg(), make_comparisons(), title="t", notes=["n"])
    assert path.read_text(encoding="utf-8") == text
    assert os.listdir(path.parent) == ["summary.md"]  # no temporary file left behind
    with pytest.raises(ValueError, match="lacks the column 'reward_low'"):
        write_summary(path, make_agg().drop(columns="reward_low"), make_comparisons(), title="t")
    assert path.read_text(encoding="utf-8") == text and os.listdir(path.parent) == ["summary.md"]


def test_summary_from_the_stats_tables(tmp_path: Path) -> None:
    """stats.aggregate and stats.comparisons feed write_summary: PPO clearly ahead, DQN behind."""
    rng = np.random.default_rng(0)
    frames = []
    for seed in (0, 1):
        luck = rng.normal(0.0, 3.0, 200)
        for policy, mean in {"oracle-greedy": 6.0, "random": 0.0, "gru": 3.0, "ppo": 4.0, "dqn": 2.0}.items():
            frames.append(pd.DataFrame({"preset": "default", "seed": seed, "policy": policy,
                                        "user_id": np.arange(200), "reward": mean + luck + rng.normal(0, 0.3, 200)}))
    users = pd.concat(frames, ignore_index=True)
    results = (users.groupby(["preset", "seed", "policy"], sort=False)["reward"].mean().reset_index()
               .assign(family=lambda f: f["policy"].map(FAMILY), clicks=5.0))
    agg = aggregate(results, users, n_resamples=199)
    comps = comparisons(users, results, n_resamples=199)
    text = write_summary(tmp_path / "summary.md", agg, comps, title="t")
    assert "- **default**: ppo is the best of 4 deployable policies: " in text
    assert "The best RL agent, ppo, beats the best supervised model, gru, by " in text
    assert [row[0] for row in table_rows(text, "| policy | family |")[2:]] == \
        ["oracle-greedy", "ppo", "gru", "dqn", "random"]


def test_the_verdicts_say_what_their_cis_cover() -> None:
    one = render_summary(make_agg(seeds=1), make_comparisons(), title="t")
    assert "rest on 1 seed: one world and one training run per policy" in section(one, "## Verdicts")
    three = render_summary(make_agg(seeds=3), make_comparisons(), title="t")
    assert "rest on 3 seeds" in three and "cover seed-to-seed variation" in three


def test_the_ladder_table_follows_the_ladder_order() -> None:
    ladder = pd.DataFrame([
        {"preset": p, "seeds": 3, "rl": "ppo", "supervised": "mlp", "rl_n": 2, "supervised_n": 3, "gap": g,
         "gap_low": g - 1, "gap_high": g + 1, "rl_eq": "dqn" if p != "default" else None,
         "rl_eq_n": int(p != "default"), "gap_eq": g - 2 if p != "default" else math.nan,
         "gap_eq_low": g - 3 if p != "default" else math.nan, "gap_eq_high": g - 1 if p != "default" else math.nan,
         "adapted": "mlp-retrain" if p == "migration" else None,
         "stale": "mlp" if p == "migration" else None, "adapt": 0.5 if p == "migration" else math.nan,
         "adapt_low": 0.1 if p == "migration" else math.nan, "adapt_high": 0.9 if p == "migration" else math.nan,
         "plan": 3.0, "plan_low": 2.0, "plan_high": 4.0}
        for p, g in (("default", 4.0), ("migration", 2.0), ("bandit", -1.0), ("stationary", 0.5))])
    text = render_summary(make_agg(), make_comparisons(), title="t", ladder=ladder)
    part = section(text, "## Where the gap comes from")
    assert "selected among 2 RL agents and 3 supervised models" in part
    rows = table_rows(part, "| preset | seeds |")
    assert [r[0] for r in rows[2:]] == ["bandit", "stationary", "migration", "default"]
    assert rows[4] == ["migration", "3", "ppo − mlp: 2 [1, 3]", "dqn − mlp: 0 [-1, 1]",
                       "mlp-retrain − mlp: 0.5 [0.1, 0.9]", "3 [2, 4]"]
    assert rows[2][4] == fmt_ci(math.nan, math.nan, math.nan)
    assert rows[5][3] == fmt_ci(math.nan, math.nan, math.nan)  # default: no RL agent of equal experience
    assert "at most 1.25x the requests the supervised models learned from" in part


def test_hidden_state_references_lead_the_rows() -> None:
    agg = make_agg()
    planner = agg[agg["policy"] == "oracle-greedy"].assign(policy="oracle-planner", reward=lambda f: f["reward"] + 1)
    order = policy_order(pd.concat([agg, planner], ignore_index=True))
    assert order[:2] == ["oracle-planner", "oracle-greedy"]
