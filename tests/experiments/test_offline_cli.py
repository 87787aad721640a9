"""``driftrec offline``: the results table, the run folder's artifacts, n/a AUCs on a shop log without
impressions, and one-line errors for user mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from driftrec.agents.supervised import load_network
from driftrec.experiments.cli import main

FAST = ["--set", "epochs=1", "--set", "hidden=16", "--set", "embedding_dim=8"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sim_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # a month of the default shop: at its volumes (about 2 clicks per user per month) that is what it
    # takes for about 100 users to have the 3 clicks the leave-last-out split holds out (over 50 asked)
    path = tmp_path_factory.mktemp("logs") / "sim.parquet"
    assert main(["simulate", "--users", "300", "--days", "30", "--policy", "random", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shop-like CSV: views, clicks and purchases of string ids, no impressions."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        t = np.datetime64("2025-05-01T08:00:00") + np.timedelta64(int(rng.integers(0, 86400 * 10)), "s")
        for _ in range(int(rng.integers(3, 9))):
            item = int(rng.integers(0, 30))
            t = t + np.timedelta64(int(rng.integers(30, 4000)), "s")
            rows.append((f"u{u}", f"sku-{item}", str(t), "view", 5.0 + item))
            if rng.random() < 0.6:
                rows.append((f"u{u}", f"sku-{item}", str(t + np.timedelta64(5, "s")), "click", 5.0 + item))
                if rng.random() < 0.3:
                    rows.append((f"u{u}", f"sku-{item}", str(t + np.timedelta64(60, "s")), "purchase", 5.0 + item))
    path = tmp_path_factory.mktemp("csv") / "shop.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "behaviour", "price"]).to_csv(path, index=False)
    return path


def test_offline_prints_the_table_and_writes_the_run_folder(sim_log: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["offline", "--logs", str(sim_log), "--model", "mlp,gru", "--out", str(out), *FAST]) == 0
    captured = capsys.readouterr()
    assert "popularity" in captured.out and "mlp" in captured.out and "gru" in captured.out
    assert "ShopSim" in captured.out  # a simulated log: the models act in the simulator
    assert "offline: training mlp" in captured.err and "training-only" in captured.err
    results = pd.read_csv(out / "results.csv")
    assert results["model"].tolist() == ["popularity", "mlp", "gru"]
    assert list(results.columns) == ["model", "hr@10", "ndcg@10", "mrr", "click_auc", "purchase_auc", "test_cases",
                                     "train_seconds"]
    assert results["click_auc"].between(0.0, 1.0).all() and (results["test_cases"] > 50).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["policy_ready"] is True and metrics["seen_items_excluded"] is False
    assert metrics["results"]["mlp"]["hr@10"] == pytest.approx(results.loc[1, "hr@10"])
    summary = (out / "summary.md").read_text()
    assert "| popularity |" in summary and "| gru |" in summary
    for kind in ("mlp", "gru"):
        assert load_network(out / kind / "model.pt").kind == kind
    assert not list(out.rglob("*.tmp"))


def test_offline_on_a_shop_csv_says_na_and_offline_only(shop_csv: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shop"
    assert main(["offline", "--logs", str(shop_csv), "--model", "mlp", "--out", str(out), *FAST]) == 0
    captured = capsys.readouterr()
    assert "n/a" in captured.out and "offline scoring only" in captured.out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["results"]["mlp"]["click_auc"] is None and metrics["results"]["popularity"]["click_auc"] is None
    assert metrics["target_rule"] == "clicks and purchases" and metrics["pseudo_negatives"] is True
    assert pd.read_csv(out / "results.csv")["click_auc"].isna().all()


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "svm"], "unknown model 'svm'"),
    (["--set", "epoch=3"], "did you mean 'epochs'"),
    (["--format", "missing.yaml"], "--format missing.yaml: no such file"),
    (["--preset", "nope"], "nope"),
])
def test_offline_mistakes_are_one_line_errors(args: list[str], message: str, sim_log: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["offline", "--logs", str(sim_log), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("driftrec: error:") and message in err and "\n" not in err


def test_offline_missing_log_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["offline", "--logs", str(tmp_path / "none.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"driftrec: error: --logs {tmp_path / 'none.csv'}: no such file"
    (tmp_path / "file").write_text("x")
    assert main(["offline", "--logs", str(tmp_path / "none.csv"), "--out", str(tmp_path / "file")]) == 2
    assert "it is a file" in capsys.readouterr().err
