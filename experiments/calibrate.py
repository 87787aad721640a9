"""``driftrec calibrate --logs FILE --out preset.yaml``: fit the simulator's knobs to a real log.

The log's statistics (:mod:`driftrec.experiments.logstats`) are the targets. Some knobs are read
off the log directly; the others are fitted by simulation: simulate a log under the logging
policy that ``driftrec simulate --policy logging`` uses, measure it through the behaviours the
real log records, move each knob toward its statistic's target, repeat.

| statistic | knob | how |
|---|---|---|
| items seen | ``n_items`` | directly |
| categories | ``n_categories`` | directly (kept when the log has no categories) |
| median item price, std of log price | ``price_mean``, ``price_spread`` | directly |
| span of the log (days) | ``horizon_days`` | directly (capped by ``max_days``) |
| click-through | ``no_click_utility`` | fitted: logit(CTR) falls about 1 per logit |
| add-to-cart rate | ``cart_bias`` | fitted: logit(carts / clicks) |
| conversion | ``purchase_bias`` | fitted: logit(purchases / clicks) |
| events per session | ``patience_mean`` | fitted: log-log |
| days between sessions | ``gap_mean_days`` | fitted: log-log |
| Gini of interactions per item | ``appeal_scale`` | fitted: a wider appeal spread concentrates clicks |
| drift excess (JS minus shuffled null) | ``drift_gradual``, ``drift_migration`` | fitted: scales the base pair |

The fit is a damped Newton iteration on every fitted knob at once with a diagonal Jacobian: each
round simulates once with the current knobs, and each knob takes a step of (target - simulated)
/ slope in its own transformed units, the slope being the secant of its last two rounds (clamped
to a plausible range around a prior, since other knobs move too). Every round simulates the same
users with the same seeded logging policy (common random numbers), so the map from knobs to
statistics is deterministic and the secants are not swamped by noise. The answer is the mean
of the knobs over the later half of the rounds. The whole fit is seeded: the same log and seed give the same preset.

Why the logging policy's seed matters: it ranks items by a random-policy burn-in, and with one
slot per request most impressions go to its top item, whose quality then drives carts, purchases
and session lengths. The fit uses the burn-in of ``driftrec simulate --policy logging --seed SEED``
(the same seed) and held-out users (``eval_seeds``), never the users that command writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from driftrec.agents.registry import make_policy
from driftrec.envs.config import ConfigError, SimConfig, parse_sets
from driftrec.envs.presets import PRESETS, preset_config
from driftrec.envs.rollout import eval_seeds
from driftrec.envs.rollout import simulate_log as simulate_events
from driftrec.envs.user_model import build_user_model
from driftrec.envs.world import build_world
from driftrec.experiments.artifacts import plain, write_text
from driftrec.experiments.cliutil import CLIError, check_output, positive_int
from driftrec.experiments.ingest import add_log_arguments, log_format
from driftrec.experiments.logstats import STATISTICS, LogStats, log_stats
from driftrec.ingest.load import load_log

DRIFT_KNOB = "drift_strength"
"""Pseudo-knob of the fit: a multiple of the base preset's (drift_gradual, drift_migration)."""

DAMPING = 0.7  # fraction of the Newton step taken: the statistics jump when a burn-in's top item changes
DEFAULT_DRIFT_PAIR = (0.15, 0.02)  # the default preset's pair, used when the base preset has no drift


@dataclasses.dataclass(frozen=True)
class Fit:
    """How one statistic is fitted by one knob.

    The search runs in transformed units: ``stat_tf`` of the statistic, ``knob_tf`` of the knob
    ('log' or 'id'); ``slope`` is the prior d stat_tf / d knob_tf, ``max_step`` bounds one step.
    """

    stat: str
    knob: str
    stat_tf: str  # "logit", "log" or "id"
    knob_tf: str  # "log" or "id"
    slope: float
    lo: float  # knob bounds (in knob units)
    hi: float
    max_step: float
    tol: float  # in stat_tf units: this close counts as matched

    def to_x(self, value: float) -> float:
        return math.log(value) if self.knob_tf == "log" else value

    def from_x(self, x: float) -> float:
        return math.exp(x) if self.knob_tf == "log" else x

    def stat_t(self, value: float) -> float:
        if self.stat_tf == "logit":
            v = min(max(value, 1e-6), 1 - 1e-6)
            return math.log(v / (1 - v))
        if self.stat_tf == "log":
            return math.log(max(value, 1e-9))
        return value


FITS: tuple[Fit, ...] = (
    Fit("ctr", "no_click_utility", "logit", "id", -0.8, -8.0, 12.0, 1.5, 0.04),
    Fit("cart_rate", "cart_bias", "logit", "id", 0.8, -10.0, 10.0, 1.5, 0.04),
    Fit("conversion", "purchase_bias", "logit", "id", 0.5, -10.0, 10.0, 1.5, 0.04),
    Fit("session_events", "patience_mean", "log", "log", 0.7, 0.5, 1000.0, 1.0, 0.03),
    Fit("gap_days", "gap_mean_days", "log", "log", 0.7, 0.01, 100.0, 1.0, 0.03),
    Fit("gini", "appeal_scale", "logit", "id", 0.5, 0.0, 5.0, 0.75, 0.03),
    Fit("drift_excess", DRIFT_KNOB, "id", "id", 0.02, 0.0, 10.0, 1.5, 0.004),
)
"""The fitted statistics and their knobs, in the order of the table."""

START_KEYS: tuple[str, ...] = tuple(f.knob for f in FITS if f.knob != DRIFT_KNOB) + ("drift_gradual", "drift_migration")
"""The SimConfig keys the fit moves: those :func:`calibrate`'s ``start`` may set."""

DIRECT = {"n_items": "items seen", "n_categories": "categories", "price_mean": "median item price",
          "price_spread": "std of log price", "horizon_days": "span of the log"}


@dataclasses.dataclass
class Calibration:
    """The outcome of :func:`calibrate`."""

    base: str
    overrides: dict[str, Any]  # fitted and direct SimConfig keys over the base preset
    real: LogStats
    fitted: LogStats  # the simulated log under the fitted knobs
    start: LogStats  # the simulated log of round 0: the base preset (or start values) with the direct keys
    fitted_keys: tuple[str, ...]  # knobs fitted by simulation (the rest of overrides are direct)
    rounds: list[dict[str, Any]]
    users: int
    seed: int
    seconds: float

    def table(self) -> pd.DataFrame:
        """Each statistic: real, simulated with the fitted knobs, simulated with the base preset, and the knob."""
        knob_of = {f.stat: f.knob for f in FITS}
        knob_of.update({"n_items": "n_items", "n_categories": "n_categories", "price_median": "price_mean",
                        "price_log_std": "price_spread"})
        rows = []
        for stat, label in STATISTICS.items():
            rows.append({"statistic": stat, "label": label, "real": getattr(self.real, stat),
                         "fitted": getattr(self.fitted, stat), "base": getattr(self.start, stat),
                         "knob": knob_of.get(stat, "")})
        return pd.DataFrame(rows)


def simulate_log(cfg: SimConfig, users: int, seed: int, groups: int = 1) -> pd.DataFrame:
    """The event log of ``users`` held-out users (``eval_seeds(seed, users)``) under the logging policy.

    The users are split into ``groups``; group g is served by the logging policy of seed
    ``seed + g`` (its burn-in is that of ``driftrec simulate --policy logging --seed SEED+g``), so
    the log pools several burn-ins instead of hanging on one burn-in's top item.
    """
    user_model = build_user_model(cfg)
    parts = np.array_split(eval_seeds(seed, users), max(1, min(groups, users)))
    # groups are consecutive seeds, so their logs (each sorted by user) follow one another
    logs = [simulate_events(user_model, make_policy("logging", user_model, len(part), seed + g), part).events
            for g, part in enumerate(parts)]
    return pa.concat_tables(logs).to_pandas()


def direct_overrides(real: LogStats, base_cfg: SimConfig, max_days: float) -> dict[str, Any]:
    """The knobs read off the log: catalog, categories, prices and horizon (unmeasured ones are left out)."""
    out: dict[str, Any] = {}
    if real.n_items is not None:
        out["n_items"] = int(min(max(real.n_items, 2), 1_000_000))
    if real.n_categories is not None:
        out["n_categories"] = int(min(real.n_categories, 1000))
    n_items = out.get("n_items", base_cfg.n_items)
    if out.get("n_categories", base_cfg.n_categories) > n_items:
        out["n_categories"] = n_items
    if real.price_log_std is not None:
        # world.py draws log price = log price_mean + spread * (fixed normals of the world seed): its std
        # is linear in the spread, so one world at spread 1 gives the spread that matches exactly
        unit = SimConfig.from_dict({"n_items": n_items, "n_categories": out.get("n_categories", base_cfg.n_categories),
                                    "price_spread": 1.0}, base=base_cfg)
        unit_std = float(np.log(build_world(unit).price).std())
        out["price_spread"] = float(min(real.price_log_std / unit_std, 5.0)) if unit_std > 0 else base_cfg.price_spread
    if real.price_median is not None:
        # prices are proportional to price_mean: scale it so the world's median item price is the log's
        unit = SimConfig.from_dict({"n_items": n_items, "n_categories": out.get("n_categories", base_cfg.n_categories),
                                    "price_spread": out.get("price_spread", base_cfg.price_spread),
                                    "price_mean": 1.0}, base=base_cfg)
        out["price_mean"] = float(min(max(real.price_median / float(np.median(build_world(unit).price)), 0.01), 1e6))
    if real.span_days is not None:
        out["horizon_days"] = float(min(max(math.ceil(real.span_days * 10) / 10, 1.0), max_days))
    return out


def calibrate(events: pd.DataFrame, *, base: str = "default", users: int = 300, groups: int = 4, rounds: int = 16,
              budget_s: float = 90.0, seed: int = 0, max_days: float = 60.0,
              overrides: Mapping[str, Any] | None = None, start: Mapping[str, float] | None = None,
              progress: Callable[[str], Any] | None = None) -> Calibration:
    """Fit ``base``'s knobs so that the logging policy's simulated log matches ``events``' statistics.

    ``users`` simulated users per round; at most ``rounds`` rounds, and no new round once
    ``budget_s`` seconds have passed; ``overrides`` (SimConfig keys) are fixed over the base and
    never fitted; ``start`` (fitted knobs, :data:`START_KEYS`) are where the fit starts instead of
    the base's values (the drift strength then scales the start's drift pair; a knob whose
    statistic the log lacks is not fitted and keeps the base's value); ``progress`` hears one line
    per round. See the module doc for the method.
    """
    say = progress or (lambda line: None)
    start_time = time.perf_counter()
    if base not in PRESETS:
        raise ConfigError(f"unknown base preset '{base}'; choose one of: {', '.join(PRESETS)}")
    fixed = dict(overrides or {})
    base_cfg = preset_config(base, fixed)
    start_cfg = _start_config(base_cfg, start or {}, fixed)
    if base_cfg.model != "shop":
        raise ConfigError(f"base preset '{base}' uses the {base_cfg.model} user model; calibration fits ShopSim")
    real = log_stats(events, seed=seed)
    if real.n_events == 0:
        raise ConfigError("the log has no events to calibrate to")
    say(f"real log: {real.n_events:,} events, {real.n_users:,} users, {real.span_days or 0:.1f} days, "
        f"behaviours {', '.join(real.behaviours)}")
    direct = {k: v for k, v in direct_overrides(real, base_cfg, max_days).items() if k not in fixed}
    fits = [f for f in FITS if getattr(real, f.stat) is not None and f.knob not in fixed
            and not (f.knob == DRIFT_KNOB and ({"drift_gradual", "drift_migration"} & fixed.keys()))]
    g0, m0 = start_cfg.drift_gradual, start_cfg.drift_migration
    x = {}
    for f in fits:
        if f.knob == DRIFT_KNOB:
            x[f.knob] = 1.0 if (g0 > 0 or m0 > 0) else 0.0
        else:
            x[f.knob] = f.to_x(min(max(float(getattr(start_cfg, f.knob)), f.lo), f.hi))
    if g0 == 0 and m0 == 0:
        g0, m0 = DEFAULT_DRIFT_PAIR

    def knob_values(xs: Mapping[str, float]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fits:
            value = min(max(f.from_x(xs[f.knob]), f.lo), f.hi)
            if f.knob == DRIFT_KNOB:
                out["drift_gradual"] = round(min(g0 * value, 10.0), 6)
                out["drift_migration"] = round(min(m0 * value, 10.0), 6)
            else:
                out[f.knob] = round(value, 6)
        return out

    history: list[dict[str, Any]] = []
    slopes = {f.knob: f.slope for f in fits}
    for r in range(max(rounds, 1)):
        keys = {**direct, **knob_values(x)}
        cfg = SimConfig.from_dict({**keys, **fixed}, base=preset_config(base))
        sim = log_stats(simulate_log(cfg, users, seed, groups), behaviours=real.behaviours, seed=seed)
        errors: dict[str, float] = {}
        parts = []
        for f in fits:
            got = getattr(sim, f.stat)
            if got is None:
                continue
            errors[f.stat] = f.stat_t(getattr(real, f.stat)) - f.stat_t(got)
            parts.append(f"{f.stat} {got:.3g}/{getattr(real, f.stat):.3g}")
        score = sum((e / f.tol) ** 2 for f in fits if (e := errors.get(f.stat)) is not None)
        score += sum(1e6 for f in fits if f.stat not in errors)  # a statistic the simulation lost
        entry = {"round": r, "keys": keys, "stats": sim, "errors": errors, "score": score, "x": dict(x)}
        history.append(entry)
        elapsed = time.perf_counter() - start_time
        say(f"round {r + 1}/{rounds} ({elapsed:.0f} s): " + ", ".join(parts) + f" (sim/real); score {score:.1f}")
        if all(abs(errors.get(f.stat, math.inf)) <= f.tol for f in fits) or elapsed > budget_s or r + 1 >= rounds:
            break
        # one damped Newton step per knob; the slope is the secant of its last two rounds if plausible
        for f in fits:
            if f.stat not in errors:
                continue
            if len(history) >= 2 and f.stat in history[-2]["errors"]:
                prev = history[-2]
                dx = x[f.knob] - prev["x"][f.knob]
                if abs(dx) > 1e-9:
                    # stat_t(sim) = stat_t(real) - error
                    secant = (prev["errors"][f.stat] - errors[f.stat]) / dx
                    if secant * f.slope > 0:
                        slopes[f.knob] = math.copysign(min(max(abs(secant), abs(f.slope) / 5), abs(f.slope) * 5),
                                                       f.slope)
            step = max(-f.max_step, min(f.max_step, DAMPING * errors[f.stat] / slopes[f.knob]))
            x[f.knob] = min(max(x[f.knob] + step, f.to_x(f.lo)), f.to_x(f.hi))
    # the answer: the mean of the knobs over the later half of the rounds (Polyak averaging), which
    # smooths the jumps a new burn-in top item causes; one more simulation measures it for the table
    late = history[len(history) // 2:] if len(history) > 2 else history[-1:]
    final_x = {f.knob: float(np.mean([h["x"][f.knob] for h in late])) for f in fits}
    keys = {**direct, **knob_values(final_x)}
    cfg = SimConfig.from_dict({**keys, **fixed}, base=preset_config(base))
    fitted = log_stats(simulate_log(cfg, users, seed, groups), behaviours=real.behaviours, seed=seed)
    say(f"fitted (mean of rounds {late[0]['round'] + 1}-{late[-1]['round'] + 1}): "
        + ", ".join(f"{k}={_num(v)}" for k, v in knob_values(final_x).items())
        + f" ({time.perf_counter() - start_time:.0f} s)")
    return Calibration(
        base=base, overrides={**keys, **fixed}, real=real, fitted=fitted, start=history[0]["stats"],
        fitted_keys=tuple(k for k in keys if k not in direct), rounds=[_round_record(h) for h in history],
        users=users, seed=seed, seconds=time.perf_counter() - start_time)


def _start_config(base_cfg: SimConfig, start: Mapping[str, float], fixed: Mapping[str, Any]) -> SimConfig:
    """``base_cfg`` with the fit's ``start`` values; ConfigError for a key that is not fitted or is fixed."""
    for key in start:
        if key not in START_KEYS:
            raise ConfigError(f"start key '{key}' is not a fitted knob; choose among: {', '.join(START_KEYS)}")
        if key in fixed:
            raise ConfigError(f"start key '{key}' is also a fixed override: a fixed knob is not fitted")
    return SimConfig.from_dict(dict(start), base=base_cfg)


def _round_record(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {"round": entry["round"], "keys": plain(entry["keys"]), "score": float(entry["score"]),
            "errors": {k: float(v) for k, v in entry["errors"].items()}}


# ------------------------------------------------------------------------------------- output
def preset_document(cal: Calibration, name: str, source: str) -> dict[str, Any]:
    """The preset YAML mapping (see :mod:`driftrec.envs.presets`) of a calibration."""
    today = dt.date.today().isoformat()
    fitted = ", ".join(f"{k}={_num(cal.overrides[k])}" for k in cal.fitted_keys) or "none"
    direct = ", ".join(f"{k}={_num(v)}" for k, v in cal.overrides.items() if k not in cal.fitted_keys) or "none"
    r = cal.real
    return {
        "name": name,
        "version": 1,
        "summary": f"calibrated to the log {Path(source).name}",
        "description": (f"Calibrated by `driftrec calibrate` on {today} to the event log '{source}' "
                        f"({r.n_events:,} events, {r.n_users:,} users over {r.span_days or 0:.1f} days), starting "
                        f"from the '{cal.base}' preset. Read off the log: {direct}. Fitted by simulation under the "
                        f"logging policy ({cal.users} users, seed {cal.seed}): {fitted}. The report beside this file "
                        "compares each statistic, real versus simulated."),
        "base": cal.base,
        "overrides": plain(cal.overrides),
        "source": {"log": str(source), "events": r.n_events, "users": r.n_users, "span_days": r.span_days,
                   "calibration": {"users": cal.users, "seed": cal.seed, "rounds": len(cal.rounds)}},
        "created": today,
    }


def report_markdown(cal: Calibration, name: str, source: str) -> str:
    """The calibration table as Markdown."""
    lines = [f"# Calibration of preset `{name}` to `{source}`", "",
             f"Base preset `{cal.base}`; {len(cal.rounds)} rounds of {cal.users} simulated users (seed {cal.seed}), "
             f"{cal.seconds:.0f} s. *fitted*: simulated with the fitted knobs; *base*: the base preset with the "
             "catalog, prices and horizon read off the log. '-': not measurable in that log.", "",
             "| statistic | real | fitted | base | knob |", "|---|---:|---:|---:|---|"]
    for row in cal.table().itertuples():
        lines.append(f"| {row.label} | {_num(row.real)} | {_num(row.fitted)} | {_num(row.base)} | {row.knob} |")
    lines += ["", "| knob | base | calibrated |", "|---|---:|---:|"]
    base_cfg = preset_config(cal.base)
    for key, value in cal.overrides.items():
        lines.append(f"| {key} | {_num(getattr(base_cfg, key))} | {_num(value)} |")
    return "\n".join(lines) + "\n"


def write_calibration(cal: Calibration, out: Path, name: str, source: str) -> tuple[Path, Path, Path]:
    """Write the preset YAML ``out`` and its report (``.report.md``, ``.report.json``) beside it, atomically."""
    doc = preset_document(cal, name, source)
    stem = out.with_suffix("")
    md, js = Path(f"{stem}.report.md"), Path(f"{stem}.report.json")
    payload = {"preset": str(out), "source": str(source), "base": cal.base, "overrides": plain(cal.overrides),
               "fitted_keys": list(cal.fitted_keys), "seconds": cal.seconds,
               "table": plain(cal.table().to_dict(orient="records"), finite=True),
               "rounds": cal.rounds, "real": plain(cal.real.to_dict(), finite=True)}
    write_text(md, report_markdown(cal, name, source))
    write_text(js, json.dumps(payload, indent=2) + "\n")
    write_text(out, yaml.safe_dump(doc, sort_keys=False, width=100))
    return out, md, js


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return f"{float(value):.4g}"


# ------------------------------------------------------------------------------------- CLI
def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``driftrec calibrate``."""
    p = sub.add_parser(
        "calibrate", help="fit a preset's knobs to a real event log; write a preset YAML and a report",
        description="Measure the log's statistics (catalog, popularity skew, categories, click-through, "
                    "conversion, sessions, gaps, interest drift), fit the simulator's knobs by simulating the "
                    "logging policy until its log matches, and write a preset file that `simulate --preset` "
                    "and `compare` accept, with a table of each statistic, real versus simulated.")
    add_log_arguments(p, "the log: CSV or Parquet, raw or a driftrec event log")
    p.add_argument("--out", required=True, type=Path, help="preset YAML to write (a .report.md/.json goes beside it)")
    p.add_argument("--base", default="default", help="built-in preset to start from (default: default)")
    p.add_argument("--name", default=None, help="the preset's name (default: the --out file name without .yaml)")
    p.add_argument("--users", type=positive_int, default=300, help="simulated users per round (default: 300)")
    p.add_argument("--groups", type=positive_int, default=4,
                   help="logging-policy seeds the simulated users are split over (default: 4)")
    p.add_argument("--rounds", type=positive_int, default=16, help="at most this many fitting rounds (default: 16)")
    p.add_argument("--budget", type=float, default=90.0,
                   help="seconds after which no new round starts (default: 90)")
    p.add_argument("--max-days", type=float, default=60.0,
                   help="cap of the simulated horizon, which otherwise matches the log's span (default: 60)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated users and logging policy (default: 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a SimConfig key (not fitted; repeatable)")
    p.set_defaults(func=run)


def read_log(path: Path, format_file: Path | None = None, skip_bad_rows: bool = False) -> pd.DataFrame:
    """The events of a log file (CSV, Parquet or a driftrec event log) via :func:`driftrec.ingest.load.load_log`;
    its errors are one-line ConfigErrors naming the file and row."""
    return load_log(path, log_format(format_file, []), skip_bad_rows=skip_bad_rows).events


def run(args: argparse.Namespace) -> int:
    """Calibrate to ``args.logs`` and write ``args.out`` with its report."""
    if not math.isfinite(args.budget) or args.budget <= 0:
        raise CLIError(f"--budget must be a positive number of seconds, got {args.budget}")
    if not 0.1 <= args.max_days <= 3650:
        raise CLIError(f"--max-days must be in [0.1, 3650], got {args.max_days}")
    if args.base not in PRESETS:
        raise CLIError(f"unknown base preset '{args.base}'; choose one of: {', '.join(PRESETS)}")
    fixed = parse_sets(args.overrides)
    preset_config(args.base, fixed)  # a bad --set fails before the log is read
    check_output(args.out)
    name = args.name or args.out.name.removesuffix(".yaml").removesuffix(".yml")
    if name in PRESETS:
        raise CLIError(f"preset name '{name}' is a built-in preset; pass --name")
    events = read_log(args.logs, args.log_format, args.skip_bad_rows)

    def say(line: str) -> None:
        print(f"calibrate: {line}", file=sys.stderr, flush=True)

    cal = calibrate(events, base=args.base, users=args.users, groups=args.groups, rounds=args.rounds,
                    budget_s=args.budget, seed=args.seed, max_days=args.max_days, overrides=fixed, progress=say)
    out, md, js = write_calibration(cal, args.out, name, str(args.logs))
    print(report_markdown(cal, name, str(args.logs)))
    print(f"wrote {out} ({len(cal.overrides)} keys over '{cal.base}'), {md} and {js} in {cal.seconds:.1f} s")
    return 0
