"""driftrec compare --backend ray: the same folder, resume and numbers as the local backend.

The Ray tests run on one local cluster of 2 CPUs, started for this module by the backend's own
:func:`driftrec.experiments.compare_ray.connect` (the runs then use that connection). Where Ray is
not installed they skip, saying how to install it; under CI (``CI=true``, which ``.ci/run`` sets)
they fail instead, so CI never passes without them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from driftrec.experiments import bench_backends, compare_ray
from driftrec.experiments.cli import main
from driftrec.experiments.compare import LOGS, TEACHER, WorldRun, load_config

# two tiny worlds; every kind of step: the logs, the warm agents' teacher, a supervised model and the
# -retrain variant deploying it, an RL agent warm-started from it, and the cheap references
GRID = ["--presets", "stationary,default", "--set", "policies=random,popularity,mlp,mlp-retrain,ppo-warm",
        "--set", "sim={horizon_days: 3.0, n_items: 30, n_categories: 3}", "--set", "log_users=60",
        "--set", "eval_users=40", "--set", "trace_users=0", "--set", "rl_timesteps=256", "--set", "rl_users=8",
        "--set", "rl_eval_users=8", "--set", "rl_evaluations=1", "--set", "warm_start_steps=20",
        "--set", "hyperparams.ppo.batch_size=32",
        "--set", "supervised={epochs: 1, hidden: 16, embedding_dim: 8}", "--quiet"]
WALL = ["eval_wall_s", "train_wall_s"]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def numbers(folder: Path) -> pd.DataFrame:
    """results.csv but the wall times."""
    return pd.read_csv(folder / "results.csv").drop(columns=WALL)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray cluster of 2 CPUs for the module."""
    try:
        import ray  # noqa: F401
    except ImportError:
        reason = 'Ray is not installed: pip install -e ".[test,ray]"'
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI=true and {reason}", pytrace=False)
        pytest.skip(reason)
    with compare_ray.connect(cpus=2):
        yield


@pytest.fixture(scope="module")
def serial(cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid run by the local backend, in this process."""
    out = tmp_path_factory.mktemp("serial") / "run"
    assert main(["compare", "--out", str(out), *GRID]) == 0
    return out


# ------------------------------------------------------------------------------------- without Ray
def test_a_world_plans_its_steps_so_no_two_write_one_folder(tmp_path: Path) -> None:
    cfg = load_config(profile="smoke", overrides={"policies": "random,ppo,mlp-retrain,gru,gru-retrain,dqn-warm,mlp"})
    world = WorldRun(tmp_path, cfg, "default", 0, print)
    assert world.plan() == {LOGS: [], TEACHER: [LOGS], "random": [], "ppo": [], "mlp-retrain": [LOGS, TEACHER, "mlp"],
                            "gru": [LOGS], "gru-retrain": [LOGS, "gru"], "dqn-warm": [LOGS, TEACHER],
                            "mlp": [LOGS, TEACHER]}
    world.logs_path.parent.mkdir(parents=True)
    world.logs_path.write_bytes(b"")  # simulated already: no step waits for it
    cfg = load_config(profile="smoke", overrides={"policies": "mlp-retrain,popularity"})
    assert WorldRun(tmp_path, cfg, "default", 0, print).plan() == {"mlp-retrain": [], "popularity": []}


def test_without_ray_the_ray_backend_is_one_line_saying_how_to_install_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code, _, err = run(capsys, "--out", str(tmp_path / "run"), "--backend", "ray", *GRID)
    assert code == 2 and err.count("\n") == 1 and 'pip install -e ".[ray]"' in err


def test_the_new_flags_are_in_the_help_and_bad_values_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "--backend {local,ray}" in capsys.readouterr().out
    code, out, _ = run(capsys, "--address", "head.example:6379", "--show-config")  # an address: the ray backend
    assert code == 0 and yaml.safe_load(out)["config"]["backend"] == "ray"
    code, _, err = run(capsys, "--address", "head.example:6379", "--backend", "local", "--show-config")
    assert code == 2 and "use backend ray, or drop the address" in err and err.count("\n") == 1
    code, _, err = run(capsys, "--backend", "ray", "--address", "no port", "--show-config")
    assert code == 2 and "address must be HOST:PORT" in err and err.count("\n") == 1
    code, _, err = run(capsys, "--backend", "ray", "--set", "cell_cpus=0", "--show-config")
    assert code == 2 and "cell_cpus" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------- on Ray
@pytest.mark.slow
def test_ray_gives_the_local_backends_numbers(serial: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ray"
    code, _, err = run(capsys, "--out", str(out), "--backend", "ray", *GRID)
    assert code == 0, err
    assert len(numbers(serial)) == 10
    pd.testing.assert_frame_equal(numbers(out), numbers(serial))
    for name in ("summary.md", "users.parquet", "daily.parquet", "curves.csv", "figures/reward_bars.png"):
        assert (out / name).is_file(), name
    pd.testing.assert_frame_equal(pd.read_parquet(out / "users.parquet"), pd.read_parquet(serial / "users.parquet"))
    assert not list(out.rglob("*.partial")) and not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_a_failed_cell_stops_the_run_and_the_other_backend_finishes_it(
        serial: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run that fails mid-way under Ray resumes under the local backend, and one cut short under
    the local backend resumes under Ray: both end with the serial numbers."""
    out = tmp_path / "run"
    assert main(["compare", "--out", str(out), *GRID, "--presets", "default", "--set", "policies=random"]) == 0
    blocked = out / "cells/default/seed0/ppo-warm"
    blocked.write_text("a file where the cell's folder goes")  # the cell fails when it writes its model
    code = main(["compare", "--out", str(out), "--backend", "ray", *GRID[:-1]])  # not --quiet: the progress lines
    err = capsys.readouterr().err
    failures = [line for line in err.splitlines() if "FAILED" in line]
    assert code == 2 and len(failures) == 1 and "default seed 0: ppo-warm FAILED: " in failures[0], err
    assert err.rstrip().splitlines()[-1].startswith("driftrec: error: 1 step(s) failed (default seed 0: ppo-warm)")
    assert (out / "cells/stationary/seed0/random/result.json").is_file()  # the finished cells stay
    assert len(pd.read_csv(out / "results.csv")) == 1  # the first run's: not rebuilt from a partial grid
    blocked.unlink()
    code, _, err = run(capsys, "--out", str(out), *GRID)
    assert code == 0, err
    pd.testing.assert_frame_equal(numbers(out), numbers(serial))

    for cell in ("default/seed0/mlp", "default/seed0/ppo-warm", "stationary/seed0/popularity"):
        shutil.rmtree(out / "cells" / cell)  # as if the local run had stopped before them
    (out / "cells/default/seed0/logs.parquet").unlink()
    code, _, err = run(capsys, "--out", str(out), "--backend", "ray", *GRID)
    assert code == 0, err
    pd.testing.assert_frame_equal(numbers(out), numbers(serial))


@pytest.mark.slow
def test_an_unreachable_cluster_is_one_line(cluster: None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--out", str(tmp_path / "run"), "--backend", "ray", "--address", "127.0.0.1:9",
                       *GRID)
    assert code == 2 and "cannot reach the Ray cluster at '127.0.0.1:9'" in err and err.count("\n") == 1


def test_the_backends_benchmark_refuses_a_folder_that_would_resume(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "local").mkdir()
    with pytest.raises(SystemExit) as info:
        bench_backends.main(["--keep", str(tmp_path)])
    assert info.value.code == 2 and "would resume" in capsys.readouterr().err


@pytest.mark.slow
def test_a_task_imports_what_the_driver_imports_from_its_folder(cluster: None, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy plugin (``module.path:factory``) beside the config imports in a task as in the driver."""
    import ray

    (tmp_path / "my_policies").mkdir()
    (tmp_path / "my_policies" / "__init__.py").write_text("")
    (tmp_path / "my_policies" / "shop.py").write_text("NAME = 'mine'\n")
    monkeypatch.chdir(tmp_path)
    task = ray.remote(compare_ray.in_driver_context)
    found = ray.get(task.remote(str(tmp_path), compare_ray.driver_path(), eval,
                                "(__import__('my_policies.shop').shop.NAME, __import__('os').getcwd())"))
    assert found == ("mine", str(tmp_path))
