"""Helpers shared by the ``driftrec`` commands: the one-line user error, argument types, ``--set``
parsing, the output check, the users progress bar and the current folder on the import path.

A leaf of :mod:`driftrec.experiments`: every command module imports it, and it imports none of
them (nor :mod:`driftrec.experiments.cli`, which only dispatches).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


class CLIError(Exception):
    """A user mistake on the command line; the message is one line."""


def check_output(path: Path) -> None:
    """Fail early (before a long simulation) when ``path`` cannot be written."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise CLIError(f"cannot write '{path}': it is a folder")
    if not folder.is_dir():
        raise CLIError(f"cannot write '{path}': folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write '{path}': folder '{folder}' is not writable")


@contextmanager
def users_progress(total: int) -> Iterator[tuple[Progress, TaskID]]:
    """A rich progress bar of users done, on stderr (hidden when stderr is not a terminal)."""
    console = Console(stderr=True)
    with Progress(TextColumn("users done"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not console.is_terminal) as progress:
        yield progress, progress.add_task("simulate", total=total)


def int_arg(lo: int, hi: int | None = None, what: str = "an integer") -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[lo, hi)`` (no upper bound when ``hi`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo or (hi is not None and value >= hi):
            bound = f"[{lo}, {hi})" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"expected {what} {bound}, got {text!r}")
        return value

    return parse


positive_int = int_arg(1, what="a positive integer")
non_negative_int = int_arg(0, what="an integer")


def import_from_cwd() -> None:
    """Let a command import the user's modules from the current folder (compare's ``module:factory``
    policies), as ``python -m`` would: a console script's ``sys.path`` starts with its own folder
    instead. Appended, so an installed module of the same name wins."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
