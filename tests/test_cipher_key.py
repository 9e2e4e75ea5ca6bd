"""A store opens only with the key it was created with: a missing, wrong or unexpected key
fails at open, in one line, for reads and writes alike, and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from base64 import b64encode
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from eventsourcing.cipher import AESCipher
from sqlalchemy import inspect, select

from agentlog.adapters.key_check import checks, displayed
from agentlog.adapters.storage import engine_for, env_for, open_log
from agentlog.adapters.views import open_store
from agentlog.cli import main
from agentlog.cli.runtime import WorkOptions, _child
from agentlog.cli.settings import Settings
from agentlog.domain import AgentLog
from agentlog.domain.errors import (
    CipherKeyError,
    CipherKeyRequiredError,
    InvalidCipherKeyError,
    UnexpectedCipherKeyError,
    WrongCipherKeyError,
)

from conftest import store_url

BACKENDS = ["sqlite", "sqlite-sqlalchemy", "postgres", "postgres-sqlalchemy"]
MISFITS = [  # (key the store was created with, key given at open, error)
    ("right", None, CipherKeyRequiredError),
    ("right", "other", WrongCipherKeyError),
    (None, "right", UnexpectedCipherKeyError),
]
MISFIT_IDS = ["no-key-on-keyed-store", "wrong-key", "key-on-keyless-store"]
AGENTLOG = Path(sys.executable).parent / "agentlog"


def open_log_only(url: str, key: str | None) -> None:
    open_log(url, cipher_key=key).close()


def open_with_views(url: str, key: str | None) -> None:
    open_store(url, cipher_key=key).close()


OPENERS: dict[str, Callable[[str, str | None], None]] = {
    "open_log": open_log_only,
    "open_store": open_with_views,
}


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on each SQL backend (memory:// is new on every open: nothing to check)."""
    return store_url(request.param, tmp_path)


@pytest.fixture
def keys() -> dict[str | None, str | None]:
    return {"right": AESCipher.create_key(16), "other": AESCipher.create_key(16), None: None}


def make_store(url: str, key: str | None) -> None:
    """Create the store with ``key`` (or none) and give it an agent with a task."""
    log = open_log(url, cipher_key=key)
    log.start_task(log.create_agent("first"), "exist")
    log.close()


def contents(url: str, key: str | None) -> tuple[int, set[str]]:
    """How many events the store holds (each decoded with its own key), and its tables."""
    log = open_log(url, cipher_key=key)
    stored = log.recorder.select_notifications(None, 10_000)
    for notification in stored:
        log.mapper.to_domain_event(notification)  # readable with the store's own key
    log.close()
    engine = engine_for(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    return len(stored), tables


def recorded_check(url: str) -> list[str | None]:
    engine = engine_for(url)
    with engine.connect() as conn:
        tokens = [row.token for row in conn.execute(select(checks.c.token))]
    engine.dispose()
    return tokens


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize(("created", "given", "error"), MISFITS, ids=MISFIT_IDS)
def test_a_key_that_does_not_fit_fails_at_open_and_writes_nothing(
    url: str,
    keys: dict[str | None, str | None],
    opener: str,
    created: str | None,
    given: str | None,
    error: type[CipherKeyError],
) -> None:
    make_store(url, keys[created])
    before = contents(url, keys[created])
    with pytest.raises(error) as raised:
        OPENERS[opener](url, keys[given])
    assert raised.value.url == displayed(url)
    assert contents(url, keys[created]) == before  # no event, no view table


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("created", ["right", None])
def test_the_key_a_store_was_created_with_opens_it(
    url: str, keys: dict[str | None, str | None], opener: str, created: str | None
) -> None:
    make_store(url, keys[created])
    OPENERS[opener](url, keys[created])
    log = open_log(url, cipher_key=keys[created])
    (agent_id,) = log.agent_ids()
    assert log.get(agent_id).goal == "exist"
    log.close()


def test_messages_name_the_store_and_the_way_out(sqlite_url: str) -> None:
    key = AESCipher.create_key(16)
    make_store(sqlite_url, key)
    with pytest.raises(CipherKeyRequiredError) as missing:
        open_log(sqlite_url)
    with pytest.raises(WrongCipherKeyError) as wrong:
        open_log(sqlite_url, cipher_key=AESCipher.create_key(16))
    assert str(missing.value) == (
        f"the store at {sqlite_url} is encrypted: give its key "
        "(--cipher-key or AGENTLOG_CIPHER_KEY)"
    )
    assert str(wrong.value) == f"the cipher key does not open the store at {sqlite_url}"


def test_errors_never_show_the_database_password() -> None:
    url = "postgresql+psycopg://ann:s3cret@db.local:5432/agents"
    assert displayed(url) == "postgresql+psycopg://ann:***@db.local:5432/agents"
    assert "s3cret" not in str(WrongCipherKeyError(displayed(url)))


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("not base64!", "not base64"),
        (b64encode(b"short").decode(), "5 bytes, not 16, 24 or 32"),
    ],
)
@pytest.mark.parametrize("store", ["memory://", "sqlite"])
def test_a_malformed_key_is_one_clear_error(
    sqlite_url: str, key: str, reason: str, store: str
) -> None:
    url = sqlite_url if store == "sqlite" else store
    with pytest.raises(InvalidCipherKeyError, match=reason) as raised:
        open_log(url, cipher_key=key)
    assert key not in str(raised.value)
    result = CliRunner().invoke(main, ["--db", url, "--cipher-key", key, "ls"])
    assert (result.exit_code, result.output.splitlines()) == (1, [f"Error: {raised.value}"])


@pytest.mark.parametrize("command", [["new", "--name", "x"], ["ls"]], ids=["write", "read"])
@pytest.mark.parametrize(("created", "given", "error"), MISFITS, ids=MISFIT_IDS)
def test_cli_says_so_in_one_line_and_writes_nothing(
    url: str,
    keys: dict[str | None, str | None],
    command: list[str],
    created: str | None,
    given: str | None,
    error: Callable[[str], CipherKeyError],
) -> None:
    make_store(url, keys[created])
    before = contents(url, keys[created])
    key_option = ["--cipher-key", given_key] if (given_key := keys[given]) else []
    result = CliRunner().invoke(main, ["--db", url, *key_option, *command])
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"Error: {error(displayed(url))}"]
    assert contents(url, keys[created]) == before


def test_the_key_check_is_not_an_event_and_no_listing_sees_it(sqlite_url: str) -> None:
    key = AESCipher.create_key(16)
    make_store(sqlite_url, key)
    assert len(recorded_check(sqlite_url)) == 1
    log = open_log(sqlite_url, cipher_key=key)
    assert len(list(log.agent_ids())) == 1
    assert len(log.recorder.select_notifications(None, 100)) == 2  # Created, TaskStarted
    log.close()
    listed = CliRunner().invoke(main, ["--db", sqlite_url, "--cipher-key", key, "ls", "--json"])
    assert len(json.loads(listed.output)) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_from_before_the_check_is_checked_by_its_first_event(
    backend: str, tmp_path: Path
) -> None:
    url, key = store_url(backend, tmp_path), AESCipher.create_key(16)
    legacy = AgentLog(env_for(url, cipher_key=key))  # as opened before the key check existed
    legacy.create_agent("old")
    legacy.close()
    with pytest.raises(WrongCipherKeyError):
        open_log(url, cipher_key=AESCipher.create_key(16))
    with pytest.raises(CipherKeyRequiredError):
        open_store(url)
    assert recorded_check(url) == []  # a failed open records nothing
    open_log(url, cipher_key=key).close()
    assert len(recorded_check(url)) == 1  # the right key opened it: the check is recorded
    with pytest.raises(WrongCipherKeyError):
        open_log(url, cipher_key=AESCipher.create_key(16))


def test_a_plaintext_store_from_before_the_check_refuses_a_key(sqlite_url: str) -> None:
    url = sqlite_url + "?compress=zlib"
    legacy = AgentLog(env_for(url))
    legacy.create_agent("old")
    legacy.close()
    with pytest.raises(UnexpectedCipherKeyError):
        open_log(url, cipher_key=AESCipher.create_key(16))
    open_store(url).close()
    assert recorded_check(url) == [None]  # recorded: this store has no key


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_concurrent_first_opens_with_two_keys_agree_on_one(backend: str, tmp_path: Path) -> None:
    url = store_url(backend, tmp_path)
    # The events tables exist, empty: the race is on the key check alone (AgentLog's own
    # table creation retries only some of PostgreSQL's concurrent-DDL errors).
    AgentLog(env_for(url)).close()
    two = [AESCipher.create_key(16), AESCipher.create_key(16)]
    start, opened, refused = threading.Barrier(8), [], []

    def first_open(key: str) -> None:
        start.wait()
        try:
            open_log(url, cipher_key=key).close()
            opened.append(key)
        except WrongCipherKeyError:
            refused.append(key)

    threads = [threading.Thread(target=first_open, args=(two[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(opened)) == 1
    assert set(refused) == set(two) - set(opened)
    assert len(opened) == len(refused) == 4


def worker(url: str, key: str | None, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    key_option = ["--cipher-key", key] if key else []
    command = [str(AGENTLOG), "--db", url, *key_option, "--sandbox", str(cwd / "sandbox")]
    return subprocess.run(
        [*command, "worker", "--exit-when-idle", "--poll", "0.1", *extra],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def runnable_agent(url: str, key: str, tmp_path: Path) -> str:
    (tmp_path / "done.json").write_text(json.dumps([{"text": "Done.", "done": True}]))
    new = ["--db", url, "--cipher-key", key, "new", "--name", "a", "--goal", "g"]
    result = CliRunner().invoke(main, [*new, "--model", f"scripted:{tmp_path / 'done.json'}"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def status(url: str, key: str, agent_id: str) -> str:
    log = open_log(url, cipher_key=key)
    found = log.get(log.resolve(agent_id)).status
    log.close()
    return str(found)


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize("given", ["other", None], ids=["wrong-key", "no-key"])
def test_worker_with_a_key_that_does_not_fit_exits_1_and_does_nothing(
    sqlite_url: str, tmp_path: Path, processes: str, given: str | None
) -> None:
    key = AESCipher.create_key(16)
    agent_id = runnable_agent(sqlite_url, key, tmp_path)
    before = contents(sqlite_url, key)
    done = worker(
        sqlite_url, given and AESCipher.create_key(16), tmp_path, "--processes", processes
    )
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("Error: the ")
    assert contents(sqlite_url, key) == before
    assert status(sqlite_url, key, agent_id) == "running"


@pytest.mark.parametrize("processes", ["1", "2"])
def test_worker_with_the_right_key_does_the_work(
    sqlite_url: str, tmp_path: Path, processes: str
) -> None:
    key = AESCipher.create_key(16)
    agent_id = runnable_agent(sqlite_url, key, tmp_path)
    done = worker(sqlite_url, key, tmp_path, "--processes", processes)
    assert done.returncode == 0, done.stderr
    assert status(sqlite_url, key, agent_id) == "completed"


def test_a_worker_process_that_cannot_open_the_store_exits_1_in_one_line(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make_store(sqlite_url, AESCipher.create_key(16))
    options = WorkOptions(1, 0.1, 30.0, group_commit=False, exit_when_idle=True, quiet=False)
    with pytest.raises(SystemExit) as exited:
        _child(Settings(sqlite_url, AESCipher.create_key(16)), options)
    assert exited.value.code == 1
    error = capsys.readouterr().err
    assert error == f"Error: the cipher key does not open the store at {sqlite_url}\n"
