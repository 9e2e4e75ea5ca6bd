"""The scale benchmark's throwaway PostgreSQL server, and CPU time read from /proc.

The server is a cluster of its own (``initdb`` into a temporary folder, ``pg_ctl start``
on a free port of 127.0.0.1, Debian's binaries under ``/usr/lib/postgresql/*/bin``), with
PostgreSQL's default settings (``fsync``, ``synchronous_commit`` and
``full_page_writes`` on) except where it listens and ``max_connections``: W worker
processes of K threads each hold more connections than the default 100. Running as
root, the server runs as the ``postgres`` user (``initdb`` refuses root).

CPU time is ``utime + stime`` of ``/proc/PID/stat``; a process tree's includes its live
descendants and the children it has reaped (``cutime + cstime``): the postmaster reaps
every backend, so backends that came and went are counted too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
WAITERS = (
    "SELECT coalesce(c.relname, l.locktype), count(DISTINCT l.pid) FROM pg_locks l"
    " LEFT JOIN pg_class c ON c.oid = l.relation WHERE NOT l.granted GROUP BY 1"
)
USER = "agentlog"
SHOWN = (
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_connections",
    "server_version",
)


def find_bindir() -> Path | None:
    """A folder with ``pg_ctl`` and ``initdb`` (highest Debian version first), or None."""
    if found := shutil.which("pg_ctl"):
        bindir = Path(found).resolve().parent
        if (bindir / "initdb").exists():
            return bindir
    for pg_ctl in sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True):
        if (pg_ctl.parent / "initdb").exists():
            return pg_ctl.parent
    return None


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A PostgreSQL cluster of its own on 127.0.0.1; stopped and deleted by ``stop``
    (and at interpreter exit)."""

    def __init__(self, bindir: Path, max_connections: int) -> None:
        self.bindir, self.tmp = bindir, Path(tempfile.mkdtemp(prefix="agentlog-scale-pg-"))
        self.data, self.log, self.port = self.tmp / "data", self.tmp / "server.log", free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            if subprocess.run(["id", "postgres"], check=False, capture_output=True).returncode:
                add = ["useradd", "--system", "--user-group", "--no-create-home", "postgres"]
                subprocess.run(add, check=True, capture_output=True)
            shutil.chown(self.tmp, "postgres", "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        atexit.register(self.stop)
        self.run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth=trust",
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.tmp}'",
            "max_connections": str(max_connections),
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self.run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log))

    def run(self, *args: str) -> None:
        """One of the server's programs, as the cluster's owner."""
        cmd = [*self.prefix, str(self.bindir / args[0]), *args[1:]]
        subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=self.tmp)

    def libpq(self, database: str = "postgres") -> str:
        """A libpq URL of a database on this server."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """agentlog's storage URL of a database on this server."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement (autocommit); its rows, if any."""
        import psycopg

        with psycopg.connect(self.libpq(database), autocommit=True) as conn:
            cursor = conn.execute(statement.encode())
            return list(cursor.fetchall()) if cursor.description else []

    def create(self, database: str) -> str:
        """A new, empty database; its storage URL."""
        self.sql(f'CREATE DATABASE "{database}"')
        return self.url(database)

    def drop(self, database: str) -> None:
        """Drop a database (its connections are ended first)."""
        self.sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def settings(self) -> dict[str, str]:
        """The settings the report names, as the server reports them."""
        return {name: str(self.sql(f"SHOW {name}")[0][0]) for name in SHOWN}

    def connections(self) -> int:
        """Client connections open now (all databases)."""
        rows = self.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
        return int(str(rows[0][0]))

    def counters(self, database: str) -> tuple[int, int]:
        """Transactions committed in a database, and WAL syncs of the server, so far."""
        commits = self.sql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{database}'")
        syncs = self.sql("SELECT wal_sync FROM pg_stat_wal")
        return int(str(commits[0][0])), int(str(syncs[0][0]))

    def lock_waiters(self, database: str) -> dict[str, int]:
        """Backends waiting for a lock now, by what they wait for: a table's name (the
        lock on it), or the lock's type (``transactionid``: another transaction's end)."""
        rows = self.sql(WAITERS, database)
        return {str(name): int(str(count)) for name, count in rows}

    def fsync_rate(self) -> str:
        """What ``pg_test_fsync`` says of one 8 kB write + fdatasync in the server's folder."""
        target = self.tmp / "fsync-test"
        command = [*self.prefix, str(self.bindir / "pg_test_fsync"), "-s", "1", "-f", str(target)]
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
        for line in done.stdout.splitlines():
            if line.split()[:1] == ["fdatasync"]:
                return " ".join(line.split()[1:])
        return "not measured (pg_test_fsync failed)"

    def pid(self) -> int:
        """The postmaster's process id."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def cpu_s(self) -> float:
        """CPU seconds the server used so far (postmaster, backends, background)."""
        return tree_cpu_s(self.pid())

    def stop(self) -> None:
        """Stop the server if it runs, and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(OSError, subprocess.CalledProcessError):
                self.run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", "immediate")
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- CPU from /proc -------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/PID/stat the benchmark reads."""

    ppid: int
    cpu_s: float  # utime + stime
    children_s: float  # cutime + cstime: reaped children


def stat(pid: int) -> Stat | None:
    """A process's CPU times, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return Stat(int(fields[1]), (utime + stime) / TICKS, (cutime + cstime) / TICKS)


def children() -> dict[int, list[int]]:
    """Every live process's children, by parent pid."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := stat(int(entry.name))) is not None:
            tree.setdefault(found.ppid, []).append(int(entry.name))
    return tree


def tree_cpu_s(pid: int, tree: dict[int, list[int]] | None = None) -> float:
    """CPU seconds of a process, its live descendants and the children it reaped."""
    tree = children() if tree is None else tree
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        if (found := stat(current)) is not None:
            total += found.cpu_s + (found.children_s if current == pid else 0.0)
            todo.extend(tree.get(current, []))
    return total


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # without guest time, already counted in user
    return (total - idle) / TICKS, total / TICKS
