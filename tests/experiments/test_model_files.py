"""A missing, truncated or foreign model file in a run folder is one line naming it, for every command
that loads one: ``driftrec evaluate`` (an RL run, a supervised run), ``driftrec train --warm-start``
and the loaders under them (:mod:`driftrec.agents.model_file`)."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from driftrec.agents.model_file import ModelFileError
from driftrec.agents.rl import load_agent
from driftrec.agents.supervised import load_network
from driftrec.experiments.cli import main

SIM = {"n_items": 20, "n_categories": 4, "horizon_days": 0.25}
TINY = ["--preset", "stationary", *(a for k, v in SIM.items() for a in ("--set", f"{k}={v}"))]
FAST = ["--set", "n_steps=32", "--set", "batch_size=128", "--users", "16", "--eval-users", "8"]


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PPO run on a tiny catalog, validated once (so it has a best_model.zip)."""
    out = tmp_path_factory.mktemp("runs") / "ppo"
    assert main(["train", "ppo", *TINY, *FAST, "--timesteps", "512", "--eval-freq", "512", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def supervised_run(tmp_path_factory: pytest.TempPathFactory, logged_mlp: Callable[..., Path]) -> Path:
    """A supervised mlp run folder (``model.pt``, ``config.yaml``, ``metrics.json``) on the same simulator."""
    folder = tmp_path_factory.mktemp("sup")
    logged_mlp(folder, "stationary", SIM, 100, 1)
    return folder / "mlp"


def spoil(path: Path, how: str) -> str:
    """Make ``path`` missing, truncated (its first half) or foreign; the words the error must say."""
    if how == "missing":
        path.unlink()
        return "no such file"
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        return "truncated"
    if how == "foreign zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "a zip of something else")
        return "not a driftrec"
    path.write_text("name,price\nshoe,30\n")  # foreign file: no zip at all
    return "not a driftrec"


def copy_run(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / run.name)
    return tmp_path / run.name


def assert_one_line_naming(capsys: pytest.CaptureFixture[str], code: int, path: Path, words: str) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("driftrec: error: ") and err.count("\n") == 1, err
    assert f"'{path}'" in err and words in err, err
    assert "Traceback" not in err


HOW = ["missing", "truncated", "foreign zip", "foreign file"]


@pytest.mark.parametrize("how", HOW)
def test_evaluate_an_rl_run_with_a_bad_model_zip(rl_run: Path, tmp_path: Path, how: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(rl_run, tmp_path)
    words = spoil(run / "model.zip", how)
    code = main(["evaluate", str(run), "--users", "4"])
    assert_one_line_naming(capsys, code, run / "model.zip", words if how != "foreign zip" else "not a driftrec ppo")


@pytest.mark.parametrize("how", HOW)
def test_evaluate_a_supervised_run_with_a_bad_model_pt(supervised_run: Path, tmp_path: Path, how: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(supervised_run, tmp_path)
    words = spoil(run / "model.pt", how)
    assert_one_line_naming(capsys, main(["evaluate", str(run), "--users", "4"]), run / "model.pt", words)


def test_evaluate_a_sound_supervised_run_says_it_takes_rl_runs(supervised_run: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", str(supervised_run), "--users", "4"])
    assert_one_line_naming(capsys, code, supervised_run / "model.pt", "is a supervised model, not an RL agent")


@pytest.mark.parametrize("how", HOW)
def test_warm_start_from_a_bad_model_pt(supervised_run: Path, tmp_path: Path, how: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = copy_run(supervised_run, tmp_path)
    words = spoil(run / "model.pt", how)
    if how == "missing":
        words = "warm start: no supervised model at"
    out = tmp_path / "warm"
    code = main(["train", "ppo", *TINY, *FAST, "--timesteps", "512", "--warm-start", str(run), "--out", str(out)])
    assert_one_line_naming(capsys, code, run / "model.pt", words)
    assert not (out / "model.zip").exists()


def test_loaders_raise_model_file_error(rl_run: Path, supervised_run: Path, tmp_path: Path) -> None:
    """The loaders under the commands (and under compare's resumed cells): best_model.zip, an SB3 zip
    whose members are not SB3's, a torch file that is not a driftrec checkpoint."""
    run = copy_run(rl_run, tmp_path)
    load_agent(run / "best_model.zip")  # sound
    spoil(run / "best_model.zip", "truncated")
    with pytest.raises(ModelFileError, match=f"model file '{run / 'best_model.zip'}': truncated"):
        load_agent(run / "best_model.zip")
    with zipfile.ZipFile(run / "model.zip", "w") as archive:
        archive.writestr("data", "not SB3's JSON")
    with pytest.raises(ModelFileError, match="not a driftrec ppo agent"):
        load_agent(run)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a driftrec supervised model"):
        load_network(tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not a driftrec supervised model"):  # an SB3 zip is no checkpoint
        load_network(rl_run / "model.zip")
    (tmp_path / "empty.pt").touch()
    with pytest.raises(ModelFileError, match="truncated"):
        load_network(tmp_path / "empty.pt")
    assert load_network(supervised_run / "model.pt").kind == "mlp"


@pytest.mark.parametrize("how", ["truncated", "foreign file"])
def test_compare_resuming_a_cell_with_a_bad_model_pt(tmp_path: Path, how: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A finished training whose cell was not yet evaluated is loaded back on resume: a bad model file is one line."""
    out = tmp_path / "run"
    args = ["compare", "--out", str(out), "--set", "policies=mlp", "--set", "log_users=60", "--set", "eval_users=20",
            "--set", "sim={horizon_days: 3.0, n_items: 30, n_categories: 3}", "--set", "trace_users=0", "--quiet"]
    assert main(args) == 0
    cell = out / "cells/default/seed0/mlp"
    (cell / "result.json").unlink()  # as if the run stopped between training and evaluating
    words = spoil(cell / "model/model.pt", how)
    assert_one_line_naming(capsys, main(args), cell / "model/model.pt", words)
