"""Volumes a shop would recognise: the issue's bounds on what even the best myopic policy draws from
a user, and the volume statistics themselves on a hand-made log."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftrec.experiments.volumes import REFERENCE, main, measure, volume_stats


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["stationary", "migration", "default"])
def test_even_oracle_greedy_draws_a_finite_month_from_a_user(preset: str) -> None:
    """Under oracle-greedy (the best expected immediate reward, every request) 200 users of 30 days
    average at most 20 purchases and 1,500 requests each: a delighted user still has a finite day."""
    stats = measure(preset, "oracle-greedy", 200, 30.0)
    assert stats["buys_per_30d"] <= 20.0, stats
    assert stats["requests_per_30d"] <= 1500.0, stats
    assert stats["buys_per_30d"] > 0.5 and stats["requests_per_30d"] > 20  # the bounds are not met by idleness


@pytest.mark.slow
def test_most_purchases_are_of_new_items() -> None:
    """Under oracle-greedy on `default` (300 users, 10 days) at most 30% of purchases repeat an item
    the same user bought before: satiety moves the best policy on to other items."""
    stats = measure("default", "oracle-greedy", 300, 10.0)
    assert stats["repeat_buy_share"] <= 0.30, stats
    assert stats["buys_per_30d"] * 300 * 10 / 30 > 100  # enough purchases for the share to mean something


def _event(user: int, session: int, minute: float, behaviour: str, item: int = 0, position: int = 0,
           reward: float = 0.0) -> dict:
    when = pd.Timestamp("2026-01-01") + pd.Timedelta(minutes=minute)
    return {"user_id": user, "session_id": session, "timestamp": when, "item_id": item,
            "position": position if behaviour == "impression" else -1, "behaviour": behaviour, "reward": reward}


def test_volume_stats_of_a_hand_made_log() -> None:
    """Two users over 7 days: user 0 has two sessions (3 and 1 requests) two days apart and buys
    item 5 twice; user 1 one session of 2 requests with a click."""
    day = 24 * 60
    rows = [
        _event(0, 0, 0, "impression", 5), _event(0, 0, 0, "click", 5, reward=1), _event(0, 0, 0, "cart", 5),
        _event(0, 0, 0, "purchase", 5, reward=5), _event(0, 0, 1, "impression", 6), _event(0, 0, 2, "impression", 7),
        _event(0, 1, 2 + 2 * day, "impression", 5), _event(0, 1, 2 + 2 * day, "click", 5, reward=1),
        _event(0, 1, 2 + 2 * day, "cart", 5), _event(0, 1, 2 + 2 * day, "purchase", 5, reward=5),
        _event(1, 0, 10, "impression", 1), _event(1, 0, 10, "search", -1), _event(1, 0, 11, "impression", 2),
        _event(1, 0, 11, "click", 2, reward=1),
    ]
    stats = volume_stats(pd.DataFrame(rows), n_users=2, days=7.0)
    assert stats["requests"] == 6
    assert stats["sessions_per_week"] == pytest.approx(3 / 2)
    assert stats["requests_per_session"] == pytest.approx(2.0)
    assert stats["gap_days"] == pytest.approx(2.0)
    assert stats["ctr"] == pytest.approx(3 / 6)
    assert stats["cart_per_click"] == pytest.approx(2 / 3) and stats["buy_per_cart"] == pytest.approx(1.0)
    assert stats["buys_per_30d"] == pytest.approx(2 / 2 * 30 / 7)
    assert stats["repeat_buy_share"] == pytest.approx(0.5) and stats["max_buys_of_one_item"] == 2
    assert stats["reward_per_user"] == pytest.approx(13 / 2)


def test_the_script_prints_the_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "volumes.json"
    assert main(["--presets", "stationary", "--policies", "random", "--users", "20", "--days", "5",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| stationary | random |" in printed and "| public logs |" in printed
    report = json.loads(out.read_text())
    assert report["rows"][0]["preset"] == "stationary" and report["rows"][0]["users"] == 20
    assert set(report["reference"]) == set(REFERENCE)
    assert np.isfinite(report["rows"][0]["requests_per_session"])
