"""Drift adaptation as the field does it: fine-tuning on recent logs and retraining while deployed.

Both start from trained weights (a warm start) and follow the same four rules, because a model
refit on a little recent data with the training learning rate overfits it and forgets what still
holds (measured here: fine-tuning on one day of a 1,200-user log hurt its held-out log-loss on 3 of
4 seeds, and `gru-finetune` / `mlp-retrain` earned less than `gru` / `mlp` in `driftrec compare`):

1. **A lower learning rate** than training: ``lr * finetune_lr_scale``.
2. **Replay** (rehearsal; Robins 1995, and the experience replay of continual learning): every fit
   mixes the recent examples with a seeded random sample of older ones, ``finetune_replay`` per
   recent example, so the model keeps what the older data still say (catastrophic forgetting,
   McCloskey and Cohen 1989).
3. **Early stopping and every choice on a recent validation slice**: the newest examples before
   the test data (``finetune_val_frac`` / ``retrain_val_frac`` of the window), held out of the fit,
   never the test data. With ``finetune_search`` the learning rate (``finetune_lr_scale`` x 1/3,
   1, 3) and the window (x 1/2, 1, 2 its length) are chosen there, one after the other (a
   deployed refit chooses between ``finetune_lr_scale`` x 1 and 3).
4. **A gate**: the result replaces the weights it started from only if it lowers the loss on that
   slice; otherwise the old weights stay (fine-tuning or a refit never makes the validation loss
   worse).

:func:`finetune` is the offline fine-tune of ``train_supervised(finetune_days=D)``: once chosen on
the validation slice, the model is fine-tuned again from the pretrained weights with the chosen
learning rate and epochs on the chosen window *including* the slice (the newest data are the most
valuable under drift), then recalibrated on it. :func:`gated_refit` is one refit of
:class:`driftrec.agents.supervised.retraining.RetrainingPolicy` while deployed.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from driftrec.agents.supervised.base import Batch, FitReport, SupervisedNetwork, fit, mean_loss
from driftrec.agents.supervised.config import SupervisedConfig
from driftrec.agents.supervised.data import Examples, chronological_split

SEARCH_LR = (1.0 / 3.0, 1.0, 3.0)
"""Fine-tuning learning rates searched, as multiples of ``finetune_lr_scale``."""
SEARCH_WINDOW = (0.5, 2.0)
"""Fine-tuning windows searched after the learning rate, as multiples of the recent window's length."""


@dataclasses.dataclass
class Trial:
    """One candidate fine-tune: its window, learning rate and what early stopping found."""

    window_days: float  # the fit's recent examples are those of [val_cut - window_days, val_cut)
    lr_scale: float  # learning rate = lr * lr_scale
    examples: int  # recent examples in the window
    replayed: int  # older examples mixed in
    val_loss: float  # best validation loss (nan: the window had no clicks, not tried)
    best_epoch: int


def has_clicks(ex: Examples) -> bool:
    """Whether ``ex`` holds a clicked impression (a fit needs one; so does a validation loss)."""
    return len(ex) > 0 and bool((ex.click > 0).any())


def replay_sample(pool: Examples, n: int, seed: int) -> Examples:
    """``n`` examples drawn uniformly without replacement from ``pool`` (all of it when smaller), seeded."""
    n = min(int(n), len(pool))
    if n <= 0:
        return pool.take(np.zeros(0, dtype=np.int64))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xAEA7]))
    return pool.take(np.sort(rng.choice(len(pool), size=n, replace=False)))


def with_replay(recent: Examples, older: Examples | None, ratio: float, seed: int) -> tuple[Examples, int]:
    """(``recent`` plus ``ratio`` older examples per recent one, how many were replayed)."""
    if older is None or ratio <= 0 or not len(older) or not len(recent):
        return recent, 0
    extra = replay_sample(older, round(ratio * len(recent)), seed)
    return Examples.concat([recent, extra]), len(extra)


def finetune(network: SupervisedNetwork, data: Examples, start_day: float, cfg: SupervisedConfig, seed: int,
             on_epoch: Callable[[int, float, float], Any] | None = None) -> dict[str, Any]:
    """Fine-tune ``network``, pretrained on the examples of ``data`` before ``start_day``, on its recent
    window ``[start_day, end]`` (in place; see the module doc). Returns a report: the validation
    slice, the pretrained model's loss on it, every trial, the chosen one (None: the pretrained
    weights stayed) and the final fit.

    ``data`` is every training example (the test examples excluded). The validation slice is the
    newest ``finetune_val_frac`` of the recent window; when it or the rest of the window has no
    click, the window is fitted whole at ``lr * finetune_lr_scale`` with replay and no choice.
    """
    recent_mask = data.time >= start_day
    recent = data.take(recent_mask)
    lr0 = cfg.lr * cfg.finetune_lr_scale
    _, val_mask, val_cut = chronological_split(recent.time, cfg.finetune_val_frac)
    val = recent.take(val_mask)
    report: dict[str, Any] = {"examples": len(recent), "from_day": float(recent.time.min()),
                              "to_day": float(recent.time.max()), "val_from_day": val_cut,
                              "val_examples": len(val), "trials": [], "chosen": None}
    if not has_clicks(val) or not has_clicks(recent.take(~val_mask)):  # a tiny window: fit it whole
        train, replayed = with_replay(recent, data.take(~recent_mask), cfg.finetune_replay, seed)
        fitted = fit(network, train, None, epochs=cfg.finetune_epochs, lr=lr0, patience=cfg.patience, seed=seed,
                     on_epoch=on_epoch)
        report.update(replayed=replayed, final=_fit_dict(fitted), lr_scale=cfg.finetune_lr_scale,
                      note="no clicked validation slice: the window was fitted whole, nothing chosen")
        return report

    start_state = copy.deepcopy(network.state_dict())
    held = Batch.from_examples(val)
    baseline = mean_loss(network, held)
    length = max(val_cut - start_day, 1e-9)

    def trial(window: float, scale: float) -> Trial:
        in_window = (data.time >= val_cut - window) & (data.time < val_cut)
        part = data.take(in_window)
        if not has_clicks(part):
            return Trial(window, scale, len(part), 0, math.nan, 0)
        train, replayed = with_replay(part, data.take(data.time < val_cut - window), cfg.finetune_replay, seed)
        network.load_state_dict(start_state)
        fitted = fit(network, train, val, epochs=cfg.finetune_epochs, lr=cfg.lr * scale, patience=cfg.patience,
                     seed=seed, on_epoch=on_epoch)
        return Trial(window, scale, len(part), replayed, fitted.best_val_loss, fitted.best_epoch)

    scales = [cfg.finetune_lr_scale * m for m in SEARCH_LR] if cfg.finetune_search else [cfg.finetune_lr_scale]
    trials = [trial(length, s) for s in scales]
    if cfg.finetune_search:
        best_scale = min(trials, key=_loss).lr_scale
        trials += [trial(length * m, best_scale) for m in SEARCH_WINDOW]
    report["trials"] = [dataclasses.asdict(t) for t in trials]
    report["pretrained_val_loss"] = baseline
    best = min(trials, key=_loss)
    network.load_state_dict(start_state)
    if not (best.val_loss < baseline):  # no fine-tune beat the pretrained weights on the newest data
        network.recalibrate(val)
        report.update(replayed=0, final=None, lr_scale=None)
        return report

    # the chosen fine-tune again from the pretrained weights, now with the validation slice (the
    # newest data) in its window, for the epochs early stopping chose
    report["chosen"] = dataclasses.asdict(best)
    in_window = data.time >= val_cut - best.window_days
    train, replayed = with_replay(data.take(in_window), data.take(~in_window), cfg.finetune_replay, seed)
    fitted = fit(network, train, None, epochs=max(best.best_epoch, 1), lr=cfg.lr * best.lr_scale,
                 patience=cfg.patience, seed=seed, on_epoch=on_epoch)
    network.recalibrate(val)
    report.update(replayed=replayed, final=_fit_dict(fitted), lr_scale=best.lr_scale,
                  window_from_day=float(data.time[in_window].min()))
    return report


def gated_refit(network: SupervisedNetwork, recent: Examples, older: Examples | None, cfg: SupervisedConfig, *,
                epochs: int, lr_scales: tuple[float, ...], seed: int) -> dict[str, Any]:
    """One refit while deployed (in place): warm-start from the current weights on ``recent`` (its
    newest ``retrain_val_frac`` held out) plus ``finetune_replay`` older examples per recent one
    drawn from ``older``, early-stopped on the held-out slice, once per learning rate ``lr *
    scale`` of ``lr_scales``; the best is kept only if its loss there is below the current
    weights'. Returns what happened (``accepted``, the losses before and after, the chosen scale,
    sizes) or, when the window or its slice has no click, ``{"accepted": False, "skipped": why}``."""
    _, val_mask, val_cut = chronological_split(recent.time, cfg.retrain_val_frac)
    val, train = recent.take(val_mask), recent.take(~val_mask)
    if not has_clicks(val) or not has_clicks(train):
        return {"accepted": False, "skipped": "no clicks in the window or its validation slice"}
    before = mean_loss(network, Batch.from_examples(val))
    start_state = copy.deepcopy(network.state_dict())
    train, replayed = with_replay(train, older, cfg.finetune_replay, seed)
    best_loss, best_state, best_scale, best_epoch = math.inf, None, None, 0
    for scale in lr_scales:
        network.load_state_dict(start_state)
        fitted = fit(network, train, val, epochs=epochs, lr=cfg.lr * scale, patience=cfg.patience, seed=seed)
        if fitted.best_val_loss < best_loss:
            best_loss, best_scale, best_epoch = fitted.best_val_loss, scale, fitted.best_epoch
            best_state = copy.deepcopy(network.state_dict())
    accepted = best_loss < before
    network.load_state_dict(best_state if accepted and best_state is not None else start_state)
    network.eval()
    return {"accepted": bool(accepted), "val_loss_before": before, "val_loss_after": best_loss,
            "lr_scale": best_scale, "examples": len(train) - replayed, "replayed": replayed,
            "val_examples": len(val), "val_from_day": val_cut, "best_epoch": best_epoch}


def refit_lr_scales(cfg: SupervisedConfig) -> tuple[float, ...]:
    """The learning rates (multiples of ``lr``) a deployed refit tries: ``finetune_lr_scale`` and,
    with ``finetune_search``, three times it (a refit's data are few; the slice decides)."""
    s = cfg.finetune_lr_scale
    return (s, 3.0 * s) if cfg.finetune_search else (s,)


def _loss(t: Trial) -> float:
    return t.val_loss if math.isfinite(t.val_loss) else math.inf


def _fit_dict(report: FitReport) -> dict[str, Any]:
    return {"epochs_run": report.epochs_run, "train_loss": report.train_loss, "seconds": report.seconds}
