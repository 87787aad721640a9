"""Shared test set-up: one BLAS thread and one torch thread.

The CI box has 2 cores: multi-threaded OpenBLAS makes the small matrix products of the simulator
tests 10-50x slower there, and SB3 / supervised training tests must not fight over the cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy is first imported by a test module

import pytest  # noqa: E402


def pytest_sessionstart(session: pytest.Session) -> None:
    """Pin torch to one thread."""
    try:
        import torch
    except ImportError:  # the simulator tests don't need torch
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def logged_mlp() -> Callable[[Path, str, dict[str, Any], int, int], Path]:
    """:func:`train_logged_mlp`, for the tests that warm-start from a supervised model."""
    return train_logged_mlp


def train_logged_mlp(folder: Path, preset: str, sim: dict[str, Any], users: int, epochs: int) -> Path:
    """A supervised mlp trained in ``folder / "mlp"`` on a log (``folder / "logs.parquet"``) of
    ``users`` users under the logging policy; returns the log's path (warm-start tests)."""
    from driftrec.agents.registry import make_policy
    from driftrec.envs.events import EventWriter
    from driftrec.envs.presets import preset_config
    from driftrec.envs.rollout import simulate_log, train_seeds
    from driftrec.envs.user_model import build_user_model
    from driftrec.experiments.train import train_policy

    sim_config = preset_config(preset, sim)
    user_model = build_user_model(sim_config)
    log = folder / "logs.parquet"
    with EventWriter(log) as writer:
        simulate_log(user_model, make_policy("logging", user_model, users, 0), train_seeds(0, users), writer=writer)
    train_policy("mlp", sim_config, folder / "mlp", preset=preset, logs=log, settings={"epochs": epochs})
    return log
