"""Errors of the world are one line naming the file or URL, exit code 1, never a traceback;
a real bug shows its traceback under --debug."""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentlog.adapters.storage import open_log
from agentlog.cli.errors import message
from agentlog.domain import AgentConfig, EffectClass, Policy, ToolCallRequest
from agentlog.domain.values import TokenUsage
from agentlog.projections import queries

from cli_outcome import AGENTLOG, fails_in_one_line, invoke, spawn, unprivileged, without

KEY = base64.b64encode(b"k" * 16).decode()


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.mark.parametrize("content", [b"hello, not a database\n", bytes(range(256)) * 8])
@pytest.mark.parametrize("command", [("ls",), ("new", "--name", "a"), ("init",)])
def test_a_file_that_is_not_sqlite_is_named(
    tmp_path: Path, content: bytes, command: tuple[str, ...]
) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    outcome = invoke("--db", url_of(path), *command)
    fails_in_one_line(outcome, f"Error: {path} is not a SQLite database")
    assert path.read_bytes() == content


def test_a_path_below_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    url = url_of(tmp_path / "file" / "agentlog.db")
    fails_in_one_line(
        invoke("--db", url, "new", "--name", "a"),
        f"Error: storage URL '{url}': {tmp_path / 'file'} cannot be a folder: a file is in the way",
    )
    fails_in_one_line(invoke("--db", url, "ls"), f"Error: no agentlog store at {url}")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql+psycopg://localhost:99999/db", "port 99999 is not between 1 and 65535"),
        ("postgresql+psycopg://ana:secret@localhost:abc/db", "its port is not a number"),
        ("postgresql+psycopg://localhost:5432", "name the database"),
    ],
)
def test_a_postgresql_url_with_a_bad_port_is_named(url: str, reason: str) -> None:
    outcome = invoke("--db", url, "ls")
    shown = url.replace(":secret@", ":***@")
    fails_in_one_line(outcome, f"Error: storage URL '{shown}': {reason}")
    assert "secret" not in outcome.output


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"short").decode(), "5 bytes, not 16, 24 or 32"),
    ],
)
def test_a_bad_cipher_key_is_named(tmp_path: Path, key: str, reason: str) -> None:
    outcome = invoke("--db", url_of(tmp_path / "a.db"), "--cipher-key", key, "init")
    fails_in_one_line(outcome, f"Error: the cipher key is not valid ({reason})")
    assert not (tmp_path / "a.db").exists()


def test_a_name_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    # How Python hands over the bytes ff fe of a command line (surrogateescape).
    name = b"\xff\xfe".decode("utf-8", "surrogateescape")
    outcome = invoke("--db", url_of(tmp_path / "a.db"), "new", "--name", name)
    fails_in_one_line(outcome, r"Error: --name: not valid UTF-8 (\xff\xfe)")
    assert not (tmp_path / "a.db").exists()


def test_a_name_that_is_not_utf8_is_named_by_the_real_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [AGENTLOG, "--db", url_of(tmp_path / "a.db"), "new", "--name", b"\xff"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == rb"Error: --name: not valid UTF-8 (\xff)"


@pytest.fixture
def store_copy(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A store with one agent, copied into a folder nobody may write; its URL and agent."""
    log = open_log(url_of(tmp_path / "made.db"))
    agent_id = str(log.create_agent("a", AgentConfig(tool_policies={"read_file": Policy.ASK})))
    log.start_task(log.resolve(agent_id), "g")
    call = ToolCallRequest(call_id="c1", tool="read_file", args={"path": "notes.txt"})
    agent = log.get(log.resolve(agent_id))
    agent.record_model_response("reading", model="m", tool_calls=(call,))
    agent.call_tool(call, effect=EffectClass.PURE, policy=Policy.ASK)
    log.save(agent)
    log.close()
    assert invoke("--db", url_of(tmp_path / "made.db"), "ls").code == 0  # views caught up
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(tmp_path / "made.db", folder / "agentlog.db")
    (folder / "agentlog.db").chmod(0o444)
    folder.chmod(0o555)
    yield url_of(folder / "agentlog.db"), agent_id
    folder.chmod(0o755)


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (("ls",), "running"),
        (("show", "{id}"), "running"),
        (("show", "--at", "1", "{id}"), "version     1"),
        (("log", "{id}"), "TaskStarted"),
        (("audit",), "read_file"),
        (("projections", "status"), "runnable"),
    ],
)
def test_a_read_only_copy_can_be_read(
    store_copy: tuple[str, str], command: tuple[str, ...], shown: str
) -> None:
    url, agent_id = store_copy
    path = Path(url.removeprefix("sqlite:///"))
    before = path.read_bytes()
    args = [arg.format(id=agent_id) for arg in command]
    outcome = spawn("--db", url, *args, prefix=unprivileged())
    assert outcome.code == 0, outcome.output
    assert shown in outcome.stdout
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["agentlog.db"]


def test_writing_to_a_read_only_copy_is_one_line(store_copy: tuple[str, str]) -> None:
    url, _ = store_copy
    outcome = spawn("--db", url, "new", "--name", "b", prefix=unprivileged())
    fails_in_one_line(outcome, f"Error: the store at {url} is read-only: this command writes")


def test_a_read_only_folder_without_a_store_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    url = url_of(folder / "agentlog.db")
    outcome = spawn("--db", url, "init", prefix=unprivileged())
    folder.chmod(0o755)
    fails_in_one_line(
        outcome, f"Error: storage URL '{url}': cannot create agentlog.db: the folder {folder}"
    )


@pytest.mark.parametrize(
    ("blocked", "args", "first_line"),
    [
        (
            "Crypto",
            ("--db", "sqlite:///{tmp}/a.db", "--cipher-key", KEY, "init"),
            "Error: encryption (--cipher-key) needs the 'crypto' extra",
        ),
        (
            "psycopg",
            ("--db", "postgresql+psycopg://127.0.0.1:1/db", "ls"),
            "Error: PostgreSQL needs the 'postgres' extra",
        ),
        (
            "psycopg",
            ("--db", "postgresql+psycopg://127.0.0.1:1/db?engine=sqlalchemy", "init"),
            "Error: PostgreSQL needs the 'postgres' extra",
        ),
    ],
)
def test_a_missing_extra_is_named_with_its_install_command(
    tmp_path: Path, blocked: str, args: tuple[str, ...], first_line: str
) -> None:
    outcome = spawn(*(a.format(tmp=tmp_path) for a in args), env=without(blocked, "psycopg_pool"))
    fails_in_one_line(outcome, first_line)
    assert "pip install 'agentlog[" in outcome.first_error


def test_an_openai_model_without_the_openai_extra_is_named(tmp_path: Path) -> None:
    url = url_of(tmp_path / "a.db")
    made = invoke("--db", url, "new", "--name", "a", "--goal", "g", "--model", "openai:gpt-4o")
    assert made.code == 0, made.output
    outcome = spawn("--db", url, "step", made.stdout.strip(), env=without("openai"))
    fails_in_one_line(outcome, "Error: model 'openai:gpt-4o': the 'openai' extra is not installed")
    assert "pip install 'agentlog[openai]'" in outcome.first_error


def test_a_bug_is_one_line_and_shows_its_traceback_under_debug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = url_of(tmp_path / "a.db")
    assert invoke("--db", url, "init").code == 0

    def broken(*args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(queries, "states", broken)
    fails_in_one_line(
        invoke("--db", url, "ls"),
        "Error: internal error (a bug in agentlog): ZeroDivisionError: a bug; run with --debug",
    )
    for args, env in [(("--debug",), None), ((), {"AGENTLOG_DEBUG": "1"})]:
        result = invoke("--db", url, *args, "ls", env=env)
        assert result.code == 1
        assert "Error:" not in result.output  # the exception itself, for a traceback
    from click.testing import CliRunner

    from agentlog.cli import main

    raised = CliRunner().invoke(main, ["--db", url, "--debug", "ls"]).exception
    assert isinstance(raised, ZeroDivisionError)


def test_usage_errors_stay_exit_code_2(tmp_path: Path) -> None:
    outcome = invoke("--db", url_of(tmp_path / "a.db"), "show")
    assert outcome.code == 2
    assert outcome.first_error.startswith("Usage: ")


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def working(pid: int, store: Path) -> list[int]:
    """The child processes of ``pid`` that have the store open."""
    found = []
    for child in children_of(pid):
        with contextlib.suppress(OSError):
            fds = Path(f"/proc/{child}/fd").iterdir()
            if any(os.readlink(fd) == str(store) for fd in fds):
                found.append(child)
    return found


def test_ctrl_c_ends_worker_processes_without_tracebacks(tmp_path: Path) -> None:
    url = url_of(tmp_path / "a.db")
    assert invoke("--db", url, "init").code == 0
    worker = subprocess.Popen(
        [AGENTLOG, "--db", url, "worker", "--processes", "2", "--poll", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
    )
    try:
        _ctrl_c(worker, tmp_path / "a.db")
    finally:  # a failure half-way must not leave workers polling forever
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def _ctrl_c(worker: subprocess.Popen[str], db: Path) -> None:
    """Ctrl-C to a running ``worker --processes 2``: it ends with 130 and no traceback."""
    deadline = time.monotonic() + 60
    while len(working(worker.pid, db)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(working(worker.pid, db)) == 2  # both children in their loop
    for _ in range(5):  # a Ctrl-C while the children start may be lost: press it again
        os.killpg(worker.pid, signal.SIGINT)
        try:
            out, err = worker.communicate(timeout=15)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        worker.kill()
        pytest.fail("worker --processes 2 did not stop on Ctrl-C")
    assert worker.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert "KeyboardInterrupt" not in out + err


def filled_tmpfs(folder: Path) -> Iterator[Path]:
    """A 4 MB tmpfs at ``folder`` (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root")
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr!r}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    yield from filled_tmpfs(tmp_path / "disk")


def fill(folder: Path) -> None:
    """Take every free byte of the filesystem at ``folder``."""
    with pytest.raises(OSError, match="No space left") as full:
        write_forever(folder / "filler")
    assert full.value.errno == errno.ENOSPC


def write_forever(path: Path) -> None:
    with path.open("wb") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()


def test_a_full_disk_in_worker_processes_is_one_line_each(small_disk: Path, tmp_path: Path) -> None:
    url = url_of(small_disk / "a.db")
    script = [{"text": "Done.", "done": True}]
    (tmp_path / "done.json").write_text(json.dumps(script))
    spec = f"scripted:{tmp_path / 'done.json'}"
    for i in range(4):
        made = invoke("--db", url, "new", "--name", f"w{i}", "--goal", "g", "--model", spec)
        assert made.code == 0, made.output
    with sqlite3.connect(small_disk / "a.db") as db:  # no room left in the WAL file either
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    fill(small_disk)
    outcome = spawn("--db", url, "worker", "--processes", "2", "--exit-when-idle")
    fails_in_one_line(outcome, "Error: no space left on the disk holding")
    assert "Error: 2 worker process(es) failed" in outcome.stderr


@pytest.mark.parametrize(
    "content", [b"\xff\xfe[]", b'[{"text": 5, "done": "maybe"}]', b'[{"text": ', b""]
)
def test_a_script_file_that_cannot_be_used_is_named(tmp_path: Path, content: bytes) -> None:
    url = url_of(tmp_path / "a.db")
    (tmp_path / "script.json").write_bytes(content)
    spec = f"scripted:{tmp_path / 'script.json'}"
    made = invoke("--db", url, "new", "--name", "a", "--goal", "g", "--model", spec)
    assert made.code == 0, made.output
    fails_in_one_line(
        invoke("--db", url, "step", made.stdout.strip()),
        f"Error: model '{spec}': script file {tmp_path / 'script.json'} cannot be used: ",
    )


def test_the_mapping_names_the_file_or_url_and_leaves_bugs_alone() -> None:
    url = "postgresql+psycopg://ana:secret@db/agents"
    shown = "postgresql+psycopg://ana:***@db/agents"
    full = OSError(errno.ENOSPC, "No space left on device", "/data/a.db")
    assert message(full, url) == "no space left on the disk holding /data/a.db"
    denied = PermissionError(errno.EACCES, "Permission denied", "/data")
    assert message(denied, url) == "/data: Permission denied"
    locked = sqlite3.OperationalError("attempt to write a readonly database")
    assert message(locked, url) == (
        f"the store at {shown} is read-only: this command writes to it "
        "(ls, show, log, audit and verify only read)"
    )
    odd = sqlite3.OperationalError("no such table: x")
    assert message(odd, url) == f"database error at {shown}: OperationalError: no such table: x"
    with pytest.raises(ValidationError) as invalid:
        TokenUsage.model_validate({"prompt": "many"})
    assert message(invalid.value, url) == (
        "invalid TokenUsage prompt: Input should be a valid integer, unable to parse string "
        "as an integer"
    )
    not_utf8 = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
    assert message(not_utf8, url) == (
        "text that is not valid UTF-8 ('utf-8' codec can't decode byte 0xff in position 0: "
        "invalid start byte)"
    )
    assert message(ModuleNotFoundError("x", name="Crypto"), url) is not None
    assert message(ModuleNotFoundError("x", name="numpy"), url) is None  # not an extra: a bug
    assert message(KeyError("bug"), url) is None
