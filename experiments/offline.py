"""``driftrec offline``: evaluate recommenders offline on a log (issue 6, "Offline evaluation").

One entry point, :func:`run_offline`, serves the CLI and the tests: load the log
(:func:`driftrec.ingest.load.load_log`), split it leave-last-out per user, fit each model, score the
held-out cases and write the run folder:

- ``results.csv``: one row per model (popularity first): HR@k, NDCG@k, MRR, click and purchase AUC
  (empty where the log has no such labels), test cases, train seconds;
- ``metrics.json``: everything (data statistics, the split, each model's metrics, notes);
- ``<model>/model.pt``: each trained model (:func:`driftrec.agents.supervised.load_network` reads it);
- ``summary.md``: the table and what the models can be used for.

Every file is written atomically. The protocol (targets, split, negatives, features, metrics) is
documented in :mod:`driftrec.agents.supervised.offline`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from driftrec.envs.config import REQUIRED, Config, knob, parse_sets
from driftrec.envs.events import EventLogError, load_users
from driftrec.envs.presets import preset_config
from driftrec.experiments.artifacts import atomic_path, plain, write_text
from driftrec.experiments.cliutil import CLIError, int_arg, positive_int
from driftrec.experiments.ingest import add_log_arguments, log_format
from driftrec.ingest.load import load_log


@dataclasses.dataclass(frozen=True)
class OfflineConfig(Config):
    """What ``driftrec offline`` runs."""

    label = "offline"

    logs: Path = knob(REQUIRED, "CSV or Parquet log (raw, or a driftrec event log)")
    models: tuple[str, ...] = knob(("popularity", "mlp", "gru", "transformer"),
                                   "models evaluated (popularity always is)")
    out: Path | None = knob(None, "run folder for results.csv, metrics.json, <model>/model.pt, summary.md")
    format: Path | None = knob(None, "LogFormat YAML for raw logs (column names, behaviour mapping)")
    skip_bad_rows: bool = knob(False, "skip (and count) bad rows instead of stopping at the first")
    preset: str | None = knob(None, "the preset whose catalog the log's items are (features for the simulator)")
    seed: int = knob(0, "seed of model weights, batches and sampled negatives", 0)
    overrides: Mapping[str, Any] = knob({}, "SupervisedConfig keys")
    negatives: int = knob(4, "sampled negatives per target when the log has no impressions", 1)
    min_targets: int = knob(3, "users with fewer targets are training-only", 2)
    torch_threads: int = knob(1, "torch's CPU threads (0: torch's default); 1 is robust on shared cores, as in "
                                 "compare", 0, 1024)


@dataclasses.dataclass
class OfflineResult:
    """What :func:`run_offline` measured."""

    rows: list[dict[str, Any]]  # one per model, the columns of results.csv
    metrics: dict[str, Any]  # the content of metrics.json
    notes: list[str]  # what the models can be used for, and why


def run_offline(config: OfflineConfig, progress: Callable[[str], Any] | None = None) -> OfflineResult:
    """Load, split, train and evaluate every model of ``config``; write the run folder when ``out`` is set.

    User mistakes (missing file, bad format YAML, unknown model or key, unusable log) raise
    :class:`driftrec.envs.config.ConfigError` or :class:`CLIError` with a one-line message.
    """
    from driftrec.agents.supervised import SupervisedConfig  # torch, here and below: not for --help
    from driftrec.agents.supervised.offline import (
        evaluate_popularity,
        parse_models,
        prepare_offline,
        train_offline_network,
    )

    config.validate()
    say = progress or (lambda _: None)
    models = parse_models(list(config.models))
    train_cfg = SupervisedConfig.from_dict(dict(config.overrides))  # unknown keys: ConfigError naming them
    sim_override = preset_config(config.preset) if config.preset is not None else None
    if config.out is not None and config.out.exists() and not config.out.is_dir():
        raise CLIError(f"cannot write to '{config.out}': it is a file, not a folder")
    if not config.logs.is_file():
        raise CLIError(f"--logs {config.logs}: no such file")
    fmt = None
    if config.format is not None:
        if not config.format.is_file():
            raise CLIError(f"--format {config.format}: no such file")
        fmt = log_format(config.format, [])

    start = time.perf_counter()
    say(f"loading {config.logs}")
    try:
        loaded = load_log(config.logs, fmt, skip_bad_rows=config.skip_bad_rows)
    except ValueError as err:  # the loader's one-line errors (LogLoadError is a ConfigError, a ValueError)
        raise CLIError(str(err)) from None
    sim_cfg = sim_override if sim_override is not None else loaded.sim_config
    try:
        users = load_users(config.logs)  # a simulated log's users table (demographics), if it has one
    except EventLogError as err:
        raise CLIError(str(err)) from None
    data = prepare_offline(loaded.events, items=loaded.items, sim_config=sim_cfg,
                           require_sim=sim_override is not None, negatives=config.negatives,
                           min_targets=config.min_targets, seed=config.seed, name=f"log {config.logs}",
                           users=users)
    st = data.stats
    say(f"{st['events']} events, {st['users']} users, {st['items']} items; targets: {data.target_rule} "
        f"({st['targets']}); {st['test_users']} users held out, {st['training_only_users']} training-only "
        f"(fewer than {st['min_targets']} targets)")
    if data.pseudo and "event_windows" not in config.overrides and any(m in ("gru", "transformer") for m in models):
        # each pseudo-request's window is the previous one's plus one event: every window would make
        # each event a next-event target history_len - 1 times an epoch
        train_cfg = dataclasses.replace(train_cfg, event_windows=0.0)
    if config.torch_threads and len(models) > 1:
        import torch

        torch.set_num_threads(config.torch_threads)
    k = train_cfg.top_k
    per_model: dict[str, dict[str, Any]] = {"popularity": evaluate_popularity(data, k)}
    per_model["popularity"]["train_seconds"] = 0.0
    trained = {}
    for kind in models[1:]:
        say(f"training {kind} on {len(data.train)} examples ({len(data.val)} for early stopping)")
        network, out = train_offline_network(kind, data, train_cfg, config.seed, say)
        per_model[kind] = out
        trained[kind] = network
        say(f"{kind}: HR@{k} {_fmt(out[f'hr@{k}'])}, NDCG@{k} {_fmt(out[f'ndcg@{k}'])}, MRR {_fmt(out['mrr'])}, "
            f"{out['train_seconds']:.1f} s")

    rows = [{"model": kind, f"hr@{k}": m[f"hr@{k}"], f"ndcg@{k}": m[f"ndcg@{k}"], "mrr": m["mrr"],
             "click_auc": m["click_auc"], "purchase_auc": m["purchase_auc"], "test_cases": m["n"],
             "train_seconds": m["train_seconds"]} for kind, m in per_model.items()]
    notes = _notes(data, config, list(trained))
    metrics = plain({
        "logs": str(config.logs), "seed": config.seed, "models": models, "preset": config.preset,
        "target_rule": data.target_rule, "pseudo_negatives": data.pseudo,
        "seen_items_excluded": False, "policy_ready": data.policy_ready, "why_offline_only": data.why_offline_only,
        "labels": {"click": data.has_click_labels, "purchase": data.has_purchase_labels},
        "data": st, "load": dataclasses.asdict(loaded.report),
        "train_config": train_cfg.to_dict(), "results": per_model, "notes": notes,
        "seconds": time.perf_counter() - start,
    }, finite=True)
    if config.out is not None:
        _write(config.out, rows, metrics, trained, notes, k)
        say(f"wrote {config.out}")
    return OfflineResult(rows=rows, metrics=metrics, notes=notes)


def _notes(data: Any, config: OfflineConfig, kinds: list[str]) -> list[str]:
    notes = [f"targets: {data.target_rule}; each user's last is the test case, ranked against all "
             f"{data.spec.n_items} items (already-seen items are not excluded)"]
    if data.pseudo:
        notes.append(f"the log has no impressions: models trained on each target with {config.negatives} uniformly "
                     "sampled negatives; click AUC is n/a")
        if "event_windows" not in config.overrides and {"gru", "transformer"} & set(kinds):
            notes.append("sequence models: a share of the history windows trains the next-event loss, so that each "
                         "event is a target about once an epoch (event_windows=0; --set event_windows=1 for all)")
    elif not data.has_purchase_labels:
        notes.append("the log has no purchases: purchase AUC is n/a")
    if kinds and data.policy_ready:
        notes.append("the models use the simulator's features: load_network(<out>/<model>/model.pt).as_policy(sim) "
                     "serves them in ShopSim (gru and transformer need obs_mode=history)")
    elif kinds:
        notes.append(f"the models are for offline scoring only: {data.why_offline_only}")
    return notes


def _write(out: Path, rows: list[dict[str, Any]], metrics: dict[str, Any], trained: Mapping[str, Any],
           notes: list[str], k: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for kind, network in trained.items():
        with atomic_path(out / kind / "model.pt") as tmp:
            network.save(tmp)
    with atomic_path(out / "results.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    lines = [f"# Offline evaluation of {metrics['logs']}", "",
             f"| model | HR@{k} | NDCG@{k} | MRR | click AUC | purchase AUC | test cases | train s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {_fmt(r[f'hr@{k}'])} | {_fmt(r[f'ndcg@{k}'])} | {_fmt(r['mrr'])} | "
                     f"{_fmt(r['click_auc'])} | {_fmt(r['purchase_auc'])} | {r['test_cases']} | "
                     f"{r['train_seconds']:.1f} |")
    lines += ["", *(f"- {n}" for n in notes), ""]
    write_text(out / "summary.md", "\n".join(lines))


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------------- CLI
def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``driftrec offline``."""
    p = sub.add_parser(
        "offline", help="evaluate recommenders offline on a log (leave-last-out, HR@10, NDCG@10, MRR, AUC)",
        description="Split a log leave-last-out per user (each user's last click or purchase is the test case, the "
                    "one before it validation), train the models on the rest and rank each held-out item against "
                    "the whole catalog. Prints the results table; with --out writes results.csv, metrics.json, "
                    "summary.md and <model>/model.pt.")
    add_log_arguments(p, "log to evaluate on: CSV or Parquet, raw or a driftrec event log")
    p.add_argument("--model", default="popularity,mlp,gru,transformer", metavar="NAMES",
                   help="comma list of popularity, mlp, gru, transformer (default: all; popularity always runs)")
    p.add_argument("--out", type=Path, default=None, help="run folder, e.g. runs/NAME (default: print only)")
    p.add_argument("--preset", default=None,
                   help="the log's items are this preset's catalog: train with its features so the models act "
                        "in the simulator (a simulated log's stored config is used without it)")
    p.add_argument("--seed", type=int_arg(0, 2**32, "an integer seed"), default=0,
                   help="seed of weights, batches and sampled negatives (default: 0)")
    p.add_argument("--negatives", type=positive_int, default=4,
                   help="sampled negatives per target for logs without impressions (default: 4)")
    p.add_argument("--min-targets", type=int_arg(2, what="an integer"), default=3,
                   help="users with fewer targets are training-only (default: 3)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training key of SupervisedConfig (e.g. epochs=5); repeatable")
    p.add_argument("--torch-threads", type=int_arg(0, 1025, "a thread count"), default=1,
                   help="torch CPU threads (default: 1, robust when cores are shared; 0: torch's default)")
    p.set_defaults(func=run_offline_cli)


def run_offline_cli(args: argparse.Namespace) -> int:
    """``driftrec offline``: run, print the table and the notes."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    config = OfflineConfig(logs=args.logs, models=tuple(args.model.split(",")), out=args.out, format=args.log_format,
                           skip_bad_rows=args.skip_bad_rows, preset=args.preset, seed=args.seed,
                           overrides=parse_sets(args.overrides), negatives=args.negatives,
                           min_targets=args.min_targets, torch_threads=args.torch_threads)
    result = run_offline(config, progress=lambda line: print(f"offline: {line}", file=sys.stderr, flush=True))
    table = Table(title=f"offline evaluation of {escape(str(args.logs))} (leave-last-out, full catalog)")
    columns = list(result.rows[0])
    for col in columns:
        table.add_column(col, justify="left" if col == "model" else "right", style="bold" if col == "model" else "")
    for row in result.rows:
        table.add_row(*(escape(_fmt(row[c])) if c != "train_seconds" else f"{row[c]:.1f}" for c in columns))
    console = Console(width=max(Console().width, 110))
    console.print(table)
    for note in result.notes:
        console.print(f"note: {escape(note)}")
    if args.out is not None:
        print(f"-> {args.out}")
    return 0
