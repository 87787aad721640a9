"""Writing run artifacts: atomically (a reader or a resumed run never sees half a file), and
as plain YAML/JSON-safe values.

Every file of a run folder is written to a temporary name in its destination's folder and
renamed over it (``os.replace``, atomic on one file system) only when complete.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces ``path`` when the block ends cleanly (and is
    deleted when it raises). The parent folder is created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` (without its index) to ``path`` as Parquet, atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def plain(value: Any, *, finite: bool = False) -> Any:
    """``value`` with numpy scalars, tuples and classes made YAML/JSON-safe (mappings get string
    keys, tuples become lists, a class its dotted name); with ``finite``, NaN and inf become None
    (JSON has no NaN)."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, Mapping):
        return {str(k): plain(v, finite=finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, finite=finite) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if finite and isinstance(value, float) and not math.isfinite(value):
        return None
    return value
