"""Volumes of simulated shop users, against the ranges public e-commerce logs show.

``python -m driftrec.experiments.volumes [--presets default,stationary] [--policies random,logging,oracle-greedy]
[--users 300] [--days 30] [--seed 0] [--out volumes.json]`` simulates the users of each preset
under each policy (the users of ``driftrec simulate --seed``: the same users under every
policy), prints one row per (preset, policy) and writes every number to JSON.

| column | what it is |
|---|---|
| sessions/wk | sessions with at least one request, per user per 7 days of horizon |
| req/session | recommendation requests per session |
| gap days | mean time from a session's last event to the same user's next session |
| CTR | clicks / impressions (a slate of K shows K impressions) |
| cart/click, buy/cart | the funnel |
| buys/30d | purchases per user per 30 days of horizon |
| repeat buys | share of purchases of an item the same user had bought before |
| req/30d | requests per user per 30 days of horizon |
| churned | share of users whose life ended by churn before the horizon |
| reward | reward per user over the horizon |

The reference ranges (:data:`REFERENCE`) come from public logs; each row names its sources.
The numbers are measured, never asserted here; ``tests/envs/test_volumes.py`` checks the
issue's bounds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from driftrec.agents.registry import make_policy
from driftrec.envs.presets import preset_config
from driftrec.envs.rollout import simulate_log, train_seeds
from driftrec.envs.user_model import build_user_model

REFERENCE: dict[str, tuple[float, float, str]] = {
    "sessions_per_week": (0.5, 3.0, "OTTO (4 weeks, 12.9M users): 15.1 clicks/user at 3.6-5.4 clicks/session; "
                          "Taobao UserBehavior: 10 page views/user/day for active users"),
    "requests_per_session": (3.0, 12.0, "YOOCHOOSE 3.6 clicks/session, Diginetica 4.0 views/session, "
                             "RetailRocket 5.4; a recommendation feed shows more impressions than clicks"),
    "gap_days": (2.0, 7.0, "the inverse of sessions per week"),
    "ctr": (0.02, 0.06, "Ali-CCP (Ma et al., SIGIR 2018): 4.05% (public sample), 3.62% (production); "
            "Taobao display ads ~5%"),
    "cart_per_click": (0.03, 0.09, "RetailRocket 2.6%, Taobao UserBehavior 6.2%, OTTO 8.7%"),
    "buy_per_cart": (0.30, 0.36, "OTTO 30%, RetailRocket 32%, Taobao UserBehavior 36%"),
    "buys_per_30d": (0.3, 7.0, "OTTO 0.42, Tmall 0.8 (outside Double 11), Taobao UserBehavior 6.8 for "
                     "users active that week"),
    "repeat_buy_share": (0.05, 0.15, "general merchandise (weak evidence; Tmall repeat buyers of a merchant 6%)"),
}
"""Statistic -> (low, high, sources) of what public e-commerce logs show (see the README)."""

COLUMNS = (("sessions_per_week", "sessions/wk", "{:.2f}"), ("requests_per_session", "req/session", "{:.1f}"),
           ("gap_days", "gap days", "{:.2f}"), ("ctr", "CTR", "{:.3f}"), ("cart_per_click", "cart/click", "{:.3f}"),
           ("buy_per_cart", "buy/cart", "{:.3f}"), ("buys_per_30d", "buys/30d", "{:.2f}"),
           ("repeat_buy_share", "repeat buys", "{:.2f}"), ("requests_per_30d", "req/30d", "{:.0f}"),
           ("churned", "churned", "{:.2f}"),
           ("reward_per_user", "reward", "{:.1f}"))


def volume_stats(events: pd.DataFrame, n_users: int, days: float) -> dict[str, float]:
    """The volumes of an event log of ``n_users`` users living ``days`` days (see the module doc)."""
    beh = events["behaviour"].to_numpy()
    imp = events[beh == "impression"]
    requests = imp[imp["position"] == 0]
    n_req, n_imp = len(requests), len(imp)
    clicks, carts = int((beh == "click").sum()), int((beh == "cart").sum())
    buys = events[beh == "purchase"]
    sessions = requests.groupby(["user_id", "session_id"])["timestamp"].agg(["min", "max"]).reset_index()
    gaps = []
    for _, group in sessions.groupby("user_id"):
        if len(group) > 1:
            start, end = group["min"].to_numpy()[1:], group["max"].to_numpy()[:-1]
            gaps.append((start - end) / np.timedelta64(1, "D"))
    gap = np.concatenate(gaps) if gaps else np.array([])
    repeats = buys.duplicated(["user_id", "item_id"]).sum()
    per_30 = 30.0 / days
    return {
        "users": n_users, "requests": n_req, "sessions_per_week": len(sessions) / n_users * 7.0 / days,
        "requests_per_session": n_req / max(len(sessions), 1),
        "gap_days": float(gap.mean()) if gap.size else math.nan,
        "ctr": clicks / max(n_imp, 1), "cart_per_click": carts / max(clicks, 1),
        "buy_per_cart": len(buys) / max(carts, 1), "buys_per_30d": len(buys) / n_users * per_30,
        "repeat_buy_share": repeats / len(buys) if len(buys) else math.nan,
        "max_buys_of_one_item": int(buys.groupby(["user_id", "item_id"]).size().max()) if len(buys) else 0,
        "requests_per_30d": n_req / n_users * per_30, "reward_per_user": float(events["reward"].sum()) / n_users,
    }


def measure(preset: str, policy: str, users: int, days: float, seed: int = 0,
            overrides: dict[str, Any] | None = None) -> dict[str, float]:
    """Simulate ``users`` users of ``preset`` (their lives ``days`` long) under ``policy``; their volumes."""
    user_model = build_user_model(preset_config(preset, {**(overrides or {}), "horizon_days": days}))
    start = time.perf_counter()
    log = simulate_log(user_model, make_policy(policy, user_model, users, seed), train_seeds(seed, users))
    stats = volume_stats(log.events.to_pandas(), users, days)
    stats["churned"] = float(log.stats.churned.mean())
    stats["seconds"] = time.perf_counter() - start
    return stats


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of measured rows, then the reference ranges."""
    head = "| preset | policy | " + " | ".join(label for _, label, _ in COLUMNS) + " |"
    lines = [head, "|---|---|" + "---:|" * len(COLUMNS)]
    for r in rows:
        cells = [fmt.format(r[key]) for key, _, fmt in COLUMNS]
        lines.append(f"| {r['preset']} | {r['policy']} | " + " | ".join(cells) + " |")
    ref = ["{:g}-{:g}".format(*REFERENCE[key][:2]) if key in REFERENCE else "" for key, _, _ in COLUMNS]
    lines.append("| public logs | | " + " | ".join(ref) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftrec.experiments.volumes", description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="stationary,default", help="comma-separated presets")
    parser.add_argument("--policies", default="random,logging,oracle-greedy", help="comma-separated policies")
    parser.add_argument("--users", type=int, default=300, help="users per (preset, policy)")
    parser.add_argument("--days", type=float, default=30.0, help="length of each life in days")
    parser.add_argument("--seed", type=int, default=0, help="seed of the users (driftrec simulate --seed)")
    parser.add_argument("--out", default="volumes.json", help="JSON report ('' for none)")
    args = parser.parse_args(argv)
    rows = []
    for preset in args.presets.split(","):
        for policy in args.policies.split(","):
            rows.append({"preset": preset, "policy": policy,
                         **measure(preset, policy, args.users, args.days, args.seed)})
            print(f"{preset} / {policy}: {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps({"users": args.users, "days": args.days, "seed": args.seed,
                                              "rows": rows, "reference": REFERENCE}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
