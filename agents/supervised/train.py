"""``train_supervised``: the one objective behind ``driftrec train mlp|gru|transformer``, tuning and tests.

Reads an event log, rebuilds the features (:mod:`driftrec.agents.supervised.data`), splits the
examples chronologically, trains with early stopping, evaluates on the held-out latest examples
and writes ``model.pt``, ``metrics.json`` and ``config.yaml`` into the output folder (with
``finetune_days``, also ``pretrained.pt``: the model before fine-tuning).

Splits (all by time, never at random, so no example is scored with a model that saw its future):

- test: the latest ``holdout_frac`` of the examples (split at a timestamp; ties go to the test);
- the rest is training data; its latest ``val_frac`` is the validation set for early stopping
  (``metrics.json`` reports the final model's metrics on it as ``validation``: what a hyperparameter
  search selects on, never the test);
- with ``finetune_days=D`` the training data is split again at ``test cut - D``: the model is
  pretrained on the older part (with its own validation tail), then fine-tuned on the recent
  window as :func:`driftrec.agents.supervised.adapt.finetune` does it (a lower learning rate,
  replay of older examples, early stopping, learning rate and window chosen on the newest part
  of the window, kept only if it beats the pretrained weights there). ``metrics.json`` reports
  the held-out metrics before (``pretrain_test``) and after (``test``) fine-tuning, and every
  trial of the choice (``training.finetune``).

The log's users table (:func:`driftrec.envs.events.load_users`, written beside a simulated log)
gives the demographic features; without it they are zero, and the model is served with them
zeroed (``data.demographics`` in ``metrics.json``: the share of examples whose user's
demographics were known).

Next-item ranking (HR@k, NDCG@k) is chronological too: every clicked impression in the test
window is a target, ranked over the whole catalog from the features and history just before its
request. Popularity ranks items by their clicks in the training data (everything before the
test cut).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from driftrec.agents.supervised.adapt import finetune
from driftrec.agents.supervised.base import FitReport, SupervisedNetwork, evaluate, fit
from driftrec.agents.supervised.config import SupervisedConfig, split_overrides
from driftrec.agents.supervised.data import (
    Examples,
    FeatureSpec,
    LogDataError,
    build_examples,
    check_log,
    chronological_split,
    log_sim_config,
)
from driftrec.agents.supervised.registry import NETWORKS, make_network
from driftrec.envs.config import ConfigError, SimConfig
from driftrec.envs.events import EventLogError, load_events, load_users
from driftrec.envs.presets import preset_config

log = logging.getLogger(__name__)


def train_supervised(kind: str, logs: Path, out: Path, *, finetune_days: float | None = None, seed: int = 0,
                     sim_config: SimConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Train a supervised model of ``kind`` on the event log ``logs``; write ``out/model.pt``,
    ``out/metrics.json`` and ``out/config.yaml``; return the metrics (as in ``metrics.json``).

    ``overrides`` are :class:`SupervisedConfig` keys or :class:`driftrec.envs.config.SimConfig` keys of
    the simulator the log came from: its catalog, calendar and observation layout are the
    features, so they must match it. A log that stores its config (``driftrec.sim_config`` in
    its Parquet metadata, see :func:`driftrec.agents.supervised.data.log_sim_config`) is
    trusted, with the given simulator keys on top, unless ``preset`` is given; otherwise the
    config is ``preset`` (default 'default') plus the keys, e.g. ``horizon_days`` for
    ``driftrec simulate --days``. A log from another catalog is caught (``check_log``); other
    differences are not detectable from the log. ``sim_config``, when given, is that simulator
    already resolved (compare's world, a tuning study's): it is used as it is, and ``overrides``
    then hold only :class:`SupervisedConfig` keys. User mistakes (unknown kind or key, missing or
    unusable log, a fine-tune window with no data) raise :class:`ConfigError` with a one-line
    message.
    """
    if kind not in NETWORKS:
        raise ConfigError(f"unknown supervised model '{kind}'; choose one of: {', '.join(sorted(NETWORKS))}")
    train_keys, sim_keys = split_overrides(overrides)
    cfg = SupervisedConfig.from_dict(train_keys)
    if sim_config is not None and sim_keys:
        raise ConfigError(f"simulator keys ({', '.join(sim_keys)}) are set in the given simulator config, "
                          "not as training keys")
    sim_cfg = preset_config(cfg.preset, sim_keys) if sim_config is None else sim_config
    if finetune_days is not None and not (finetune_days > 0 and math.isfinite(finetune_days)):
        raise ConfigError(f"finetune_days must be a positive number of days, got {finetune_days!r}")
    logs, out = Path(logs), Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"cannot write to '{out}': it is a file, not a folder")

    start = time.perf_counter()
    try:
        events = load_events(logs)
        users = load_users(logs)
    except EventLogError as err:
        raise LogDataError(str(err)) from None
    name = f"events file {logs}"
    logged = log_sim_config(logs)
    from_log = sim_config is None and logged is not None and "preset" not in train_keys
    if from_log:  # the log knows its simulator: trust it
        try:
            sim_cfg = SimConfig.from_dict(sim_keys, base=SimConfig.from_dict(logged))
        except ConfigError as err:
            raise LogDataError(f"{name}: its stored simulator config is not valid here ({err})") from None
    if sim_cfg.model != "shop":
        raise ConfigError(f"supervised models need the ShopSim user model; the simulator config uses "
                          f"'{sim_cfg.model}'")
    if not (events["behaviour"] == "click").any():
        raise LogDataError(f"{name} has no click rows: there is nothing to learn click prediction from")
    spec = FeatureSpec.from_config(sim_cfg)
    check_log(events, spec, name)
    examples = build_examples(events, spec, users)
    if not (examples.click > 0).any():
        raise LogDataError(f"{name}: no click matches an impression (same request, item and position)")
    features_s = time.perf_counter() - start

    rest_mask, test_mask, test_cut = chronological_split(examples.time, cfg.holdout_frac)
    rest, test = examples.take(rest_mask), examples.take(test_mask)
    _require(rest, f"{name}: no training examples before the held-out cut (day {test_cut:g})")
    _require(test, f"{name}: no held-out examples")
    if finetune_days is not None:
        ft_cut = test_cut - finetune_days
        phases = [("pretrain", rest.take(rest.time < ft_cut)), ("finetune", rest.take(rest.time >= ft_cut))]
        _require(phases[0][1], f"finetune_days={finetune_days:g} leaves no clicked examples to pretrain on "
                               f"(before day {ft_cut:g})")
        _require(phases[1][1], f"finetune_days={finetune_days:g} leaves no clicked examples to fine-tune on "
                               f"(days {ft_cut:g} to {test_cut:g})")
    else:
        phases = [("train", rest)]

    network = make_network(kind, spec, cfg, seed)
    network.uses_demographics = examples.knows_demographics(spec)
    network.set_pos_weights(phases[0][1], cfg.click_pos_weight, cfg.purchase_pos_weight)
    known = examples.user[:, spec.user_slices["demographics"]].any(axis=1)
    result: dict[str, Any] = {
        "kind": kind, "seed": seed, "logs": str(logs), "preset": cfg.preset, "finetune_days": finetune_days,
        "sim_config_from": "log" if from_log else "preset",  # preset: the preset's keys, or the caller's config
        "data": {"events": int(len(events)), "users": int(events["user_id"].nunique()),
                 "examples": len(examples), "test": len(test), "test_from_day": test_cut,
                 "demographics": float(known.mean()) if len(known) else 0.0,
                 "click_rate": float(examples.click.mean()), "purchase_rate": float(examples.purchase.mean()),
                 "feature_seconds": features_s},
        "pos_weight": {"click": float(network.pos_weight[0]), "purchase": float(network.pos_weight[1])},
    }
    clicked_before_test = rest.item[rest.click > 0]
    training: dict[str, Any] = {}
    phase, data = phases[0]
    report, validation = _fit_phase(network, data, cfg, seed, phase)
    training[phase] = _report_dict(report, data, cfg)
    if finetune_days is not None:
        result["pretrain_test"] = evaluate(network, test, clicked_before_test)
        before = _flat_params(network)
        out.mkdir(parents=True, exist_ok=True)
        network.save(out / "pretrained.pt")  # the stale model the fine-tune starts from, for comparisons

        def on_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
            log.info("%s finetune epoch %d: train loss %.4f, val loss %.4f", kind, epoch, train_loss, val_loss)

        training["finetune"] = finetune(network, rest, test_cut - finetune_days, cfg, seed + 1, on_epoch)
        training["finetune"]["weight_change"] = float(torch.linalg.vector_norm(_flat_params(network) - before))
    result["training"] = training
    result["logit_offset"] = {"click": float(network.logit_offset[0]), "purchase": float(network.logit_offset[1])}
    result["test"] = evaluate(network, test, clicked_before_test)
    if validation is not None and finetune_days is None:  # a fine-tuned model has seen past its validation
        result["validation"] = evaluate(network, *validation)
    result["train_seconds"] = time.perf_counter() - start

    out.mkdir(parents=True, exist_ok=True)
    network.save(out / "model.pt")
    config = {"kind": kind, "seed": seed, "logs": str(logs), "finetune_days": finetune_days,
              "train": cfg.to_dict(), "sim": sim_cfg.to_dict()}
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = {"summary": summary(result, cfg.top_k), **result}
    result = _json_safe(result)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    log.info("%s: click AUC %.4f, HR@%d %.4f (popularity %.4f), %.1f s", kind, result["test"]["click"]["auc"] or 0,
             cfg.top_k, result["test"]["ranking"][f"hr@{cfg.top_k}"] or 0,
             result["test"]["popularity"][f"hr@{cfg.top_k}"] or 0, result["train_seconds"])
    return result


def summary(result: dict[str, Any], top_k: int = 10) -> dict[str, Any]:
    """The headline numbers of a result, flat (for the CLI's table): held-out click and purchase
    AUC and log-loss, click F1, HR@k and NDCG@k of the model and of popularity, examples, seconds."""
    out = headline(result["test"], top_k)
    if "pretrain_test" in result:
        out["pretrain_click_auc"] = result["pretrain_test"]["click"]["auc"]
        out["pretrain_click_logloss"] = result["pretrain_test"]["click"]["logloss"]
    out.update({"examples": result["data"]["examples"], "test_examples": result["data"]["test"],
                "train_seconds": result["train_seconds"]})
    return out


def headline(metrics: dict[str, Any], top_k: int = 10) -> dict[str, Any]:
    """The headline numbers of one :func:`~driftrec.agents.supervised.base.evaluate` result, flat: click
    and purchase AUC and log-loss, click F1, HR@k and NDCG@k of the model and of popularity."""
    return {"click_auc": metrics["click"]["auc"], "click_logloss": metrics["click"]["logloss"],
            "click_f1": metrics["click"]["f1"], "purchase_auc": metrics["purchase"]["auc"],
            "purchase_logloss": metrics["purchase"]["logloss"],
            f"hr@{top_k}": metrics["ranking"][f"hr@{top_k}"], f"ndcg@{top_k}": metrics["ranking"][f"ndcg@{top_k}"],
            f"popularity_hr@{top_k}": metrics["popularity"][f"hr@{top_k}"],
            f"popularity_ndcg@{top_k}": metrics["popularity"][f"ndcg@{top_k}"]}


def _fit_phase(network: SupervisedNetwork, data: Examples, cfg: SupervisedConfig, seed: int,
               phase: str) -> tuple[FitReport, tuple[Examples, np.ndarray] | None]:
    """Fit on ``data`` with early stopping on its latest ``val_frac``; returns the report and the
    validation examples with the items clicked in training before them (None without validation)."""
    train_mask, val_mask, _ = chronological_split(data.time, cfg.val_frac)
    train, val = data.take(train_mask), data.take(val_mask)
    if not (train.click > 0).any():  # a tiny log: train on everything, stop by epochs
        train, val = data, None

    def on_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
        log.info("%s %s epoch %d: train loss %.4f, val loss %.4f", network.kind, phase, epoch, train_loss, val_loss)

    report = fit(network, train, val, epochs=cfg.epochs, lr=cfg.lr, patience=cfg.patience, seed=seed,
                 on_epoch=on_epoch)
    if val is None:
        return report, None
    network.recalibrate(val)
    return report, (val, train.item[train.click > 0])


def _require(examples: Examples, message: str) -> None:
    if len(examples) == 0 or not (examples.click > 0).any():
        raise LogDataError(message)


def _report_dict(report: FitReport, data: Examples, cfg: SupervisedConfig) -> dict[str, Any]:
    return {"examples": len(data), "from_day": float(data.time.min()), "to_day": float(data.time.max()),
            "epochs_run": report.epochs_run, "best_epoch": report.best_epoch, "best_val_loss": report.best_val_loss,
            "train_loss": report.train_loss, "val_loss": report.val_loss, "seconds": report.seconds}


def _flat_params(network: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in network.parameters()])


def _json_safe(value: Any) -> Any:
    """NaN / inf -> None and numpy scalars -> Python, so metrics.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
