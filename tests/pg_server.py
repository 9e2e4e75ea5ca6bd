"""Provide a PostgreSQL server for the test suite.

``postgres_url()`` returns ``AGENTLOG_TEST_POSTGRES_URL`` when set; otherwise
it starts a throwaway, 127.0.0.1-only cluster from the locally installed
server binaries (stopped and deleted at interpreter exit). When neither is
possible it returns ``None`` and ``unavailable_reason()`` says why.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from collections.abc import Callable

ENV_URL = "AGENTLOG_TEST_POSTGRES_URL"
USER, PASSWORD, DATABASE = "agentlog", "agentlog", "agentlog_test"

_cache: dict[str, str | None] = {"reason": "postgres_url() has not been called"}


def unavailable_reason() -> str:
    """Explain why ``postgres_url()`` returned ``None``."""
    return _cache["reason"] or ""


def postgres_url() -> str | None:
    """Return a ``postgresql+psycopg://`` URL of a usable server, or ``None``."""
    if "url" not in _cache:
        if env_url := os.environ.get(ENV_URL):
            _cache["url"] = env_url
        elif (bindir := _find_bindir()) is None:
            _cache["reason"] = "no PostgreSQL server binaries (pg_ctl, initdb) found"
            _cache["url"] = None
        else:
            try:
                _cache["url"] = _start_cluster(bindir)
            except (OSError, subprocess.CalledProcessError, psycopg.Error) as exc:
                detail = getattr(exc, "stderr", None) or ""
                _cache["reason"] = f"cannot start PostgreSQL: {exc} {detail}"
                _cache["url"] = None
    return _cache["url"]


def fresh_database(base_url: str, name_prefix: str = "t") -> str:
    """Create a uniquely named database on ``base_url``'s server; return its URL."""
    name = f"{name_prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq_url(base_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))


def _libpq_url(url: str) -> str:
    """Strip a SQLAlchemy driver suffix (``+psycopg``) so libpq accepts the URL."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+")[0]))


def _find_bindir() -> Path | None:
    """Locate a directory holding ``pg_ctl`` and ``initdb``; highest version wins."""
    if found := shutil.which("pg_ctl"):
        bindir = Path(found).resolve().parent
        if (bindir / "initdb").exists():
            return bindir

    def version(pg_ctl: Path) -> tuple[int, ...]:
        name = pg_ctl.parent.parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    candidates = Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")
    for pg_ctl in sorted(candidates, key=version, reverse=True):
        if (pg_ctl.parent / "initdb").exists():
            return pg_ctl.parent
    return None


def _free_port() -> int:
    """Ask the kernel for a currently unused TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A throwaway, 127.0.0.1-only PostgreSQL server of its own, which a test may stop and
    start again (same port, same data directory); deleted at interpreter exit."""

    def __init__(self, bindir: Path) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="agentlog-pg-"))
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb and pg_ctl refuse to run as root
            probe = subprocess.run(["id", "postgres"], check=False, capture_output=True)
            if probe.returncode:
                useradd = ["useradd", "--system", "--user-group", "--no-create-home"]
                subprocess.run([*useradd, "postgres"], check=True, capture_output=True)
            shutil.chown(self.tmp, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.bindir, self.data, self.port = bindir, self.tmp / "data", _free_port()
        self.log = self.tmp / "server.log"
        atexit.register(_stop_cluster, self.run, self.data, self.tmp)
        self.run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "--no-sync",
                 "--encoding=UTF8", "--locale=C")  # fmt: skip
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.tmp}'",
            "fsync": "off",
            "full_page_writes": "off",
            "synchronous_commit": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self.start()
        base = f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(base, autocommit=True) as conn:
            alter = sql.SQL("ALTER ROLE {} PASSWORD {}")
            conn.execute(alter.format(sql.Identifier(USER), sql.Literal(PASSWORD)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))

    @property
    def url(self) -> str:
        """The test database's SQLAlchemy URL."""
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def run(self, *args: str) -> None:
        """Run one of the server's programs as the cluster's owner."""
        cmd = [*self.prefix, str(self.bindir / args[0]), *args[1:]]
        subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=self.tmp)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        try:
            self.run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log))
        except subprocess.CalledProcessError as exc:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            exc.stderr = tail
            raise

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions, drop connections)."""
        self.run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)


def own_cluster() -> Cluster | None:
    """A server of its own for a test that restarts it; None without server binaries."""
    bindir = _find_bindir()
    return None if bindir is None else Cluster(bindir)


def _start_cluster(bindir: Path) -> str:
    """Initialise and start the test session's throwaway cluster."""
    return Cluster(bindir).url


def _stop_cluster(run: Callable[..., None], data: Path, tmp: Path) -> None:
    """Stop the throwaway server (if it runs) and delete its directory."""
    if (data / "postmaster.pid").exists():
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            run("pg_ctl", "stop", "-D", str(data), "-m", "immediate")
    shutil.rmtree(tmp, ignore_errors=True)
