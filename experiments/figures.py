"""The figures of ``driftrec compare`` (``runs/NAME/figures/``), drawn from its tables.

Each figure function takes pandas DataFrames, writes one PNG (``DPI`` dots per inch) atomically
(a temporary file in the same folder, then ``os.replace``) and returns its path. A table with no
row to draw (empty, or every reward NaN) writes nothing and returns None. Figures are made with
:class:`matplotlib.figure.Figure` and saved through the Agg canvas, never through ``pyplot``: no
display, no global figure registry, nothing to close, whatever backend another import chose.

- :func:`learning_curves` (curves: preset, seed, policy, timesteps, reward): one panel per
  preset, validation reward per user against training user-steps, mean over seeds with a
  min-max band.
- :func:`reward_by_day` (daily: preset, seed, policy, family, day, reward): one panel per
  preset, reward per user on each day of life, mean over seeds, calendar events shaded.
- :func:`reward_bars` (agg: preset, policy, family, reward, reward_low, reward_high): one
  panel per preset, reward per user with its 95% CI, best policy on top.
- :func:`interest_trajectories` (traj of :func:`trace_interests`: user_id, step, time,
  category, share): one panel per user, their interest share per category over their life.

Styling is the same in every figure: one colour per policy (:func:`policy_colors`, fixed for the
policies ``driftrec compare`` knows), and per family a line style (:data:`FAMILY_STYLE`):
reference dashed, supervised solid, rl thick, and for policies from user modules custom dash-dot,
oracle dashed; oracle-greedy, the upper reference, is a dashed black line. In the bar chart the
families are told apart by the bar's edge: reference and oracle bars are hatched, rl bars have a
thick black edge.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory
from scipy.special import softmax

from driftrec.envs.config import SimConfig
from driftrec.envs.rng import user_keys
from driftrec.envs.rollout import policy_act
from driftrec.envs.state import take_rows
from driftrec.envs.world import build_world
from driftrec.experiments.artifacts import atomic_path

DPI = 120
ORACLE = "oracle-greedy"
FAMILIES = ("reference", "supervised", "rl", "custom", "oracle")  # the last two: policies from user modules
HATCHED = ("reference", "oracle")
"""Families whose bars are hatched: the references."""

FAMILY_STYLE: dict[str, dict[str, Any]] = {
    "reference": {"linestyle": "--", "linewidth": 1.4},
    "supervised": {"linestyle": "-", "linewidth": 1.6},
    "rl": {"linestyle": "-", "linewidth": 2.8},
    "custom": {"linestyle": "-.", "linewidth": 2.0},
    "oracle": {"linestyle": "--", "linewidth": 1.8},
}
"""Line style of each policy family (a family not listed is drawn as supervised)."""

POLICY_COLORS: dict[str, str] = {
    # reference: neutral colours, oracle-greedy black (the dashed upper line)
    "oracle-greedy": "#000000", "random": "#7f7f7f", "popularity": "#8c564b", "logging": "#bcbd22",
    # supervised: one hue per model, light = fine-tuned, dark = periodically retrained
    "mlp": "#1f77b4", "mlp-finetune": "#6baed6", "mlp-retrain": "#08306b",
    "gru": "#2ca02c", "gru-finetune": "#74c476", "gru-retrain": "#00441b",
    "transformer": "#9467bd", "transformer-finetune": "#bcbddc", "transformer-retrain": "#3f007d",
    # rl: warm colours
    "ppo": "#d62728", "dqn": "#ff7f0e", "a2c": "#e377c2", "qrdqn": "#17becf", "maskable-ppo": "#a50f15",
}
"""Fixed colours of the policies ``driftrec compare`` knows, so a policy looks the same in every
figure and every run."""

EVENT_COLORS = {"promotion": "#fdae6b", "holiday": "#9ecae1", "weekend": "#d9d9d9"}
"""Shading of calendar events in :func:`reward_by_day`, by the first word of the event's label."""


# ------------------------------------------------------------------------------------- styling
def policy_colors(policies: Iterable[str]) -> dict[str, str]:
    """A colour (hex) for each policy name.

    Known names (:data:`POLICY_COLORS`) always get their fixed colour. Any other name gets a
    colour of matplotlib's ``tab20b`` palette picked by a stable hash of the name (CRC32, not
    Python's salted ``hash``), moving to the next free one if another name of ``policies``
    already took it; so an unknown policy keeps its colour across figures that show the same
    policies, and across runs.
    """
    names = list(dict.fromkeys(policies))
    colors = {p: POLICY_COLORS[p] for p in names if p in POLICY_COLORS}
    palette = [_hex(c) for c in colormaps["tab20b"].colors]
    used = set(colors.values())
    for name in sorted(p for p in names if p not in colors):
        start = zlib.crc32(name.encode()) % len(palette)
        free = [palette[(start + i) % len(palette)] for i in range(len(palette))
                if palette[(start + i) % len(palette)] not in used]
        colors[name] = free[0] if free else palette[start]  # more than 20 unknowns: colours repeat
        used.add(colors[name])
    return {p: colors[p] for p in names}


def _hex(rgb: Sequence[float]) -> str:
    return "#" + "".join(f"{round(255 * float(v)):02x}" for v in rgb[:3])


def _line_style(policy: str, family: str, color: str) -> dict[str, Any]:
    """Keyword arguments of ``Axes.plot`` for a policy of a family."""
    style = dict(FAMILY_STYLE.get(family, FAMILY_STYLE["supervised"]))
    if policy == ORACLE:
        style.update(linestyle="--", linewidth=1.8)
    return {**style, "color": color}


def _legend_order(families: Mapping[str, str]) -> list[str]:
    """Oracle-greedy first, then reference, supervised and rl policies, each by name."""
    rank = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(families, key=lambda p: (p != ORACLE, rank.get(families[p], len(rank)), p))


# ------------------------------------------------------------------------------------- helpers
def _require(frame: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    """Raise ValueError naming the first missing column of ``table``."""
    for column in columns:
        if column not in frame.columns:
            raise ValueError(f"{table} table has no column '{column}' (needs {', '.join(columns)})")


def _finite(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The rows whose ``columns`` are all finite numbers (NaN and inf rows cannot be drawn)."""
    keep = np.ones(len(frame), dtype=bool)
    for column in columns:
        keep &= np.isfinite(pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64))
    return frame.loc[keep]


def _families(frame: pd.DataFrame, default: str) -> dict[str, str]:
    """policy -> family from the table's ``family`` column (``default`` where there is none)."""
    if "family" not in frame.columns:
        return {p: default for p in frame["policy"].drop_duplicates()}
    return dict(frame.drop_duplicates("policy")[["policy", "family"]].itertuples(index=False, name=None))


def _panels(n: int, *, width: float, height: float, ncols: int = 3,
            extra_width: float = 0.0) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` panels in a grid of at most ``ncols`` columns (unused cells hidden)."""
    ncols = max(1, min(n, ncols))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols + extra_width, height * nrows), dpi=DPI, layout="constrained")
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)  # the format is explicit: the suffix is .tmp
    return Path(path)


def _policy_legend(fig: Figure, order: Sequence[str], families: Mapping[str, str], colors: Mapping[str, str],
                   extra: Sequence[Any] = ()) -> None:
    """One legend for the whole figure, to the right of the panels."""
    handles = [Line2D([], [], label=p, **_line_style(p, families[p], colors[p])) for p in order]
    fig.legend(handles=[*handles, *extra], loc="outside right upper", fontsize=8, frameon=False)


# ------------------------------------------------------------------------------------- calendar
def calendar_events(cfg: SimConfig, *, weekends: bool = False) -> list[tuple[int, int, str]]:
    """The drift events of the calendar of ``cfg``'s world, as ``(start_day, end_day, label)``.

    ``end_day`` is exclusive. Events of one kind over the same window are merged into one span
    whose label names the kind and the boosted categories, e.g. ``"holiday c1,c4,c7"``. Weekends
    come back (labelled ``"weekend c..."``) only if ``weekends``: they recur every week and
    would bury the promotions and holidays, which are the drift worth marking; :func:`reward_by_day`
    shades them in light grey without a label. Spans are sorted by start day and may run past
    the horizon (the calendar covers one day more).

    Empty when there are no boosts: ``drift_seasonal == 0`` (the calendar is drawn whatever the
    strength, but then it moves nothing) or a model without a calendar (``recsim-ie``).
    """
    if cfg.model != "shop" or cfg.drift_seasonal == 0.0:
        return []
    windows: dict[tuple[int, int, str], list[int]] = {}
    for event in build_world(cfg).events:
        if event.kind == "weekend" and not weekends:
            continue
        windows.setdefault((event.start_day, event.end_day, event.kind), []).append(event.category)
    spans = [(start, end, f"{kind} {','.join(f'c{c}' for c in sorted(set(cats)))}")
             for (start, end, kind), cats in windows.items()]
    return sorted(spans)


# ------------------------------------------------------------------------------------- figures
def learning_curves(curves: pd.DataFrame, path: str | Path, *,
                    colors: Mapping[str, str] | None = None) -> Path | None:
    """Validation reward per user against training user-steps; one panel per preset.

    ``curves`` has columns preset, seed, policy, timesteps, reward (and optionally family; the
    curves are RL agents', drawn in the rl style, where it is absent). Each policy's line is
    the mean over seeds at each ``timesteps``; with several seeds a band spans their min and
    max. Rows with a NaN reward or timesteps are left out; with no row left, nothing is written
    and the result is None. ``colors`` (policy -> colour) overrides :func:`policy_colors` for the
    policies it names.
    """
    _require(curves, ("preset", "seed", "policy", "timesteps", "reward"), "curves")
    data = _finite(curves, ("timesteps", "reward"))
    if data.empty:
        return None
    families = _families(data, default="rl")
    colors = {**policy_colors(families), **(colors or {})}
    order = _legend_order(families)
    presets = list(data["preset"].drop_duplicates())
    fig, axes = _panels(len(presets), width=4.6, height=3.3, extra_width=1.8)
    for ax, preset in zip(axes, presets, strict=True):
        sub = data[data["preset"] == preset]
        for policy in order:
            rows = sub[sub["policy"] == policy]
            if rows.empty:
                continue
            g = rows.groupby("timesteps")["reward"].agg(["mean", "min", "max"]).sort_index()
            style = _line_style(policy, families[policy], colors[policy])
            ax.plot(g.index, g["mean"], marker="o", markersize=3, **style)
            if rows["seed"].nunique() > 1:
                ax.fill_between(g.index, g["min"], g["max"], color=colors[policy], alpha=0.18, linewidth=0)
        ax.set_title(str(preset))
        ax.set_xlabel("training user-steps")
        ax.set_ylabel("validation reward per user")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
        ax.grid(alpha=0.3)
    _policy_legend(fig, order, families, colors)
    return _save(fig, path)


def reward_by_day(daily: pd.DataFrame, events: Mapping[str, Sequence[tuple[int, int, str]]] | None,
                  path: str | Path, *, colors: Mapping[str, str] | None = None) -> Path | None:
    """Reward per evaluation user on each day of life, one panel per preset, drift events shaded.

    ``daily`` has columns preset, seed, policy, family, day, reward; each line is a policy's
    mean over seeds. Every user starts on calendar day 0, so day of life = calendar day and the
    events of ``events[preset]`` (from :func:`calendar_events`; a preset missing from the
    mapping, or None, has none) are shaded over their days (``[start - 0.5, end - 0.5]``
    around the integer days), promotions in orange and holidays in blue, each labelled at its
    start; weekend spans, if given, are light grey and unlabelled. Oracle-greedy is the dashed
    black reference line. Rows with a NaN reward are left out; with no row left, nothing is
    written and the result is None. ``colors`` overrides :func:`policy_colors` as in
    :func:`learning_curves`.
    """
    _require(daily, ("preset", "seed", "policy", "family", "day", "reward"), "daily")
    data = _finite(daily, ("day", "reward"))
    if data.empty:
        return None
    events = events or {}
    families = _families(data, default="supervised")
    colors = {**policy_colors(families), **(colors or {})}
    order = _legend_order(families)
    presets = list(data["preset"].drop_duplicates())
    fig, axes = _panels(len(presets), width=6.4, height=3.4, ncols=2, extra_width=1.8)
    kinds_drawn: set[str] = set()
    for ax, preset in zip(axes, presets, strict=True):
        sub = data[data["preset"] == preset]
        days = sub["day"].to_numpy(dtype=np.float64)
        kinds_drawn |= _shade_events(ax, events.get(preset, ()), float(days.min()), float(days.max()))
        mean = sub.groupby(["policy", "day"])["reward"].mean()
        for policy in order:
            if policy not in mean.index.get_level_values(0):
                continue
            line = mean.loc[policy].sort_index()
            style = _line_style(policy, families[policy], colors[policy])
            ax.plot(line.index, line.to_numpy(), zorder=3 if policy == ORACLE else 2, **style)
        ax.set_xlim(days.min() - 0.5, days.max() + 0.5)
        ax.set_title(str(preset))
        ax.set_xlabel("day of life (= calendar day)")
        ax.set_ylabel("reward per user")
        ax.grid(alpha=0.3)
    patches = [Patch(facecolor=EVENT_COLORS[k], alpha=0.6, label=k, hatch="///" if k == "holiday" else None,
                     edgecolor="#4292c6" if k == "holiday" else "none")
               for k in EVENT_COLORS if k in kinds_drawn]
    _policy_legend(fig, order, families, colors, extra=patches)
    return _save(fig, path)


def _shade_events(ax: Axes, spans: Sequence[tuple[int, int, str]], first: float, last: float) -> set[str]:
    """Shade the event spans that overlap days ``first..last``; label all but weekends at their
    start (labels of spans starting on the same day are joined). Returns the kinds drawn."""
    kinds: set[str] = set()
    labels: dict[float, list[str]] = {}
    for start, end, label in spans:
        lo, hi = max(start - 0.5, first - 0.5), min(end - 0.5, last + 0.5)
        if hi <= lo:
            continue  # outside the days of the table
        kind = label.split(" ", 1)[0]
        color = EVENT_COLORS.get(kind, "#c7e9c0")
        weekend = kind == "weekend"
        # holidays are hatched too, so they stay recognisable where they overlap a promotion
        ax.axvspan(lo, hi, facecolor=color, alpha=0.3 if weekend else 0.45, linewidth=0, zorder=0,
                   hatch="///" if kind == "holiday" else None, edgecolor="#4292c6" if kind == "holiday" else None)
        kinds.add(kind if kind in EVENT_COLORS else "other")
        if not weekend:
            labels.setdefault(lo, []).append(label)
    transform = blended_transform_factory(ax.transData, ax.transAxes)  # x in days, y in the axes' height
    for x, texts in labels.items():
        ax.text(x + 0.1, 0.98, " / ".join(texts), transform=transform, rotation=90, va="top", ha="left",
                fontsize=6.5, color="0.25", zorder=4, clip_on=True)
    return kinds


def reward_bars(agg: pd.DataFrame, path: str | Path, *, colors: Mapping[str, str] | None = None) -> Path | None:
    """Reward per user of each policy with its 95% CI, one panel per preset, best on top.

    ``agg`` has columns preset, policy, family, reward, reward_low, reward_high. Horizontal
    bars (long policy names stay readable), sorted by reward, each labelled with its value; the
    error bar spans [reward_low, reward_high] (none where a bound is NaN). Reference bars are
    hatched, rl bars have a thick black edge. Rows with a NaN reward are left out; with no row
    left, nothing is written and the result is None. ``colors`` overrides :func:`policy_colors`
    as in :func:`learning_curves`.
    """
    _require(agg, ("preset", "policy", "family", "reward", "reward_low", "reward_high"), "agg")
    data = _finite(agg, ("reward",))
    if data.empty:
        return None
    families = _families(data, default="supervised")
    colors = {**policy_colors(families), **(colors or {})}
    presets = list(data["preset"].drop_duplicates())
    most = int(data.groupby("preset")["policy"].nunique().max())
    fig, axes = _panels(len(presets), width=4.4, height=0.9 + 0.3 * most, extra_width=1.2)
    for ax, preset in zip(axes, presets, strict=True):
        sub = data[data["preset"] == preset].sort_values("reward", kind="stable")  # barh: last on top
        reward = sub["reward"].to_numpy(dtype=np.float64)
        low = pd.to_numeric(sub["reward_low"], errors="coerce").to_numpy(dtype=np.float64)
        high = pd.to_numeric(sub["reward_high"], errors="coerce").to_numpy(dtype=np.float64)
        has_ci = np.isfinite(low) & np.isfinite(high)
        err = np.where(has_ci, np.stack([reward - low, high - reward]), 0.0).clip(min=0.0)
        y = np.arange(len(sub))
        policies = list(sub["policy"])
        fam = [families.get(p, "supervised") for p in policies]
        ax.barh(y, reward, color=[colors[p] for p in policies], alpha=0.85,
                hatch=["//" if f in HATCHED else "" for f in fam],
                edgecolor=["black" if f == "rl" else "white" for f in fam],
                linewidth=[2.0 if f == "rl" else 0.5 for f in fam])
        ax.errorbar(reward, y, xerr=err, fmt="none", ecolor="0.2", elinewidth=1.0, capsize=3)
        right = np.where(has_ci, np.maximum(high, reward), reward)
        span = float(max(right.max(), 0.0) - min(reward.min(), 0.0)) or 1.0
        for yi, x, value in zip(y, right, reward, strict=True):
            ax.text(max(x, 0.0) + 0.02 * span, yi, f"{value:.3g}", va="center", fontsize=7)
        ax.set_xlim(min(reward.min(), 0.0) - (0.02 * span if reward.min() < 0 else 0.0), right.max() + 0.18 * span)
        ax.set_yticks(y, policies, fontsize=8)
        ax.set_title(str(preset))
        ax.set_xlabel("reward per user (95% CI)")
        ax.grid(axis="x", alpha=0.3)
    present = [f for f in FAMILIES if f in set(families.values())]
    handles = [Patch(facecolor="0.8", hatch="//" if f in HATCHED else "",
                     edgecolor="black" if f == "rl" else "white", linewidth=2.0 if f == "rl" else 0.5, label=f)
               for f in present]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False, title="family",
               title_fontsize=8)
    return _save(fig, path)


# ------------------------------------------------------------------------------------- interests
TRACE_COLUMNS = ("user_id", "step", "time", "category", "share")
"""Columns of :func:`trace_interests`' table."""


def interest_shares(user_model: Any, state: Any, scale: float | None = None) -> np.ndarray:
    """(N, C) share of each category in the current interest of each user of a batch state.

    ShopSim: ``softmax(scale * interest . centroid_c)`` over the category centroids, ``scale``
    defaulting to ``cfg.interest_scale``, the weight of interest . topic in utility: the share
    is then the choice share of category c among C items with its centroid as topic and
    otherwise equal appeal, price, fatigue and boosts. ``scale = 1 / cfg.search_temperature``
    gives the probabilities of the category an organic search names instead.

    recsim-ie: ``(u_c + 1) / sum_j (u_j + 1)``, RecSim's own click weights: the share of the
    clicks that go to topic c when a slate holds one document of every topic (uniform if every
    ``u_c`` is -1). ``scale`` does not apply there.
    """
    interest = np.asarray(state.interest, dtype=np.float64)
    centroid = getattr(user_model.world, "centroid", None)
    if centroid is not None:
        scale = user_model.cfg.interest_scale if scale is None else float(scale)
        if not (math.isfinite(scale) and scale >= 0.0):
            raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
        return softmax(scale * interest @ np.asarray(centroid).T, axis=1)
    if getattr(user_model.cfg, "model", None) == "recsim-ie":
        weight = interest + 1.0
        total = weight.sum(axis=1, keepdims=True)
        uniform = np.full_like(weight, 1.0 / weight.shape[1])
        return np.where(total > 0.0, weight / np.where(total > 0.0, total, 1.0), uniform)
    raise TypeError(f"interest shares need a ShopModel or a RecSimIEModel, got {type(user_model).__name__}")


def trace_interests(user_model: Any, policy: Any, seeds: Sequence[int] | np.ndarray, *, max_steps: int | None = None,
                    scale: float | None = None) -> pd.DataFrame:
    """Follow the users of ``seeds`` (one life each, as :func:`driftrec.envs.rollout.rollout`
    does) under ``policy`` and record their interest share per category after every request.

    The policy gets the batch state only if its ``reads_hidden_state`` and the action masks
    only if its ``uses_mask``; ``policy.reset(n)`` starts the batch and ``policy.keep_rows``
    hears when finished users are dropped. ``max_steps`` caps the requests per user (None: to
    the end of every life). Shares are :func:`interest_shares` (``scale`` as there).

    Returns a long table with columns :data:`TRACE_COLUMNS`: ``user_id`` (the seed, as in the
    event log), ``step`` (requests served; 0 is the user at birth), ``time`` (days since the
    life began, after that request: a request that ends a session moves the clock to the next
    session, when gradual drift and migration are applied), ``category`` and ``share``
    (summing to 1 over the categories of a step). Users in the order of ``seeds``, then steps,
    then categories; deterministic for fixed seeds and a deterministic policy.
    """
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    if max_steps is not None and max_steps < 0:
        raise ValueError(f"max_steps must be >= 0 or None, got {max_steps}")
    n = len(seeds)
    if n == 0:
        return pd.DataFrame({"user_id": np.zeros(0, np.int64), "step": np.zeros(0, np.int64),
                             "time": np.zeros(0), "category": np.zeros(0, np.int64), "share": np.zeros(0)})
    policy.reset(n)
    state = user_model.init(user_keys(seeds), np.zeros(n, dtype=np.int64))
    rows = np.arange(n)  # index into seeds of each batch row
    parts: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []  # (rows, step, time, shares)
    parts.append((rows, 0, np.asarray(state.time, dtype=np.float64).copy(), interest_shares(user_model, state, scale)))
    step = 0
    while len(rows) and (max_steps is None or step < max_steps):
        actions, _ = policy_act(policy, user_model, state)
        state, out = user_model.step(state, actions, inplace=True)
        step += 1
        parts.append((rows, step, np.asarray(state.time, dtype=np.float64).copy(),
                      interest_shares(user_model, state, scale)))
        done = np.asarray(out.terminated) | np.asarray(out.truncated)
        if done.any():  # drop finished users at once: a batch of a few users is cheap to slice
            keep = np.flatnonzero(~done)
            state, rows = take_rows(state, keep), rows[keep]
            policy.keep_rows(keep)
    n_cat = parts[0][3].shape[1]
    index = np.concatenate([np.repeat(r, n_cat) for r, _, _, _ in parts])
    steps = np.concatenate([np.full(len(r) * n_cat, s, dtype=np.int64) for r, s, _, _ in parts])
    frame = pd.DataFrame({
        "user_id": seeds[index],
        "step": steps,
        "time": np.concatenate([np.repeat(t, n_cat) for _, _, t, _ in parts]),
        "category": np.concatenate([np.tile(np.arange(n_cat, dtype=np.int64), len(r)) for r, _, _, _ in parts]),
        "share": np.concatenate([sh.reshape(-1) for _, _, _, sh in parts]),
    })
    order = np.lexsort((frame["category"].to_numpy(), steps, index))
    return frame.iloc[order].reset_index(drop=True)


def interest_trajectories(traj: pd.DataFrame, path: str | Path) -> Path | None:
    """One panel per user: their interest share per category over the days of their life.

    ``traj`` is :func:`trace_interests`' table (``step`` may be absent: rows of a user and
    category are then taken in order). Each panel stacks the category shares (areas summing to
    1) against ``time`` in days (in minutes when no life in the table reaches one day, as in
    recsim-ie), so drift shows as bands widening and narrowing; a constant
    stack means the interest never moved. Categories share one colour across panels and are
    named in a legend (up to 20 categories; beyond that the colours repeat a continuous map and
    the legend is left out). Steps with a NaN share are left out; with no row left, nothing is
    written and the result is None.
    """
    _require(traj, ("user_id", "time", "category", "share"), "interest trajectories")
    data = traj if "step" in traj.columns else traj.assign(step=traj.groupby(["user_id", "category"]).cumcount())
    data = _finite(data, ("time", "share"))
    if data.empty:
        return None
    categories = np.sort(data["category"].unique())
    n_cat = len(categories)
    if n_cat <= 10:
        palette = [_hex(c) for c in colormaps["tab10"].colors][:n_cat]
    elif n_cat <= 20:
        palette = [_hex(c) for c in colormaps["tab20"].colors][:n_cat]
    else:
        palette = [_hex(colormaps["turbo"](i / max(n_cat - 1, 1))) for i in range(n_cat)]
    # recsim-ie lives last a few hours: their days would read 0.00 .. 0.14, so show minutes
    short = float(data["time"].max()) < 1.0
    time_scale, time_label = (1440.0, "minutes of life") if short else (1.0, "day of life")
    users = list(data["user_id"].drop_duplicates())
    fig, axes = _panels(len(users), width=4.8, height=2.8, ncols=2, extra_width=1.2 if n_cat <= 20 else 0.0)
    for ax, user in zip(axes, users, strict=True):
        wide = data[data["user_id"] == user].pivot_table(index="step", columns="category", values="share",
                                                         aggfunc="first").reindex(columns=categories).dropna()
        if wide.empty:
            ax.set_visible(False)
            continue
        time = data[data["user_id"] == user].groupby("step")["time"].first().reindex(wide.index).to_numpy()
        ax.stackplot(time * time_scale, wide.to_numpy().T, colors=palette, linewidth=0)
        ax.set_xlim(time.min() * time_scale, max(time.max(), time.min() + 1e-9) * time_scale)
        ax.set_ylim(0.0, 1.0)
        ax.set_title(f"user {user}", fontsize=9)
        ax.set_xlabel(time_label)
        ax.set_ylabel("interest share")
    if n_cat <= 20:
        handles = [Patch(facecolor=c, label=f"c{cat}") for cat, c in zip(categories, palette, strict=True)]
        fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False, title="category",
                   title_fontsize=8)
    return _save(fig, path)
