"""Shared test set-up: one BLAS thread and one torch thread.

The CI box has 2 cores: multi-threaded OpenBLAS makes the small matrix products of the simulator
tests 10-50x slower there, and SB3 / supervised training tests must not fight over the cores.
"""

from __future__ import annotations

import os

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
