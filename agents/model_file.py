"""Trained model files checked before a library reads them: one line naming a bad file.

An SB3 agent's ``model.zip`` / ``best_model.zip`` and a supervised model's ``model.pt`` are both zip
archives (SB3's ``save``; ``torch.save`` since PyTorch 1.6), so one check tells the ways such a
file goes wrong apart, before SB3 or torch would end in a traceback (``ValueError: ... wasn't a
zip-file``):

- *no such file*;
- *truncated*: empty, or a zip archive without its end (a copy or a write cut short);
- *not a driftrec ...*: no zip archive at all, or one without the member its format writes
  (``data`` for SB3, ``<folder>/data.pkl`` for torch).

The loaders (:func:`driftrec.agents.rl.load_agent`, :func:`driftrec.agents.supervised.load_network`)
call these checks, and turn what the library still cannot read into :func:`unreadable`'s error: a
:class:`ModelFileError`, a ConfigError that the CLI prints as one line.
"""

from __future__ import annotations

import zipfile
from fnmatch import fnmatchcase
from pathlib import Path

from driftrec.envs.config import ConfigError

__all__ = ["ModelFileError", "check_agent_file", "check_supervised_file", "unreadable"]

ZIP_MAGIC = b"PK\x03\x04"
"""The first four bytes of a zip archive (a local file header)."""


class ModelFileError(ConfigError):
    """A trained model file is missing, truncated or not a driftrec model; the message names the file."""


def check_agent_file(path: str | Path, algo: str) -> Path:
    """``path`` if it is a complete SB3 zip archive (of ``algo``, the name the message uses), else ModelFileError."""
    return _check_zip(Path(path), f"{algo} agent", "data")


def check_supervised_file(path: str | Path) -> Path:
    """``path`` if it is a complete torch checkpoint archive, else ModelFileError."""
    return _check_zip(Path(path), "supervised model", "*/data.pkl")


def unreadable(path: Path, what: str, err: BaseException) -> ModelFileError:
    """The error for a file that passed the checks but that SB3 or torch could not read as a ``what``:
    ``err``'s message on one line, cut at 200 characters."""
    return ModelFileError(f"model file '{path}': not a driftrec {what} ({' '.join(str(err).split())[:200]})")


def _check_zip(path: Path, what: str, member: str) -> Path:
    """``path`` if it is a complete zip archive holding a member that matches the pattern ``member``."""
    if not path.is_file():
        raise ModelFileError(f"model file '{path}': no such file")
    with path.open("rb") as file:
        head = file.read(len(ZIP_MAGIC))
    if not head:
        raise ModelFileError(f"model file '{path}': truncated (the file is empty)")
    if head != ZIP_MAGIC:
        raise ModelFileError(f"model file '{path}': not a driftrec {what} (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise ModelFileError(f"model file '{path}': truncated (a zip archive without its end)") from None
    if not any(fnmatchcase(name, member) for name in names):
        raise ModelFileError(f"model file '{path}': not a driftrec {what} (a zip archive without '{member}')")
    return path
