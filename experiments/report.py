"""``summary.md`` of ``driftrec compare``: verdicts, the reward table, paired comparisons, other metrics, notes.

:func:`render_summary` turns the tables of :mod:`driftrec.experiments.stats` (``aggregate`` and
``comparisons``) into markdown; :func:`write_summary` writes it atomically. The verdicts are
sentences derived from the CIs alone: a difference is called a win only when its 95% CI
excludes 0, and "within noise" otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from driftrec.agents.plugins import DEFAULT_FAMILY, ORACLE_FAMILY, is_plugin
from driftrec.experiments.artifacts import write_text
from driftrec.experiments.stats import EQUAL_EXPERIENCE, HIDDEN_STATE, KIND_BEST, KIND_RL, hidden_state

METRICS: tuple[tuple[str, str], ...] = (
    ("clicks", "clicks"), ("purchases", "purchases"), ("revenue", "revenue"), ("ctr", "CTR"),
    ("conversion", "conversion"), ("sessions", "sessions"), ("churn", "churn"),
    ("session_length", "session length"), ("coverage", "coverage"), ("diversity", "diversity"),
    ("regret", "regret"), ("share", "share"), ("train_wall_s", "train s"), ("env_steps", "env steps"),
)
"""(column of ``aggregate``, header) of the per-preset metrics tables; absent columns are skipped."""
REQUIRED = ("preset", "policy", "family", "reward", "reward_low", "reward_high")
"""Columns of ``aggregate`` that the summary needs."""
MISSING = "–"
"""How a NaN (or absent) number is shown."""


def fmt(value: Any) -> str:
    """A number, compactly: 4 significant digits, thousands separated from 10,000 on, NaN as '–'."""
    if value is None:
        return MISSING
    x = float(value)
    if math.isnan(x):
        return MISSING
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"  # never "-0"
    if abs(x) >= 1e4:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def fmt_ci(mean: Any, low: Any, high: Any) -> str:
    """'mean [low, high]', or the mean alone when the CI is NaN."""
    if _isnan(low) and _isnan(high):
        return fmt(mean)
    return f"{fmt(mean)} [{fmt(low)}, {fmt(high)}]"


def policy_order(agg: pd.DataFrame) -> list[str]:
    """Rows of the tables: the references that read the hidden state first (oracle-planner, then
    oracle-greedy, then those of family oracle from user modules), then by reward per user on the
    first preset, highest first; policies absent there (or NaN) follow in order of appearance."""
    first = agg[agg["preset"] == agg["preset"].iloc[0]]
    ranked = first.dropna(subset=["reward"]).sort_values("reward", ascending=False, kind="stable")["policy"]
    hidden = hidden_state(agg)
    order = [p for p in ranked if p not in hidden]
    order += [p for p in agg["policy"].drop_duplicates() if p not in order and p not in hidden]
    return [p for p in reversed(HIDDEN_STATE) if p in hidden] + [p for p in hidden if p not in HIDDEN_STATE] + order


def headline_table(agg: pd.DataFrame) -> str:
    """Policies x presets, each cell the reward per user 'mean [low, high]'; a family column."""
    return _reward_table(agg, "reward", family=True)


def iqm_table(agg: pd.DataFrame) -> str:
    """Policies x presets, each cell the IQM over seeds of the reward per user with its CI over seeds."""
    return _reward_table(agg, "reward_iqm", family=False)


def _reward_table(agg: pd.DataFrame, column: str, family: bool) -> str:
    """Policies x presets, each cell ``column`` with its ``_low`` / ``_high`` CI (missing cells: MISSING)."""
    presets = list(agg["preset"].drop_duplicates())
    cells = agg.set_index(["policy", "preset"])
    families = agg.drop_duplicates("policy").set_index("policy")["family"]
    rows = []
    for policy in policy_order(agg):
        row = [policy, str(families[policy])] if family else [policy]
        for preset in presets:
            if (policy, preset) in cells.index:
                c = cells.loc[(policy, preset)]
                row.append(fmt_ci(c[column], c[f"{column}_low"], c[f"{column}_high"]))
            else:
                row.append(MISSING)
        rows.append(row)
    return _table(["policy", *(["family"] if family else []), *presets], rows)


def metrics_table(agg: pd.DataFrame, preset: str) -> str:
    """The other metrics of one preset (means over seeds), one row per policy."""
    columns = [(c, h) for c, h in METRICS if c in agg.columns]
    cells = agg[agg["preset"] == preset].set_index("policy")
    rows = [[p, *(fmt(cells.at[p, c]) for c, _ in columns)] for p in policy_order(agg) if p in cells.index]
    return _table(["policy", *(h for _, h in columns)], rows)


LADDER_ORDER = ("bandit", "stationary", "gradual", "migration", "seasonal", "bubble", "clickbait", "default")
"""Presets in the ladder's order: the control, no drift, each drift, the mix (others follow as they ran)."""


def ladder_table(ladder: pd.DataFrame) -> str:
    """One row per preset, in the ladder's order: the best RL agent minus the best supervised model,
    the best drift-adapted supervised variant minus its stale model, oracle-planner minus
    oracle-greedy; each an IQM over seeds with its CI over seeds."""
    order = [p for p in LADDER_ORDER if p in set(ladder["preset"])]
    order += [p for p in ladder["preset"] if p not in order]
    rows = []
    for preset in order:
        r = ladder[ladder["preset"] == preset].iloc[0]
        named = isinstance(r["rl"], str) and isinstance(r["supervised"], str)
        rl = f"{r['rl']} − {r['supervised']}: " if named else ""
        adapted = f"{r['adapted']} − {r['stale']}: " if isinstance(r["adapted"], str) else ""
        equal = f"{r['rl_eq']} − {r['supervised']}: " if named and isinstance(r.get("rl_eq"), str) else ""
        rows.append([str(preset), str(int(r["seeds"])), rl + fmt_ci(r["gap"], r["gap_low"], r["gap_high"]),
                     equal + fmt_ci(r.get("gap_eq", math.nan), r.get("gap_eq_low", math.nan),
                                    r.get("gap_eq_high", math.nan)),
                     adapted + fmt_ci(r["adapt"], r["adapt_low"], r["adapt_high"]),
                     fmt_ci(r["plan"], r["plan_low"], r["plan_high"])])
    return _table(["preset", "seeds", "best RL − best supervised", "at equal experience", "adapted − stale",
                   "planner − greedy"], rows)


def comparisons_table(comparisons: pd.DataFrame) -> str:
    """The paired comparisons: a − b per user on the same users, with the stratified 95% CI."""
    rows = []
    for r in comparisons.itertuples(index=False):
        sig = MISSING if _isnan(r.low) or _isnan(r.high) else ("yes" if _excludes_zero(r.low, r.high) else "no")
        rows.append([str(r.preset), str(r.kind), str(r.a), str(r.b), fmt(r.diff),
                     f"[{fmt(r.low)}, {fmt(r.high)}]", sig])
    return _table(["preset", "comparison", "a", "b", "a − b", "95% CI", "significant"], rows)


def verdicts(agg: pd.DataFrame, comparisons: pd.DataFrame, preset: str) -> list[str]:
    """Two sentences on ``preset``: the best deployable policy against the runner-up, and the best
    RL agent against the best supervised model. Significance is read from the CI (does it exclude
    0), never from a column, so the words cannot disagree with the numbers shown."""
    here = comparisons[comparisons["preset"] == preset]
    return [_best_sentence(agg, here, preset), _rl_sentence(agg, here, preset)]


def render_summary(agg: pd.DataFrame, comparisons: pd.DataFrame, *, title: str, notes: Iterable[str] = (),
                   ladder: pd.DataFrame | None = None) -> str:
    """The markdown of ``summary.md`` (see :func:`write_summary`)."""
    missing = [c for c in REQUIRED if c not in agg.columns]
    if missing:
        raise ValueError(f"write_summary: the aggregate table lacks the column '{missing[0]}'")
    if agg.empty:
        raise ValueError("write_summary: the aggregate table is empty (no finished cell)")
    comparisons = _with_comparison_columns(comparisons)
    presets = list(agg["preset"].drop_duplicates())
    seeds = agg["seeds"] if "seeds" in agg.columns else pd.Series([1])
    low, high = int(seeds.min()), int(seeds.max())
    seed_text = f"{low} seed{'s' if low > 1 else ''}" if low == high else f"{low} to {high} seeds"
    out = [f"# {title}", ""]
    out += ["## Verdicts", "", _noise_sentence(seed_text, high), ""]
    out += [f"- **{preset}**: " + " ".join(verdicts(agg, comparisons, preset)) for preset in presets]
    if ladder is not None and len(ladder):
        selected = ladder.iloc[0]
        out += ["", "## Where the gap comes from", "",
                "Per preset in the ladder's order (`bandit` has no long-term effects and no drift, `stationary` adds "
                "the long-term effects, each drift preset adds one drift to it, `default` mixes them): the best RL "
                f"agent minus the best supervised model (each its family's best on these users, selected among "
                f"{int(selected['rl_n'])} RL agents and {int(selected['supervised_n'])} supervised models); the "
                "same at equal experience, the best RL agent among those that interacted with at most "
                f"{EQUAL_EXPERIENCE:g}x the requests the supervised models learned from (their logs; a warm agent "
                "counts the logs and its own budget); the best drift-adapted supervised variant minus the stale "
                "model it adapts; and oracle-planner minus oracle-greedy (what planning beyond one request is "
                "worth). Each is the interquartile mean over seeds of the per-seed difference in reward per user, "
                "with a 95% bootstrap CI over seeds (none below 3 seeds). `bandit` is the control: planning is "
                "worth nothing there, so its gap at equal experience is what an agent gains by learning from its "
                "own interaction rather than from the logging policy's requests; on the other presets, the part "
                "of the gap beyond it is the long-term effects and the drift.", "",
                ladder_table(ladder)]
    out += ["", "## Reward per user", "",
            f"Mean over {seed_text} of the per-seed mean reward per user, with its 95% CI [low, high] from a "
            "stratified bootstrap (users resampled within each seed). oracle-planner and oracle-greedy read the "
            "hidden user state: they are references (the planner the upper one, greedy the myopic one), not "
            "deployable policies." + _plugin_sentence(agg), "", headline_table(agg)]
    if "reward_iqm" in agg.columns and (seeds >= 3).any():
        out += ["", "Interquartile mean over seeds of the per-seed mean reward per user, with a 95% bootstrap CI "
                "over seeds (rliable's; none below 3 seeds).", "", iqm_table(agg)]
    out += ["", "## Paired comparisons", "",
            "Reward per user of a minus b on the same evaluation users (common random numbers): the mean over "
            "seeds of the per-seed mean difference, 95% CI by a stratified bootstrap of the per-user differences. "
            "Significant: the CI excludes 0.", ""]
    out += [comparisons_table(comparisons) if len(comparisons) else "No comparison: too few policies ran."]
    out += ["", "## Other metrics", "", "Means over seeds; per user unless a ratio (CTR, conversion, churn, "
            "coverage, diversity); regret is the best reference's reward (oracle-planner's or oracle-greedy's, "
            "whichever is higher) minus the policy's, and share the policy's share of it; training wall seconds and "
            "environment user-steps per seed."]
    for preset in presets:
        out += ["", f"### {preset}", "", metrics_table(agg, preset)]
    notes = [n for n in notes if n]
    if notes:
        out += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    return "\n".join(out) + "\n"


def write_summary(path: str | Path, agg: pd.DataFrame, comparisons: pd.DataFrame, *, title: str,
                  notes: Sequence[str] = (), ladder: pd.DataFrame | None = None) -> str:
    """Write ``summary.md`` to ``path`` atomically (a temporary file in the same folder, then
    ``os.replace``: a reader never sees half a file) and return its text.

    ``agg`` is :func:`driftrec.experiments.stats.aggregate`'s table, ``comparisons``
    :func:`driftrec.experiments.stats.comparisons`'; ``notes`` are appended as bullets.
    """
    text = render_summary(agg, comparisons, title=title, notes=notes, ladder=ladder)
    write_text(path, text)
    return text


# ------------------------------------------------------------------------------ verdicts
def _noise_sentence(seeds: str, most: int) -> str:
    """What the CIs of the verdicts cover, given how many seeds ran (``seeds`` in words, ``most`` at most)."""
    if most < 2:
        return (f"These verdicts rest on {seeds}: one world and one training run per policy. Their CIs cover the "
                "evaluation users only, not seed-to-seed variation (another catalog, other training users, another "
                "training run), which can be larger: run more seeds before trusting a gap.")
    return (f"These verdicts rest on {seeds}. The CIs of the paired comparisons resample users within each seed and "
            "cover user noise only; the interquartile means over seeds and their CIs (with 3 seeds or more) cover "
            "seed-to-seed variation.")


def _best_sentence(agg: pd.DataFrame, here: pd.DataFrame, preset: str) -> str:
    rows = here[here["kind"] == KIND_BEST]
    if rows.empty:
        deployable = agg.loc[(agg["preset"] == preset) & ~agg["policy"].isin(hidden_state(agg))].dropna(
            subset=["reward"])
        if deployable.empty:
            return "No deployable policy has a reward here."
        return f"Only one deployable policy, {deployable['policy'].iloc[0]}, ran here."
    r = rows.iloc[0]
    ci = _ci_text(r["low"], r["high"])
    if _isnan(r["low"]) or _isnan(r["high"]):
        return (f"{r['a']} earns {fmt(r['diff'])} more reward per user than the runner-up {r['b']}, but with no CI "
                "(too few users), so it is not shown to be the best deployable policy.")
    n = int(agg.loc[(agg["preset"] == preset) & ~agg["policy"].isin(hidden_state(agg)), "reward"].notna().sum())
    if _excludes_zero(r["low"], r["high"]):
        return (f"{r['a']} is the best of {n} deployable policies: {fmt(r['diff'])} more reward per user than the "
                f"runner-up {r['b']} ({ci}).")
    if r["diff"] == 0 and r["low"] == 0 and r["high"] == 0:  # e.g. a retraining policy that never refit
        return (f"The best deployable policies, {r['a']} and {r['b']}, earned exactly the same reward from every "
                "user: they acted alike.")
    return (f"The best deployable policies, {r['a']} and {r['b']}, are within noise of each other: {r['a']} earns "
            f"{fmt(r['diff'])} more reward per user ({ci}, which includes 0).")


def _rl_sentence(agg: pd.DataFrame, here: pd.DataFrame, preset: str) -> str:
    rows = here[here["kind"] == KIND_RL]
    families = set(agg.loc[agg["preset"] == preset, "family"])
    if rows.empty:
        if "rl" not in families:
            return "No RL agent ran here, so there is no RL-versus-supervised verdict."
        return "No supervised model has a reward here, so the RL agents have no supervised model to beat."
    # every row has the same b (the best supervised model), so the largest a − b is the best RL agent
    r = rows.loc[rows["diff"].fillna(-math.inf).idxmax()]
    a, b, ci = r["a"], r["b"], _ci_text(r["low"], r["high"])
    if _isnan(r["low"]) or _isnan(r["high"]):
        return (f"The best RL agent, {a}, and the best supervised model, {b}, differ by {fmt(r['diff'])} reward per "
                "user with no CI (too few users), so neither is shown to be better.")
    n_rl = int((agg.loc[agg["preset"] == preset, "family"] == "rl").sum())
    n_sup = int((agg.loc[agg["preset"] == preset, "family"] == "supervised").sum())
    among = f" (the best of {n_rl} RL agents and of {n_sup} supervised models)" if n_rl > 1 or n_sup > 1 else ""
    if r["low"] > 0:
        return (f"The best RL agent, {a}, beats the best supervised model, {b}, by {fmt(r['diff'])} reward per user "
                f"({ci}){among}.")
    if r["high"] < 0:
        return (f"The best RL agent, {a}, does not beat the best supervised model, {b}: it earns {fmt(-r['diff'])} "
                f"less reward per user ({ci}){among}.")
    return (f"The best RL agent, {a}, and the best supervised model, {b}, are within noise of each other: {a} − {b} "
            f"= {fmt(r['diff'])} reward per user ({ci}, which includes 0){among}.")


# ------------------------------------------------------------------------------ helpers
def _plugin_sentence(agg: pd.DataFrame) -> str:
    """Which policies came from user modules and what their families mean ('' when none ran)."""
    own = agg.drop_duplicates("policy")
    own = own[[is_plugin(p) for p in own["policy"]]]
    if own.empty:
        return ""
    text = (" From user modules (module:factory): " + ", ".join(f"{p} ({f})" for p, f in zip(
        own["policy"], own["family"], strict=True)) + "; their training cost is what they report, else the factory's "
            "wall time.")
    if DEFAULT_FAMILY in set(own["family"]):
        text += (" Family custom: in no built-in family; it competes as a deployable policy, on neither side of the "
                 "RL-versus-supervised verdict.")
    if ORACLE_FAMILY in set(own["family"]):
        text += " Family oracle: it reads the hidden user state; a reference, not deployable."
    return text


def _ci_text(low: Any, high: Any) -> str:
    return f"95% CI [{fmt(low)}, {fmt(high)}]"


def _excludes_zero(low: Any, high: Any) -> bool:
    return bool(float(low) > 0 or float(high) < 0)


def _isnan(value: Any) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def _with_comparison_columns(comparisons: pd.DataFrame) -> pd.DataFrame:
    """``comparisons`` with every column the summary reads (an empty frame may come without them)."""
    needed = ("preset", "kind", "a", "b", "diff", "low", "high")
    missing = [c for c in needed if c not in comparisons.columns]
    if missing and len(comparisons):
        raise ValueError(f"write_summary: the comparisons table lacks the column '{missing[0]}'")
    return comparisons.reindex(columns=list(dict.fromkeys([*needed, *comparisons.columns])))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
