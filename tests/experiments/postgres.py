"""A throwaway PostgreSQL server on loopback for tests (Debian's ``postgresql`` package, which
``.ci/run`` installs).

:func:`postgres_server` runs ``initdb`` into a fresh temporary folder, starts ``postgres`` with
``pg_ctl`` on a free port of 127.0.0.1 (no other address, its socket in that folder, trust
authentication for the one local user), yields a ``postgresql://`` URL and stops the server and
removes the folder afterwards. PostgreSQL refuses to run as root: as root the server runs as the
``postgres`` user (created by the Debian package) or ``nobody``, which owns the folder. Where no
server can be started (no binaries, no unprivileged user, initdb or start failing) it skips the
test, saying why; under CI (``CI=true``, which ``.ci/run`` and CI services set) it fails it
instead, so CI never passes without running the PostgreSQL tests.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

SEARCH = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/opt/postgresql*/bin")
"""Where Debian (not on PATH), source builds and Homebrew put initdb and pg_ctl."""


def postgres_bin() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (the newest version found), or None."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    candidates = [p for pattern in SEARCH for p in Path("/").glob(pattern.lstrip("/"))
                  if (p / "pg_ctl").is_file() and (p / "initdb").is_file()]

    def version(path: Path) -> tuple[int, ...]:
        digits = "".join(c if c.isdigit() else " " for c in str(path)).split()
        return tuple(int(d) for d in digits)

    return max(candidates, key=version) if candidates else None


def unavailable(reason: str) -> NoReturn:
    """No server can be started: fail the test under CI (``CI=true``), skip it elsewhere."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when this process is root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    unavailable("PostgreSQL cannot run as root and there is no 'postgres' or 'nobody' user to run it as")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def postgres_server(user: str = "driftrec", database: str = "postgres") -> Iterator[str]:
    """Start a server, yield ``postgresql://USER@127.0.0.1:PORT/DATABASE``, stop it afterwards."""
    bindir = postgres_bin()
    if bindir is None:
        unavailable("PostgreSQL is not installed: no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin "
                    "(.ci/run installs Debian's postgresql package)")
    account = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="driftrec-pg-"))
    data = folder / "data"
    kwargs: dict = {"cwd": folder, "capture_output": True, "text": True, "timeout": 120,
                    "env": {**os.environ, "LC_ALL": "C", "LANG": "C"}}
    if account is not None:
        os.chown(folder, account.pw_uid, account.pw_gid)
        kwargs.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    started = False
    try:
        init = subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8",
                               "--no-locale", "--no-sync"], **kwargs)
        if init.returncode:
            unavailable(f"PostgreSQL initdb failed: {_tail(init.stderr or init.stdout)}")
        port = _free_port()
        options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off -c max_connections=50"
        start = subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"),
                                "-w", "-t", "60", "start"], **kwargs)
        if start.returncode:
            log = (folder / "log").read_text() if (folder / "log").is_file() else ""
            unavailable(f"PostgreSQL did not start: {_tail(log or start.stderr or start.stdout)}")
        started = True
        yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
    finally:
        if started:
            subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], **kwargs)
        shutil.rmtree(folder, ignore_errors=True)
