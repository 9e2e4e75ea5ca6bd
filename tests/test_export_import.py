"""Export / import in the lossless format: byte-identical round trips, all or nothing."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.cipher import AESCipher
from eventsourcing.persistence import IntegrityError, StoredEvent
from hypothesis import given, settings
from hypothesis import strategies as st
from test_replay_properties import facts, live, sqlite_file

from agentlog.adapters import event_import
from agentlog.adapters.bulk_insert import insert_batches
from agentlog.adapters.event_export import export_events
from agentlog.adapters.event_import import import_events
from agentlog.adapters.storage import open_log
from agentlog.domain import AgentConfig, AgentLog, EffectClass, Policy, ToolCallRequest
from agentlog.domain.chain import ChainLinks, event_digest
from agentlog.domain.errors import AgentExistsError, ImportFileError


def exported(app: AgentLog, agents: list[UUID] | None = None) -> str:
    out = io.StringIO()
    export_events(app, out, agents)
    return out.getvalue()


def imported(app: AgentLog, text: str) -> event_import.ImportReport:
    return import_events(app, io.BytesIO(text.encode()))


def stored_count(app: AgentLog) -> int:
    return len(app.recorder.select_notifications(1, 10_000))


def verify_all(app: AgentLog) -> None:
    """Every agent's stored events check out against their hashes, first to last."""
    for agent_id in app.agent_ids():
        app.chained_events(app.get(agent_id), 1)


def busy_agent(app: AgentLog, name: str = "busy", calls: int = 3, *, done: bool = True) -> UUID:
    """An agent with a task, a model response, tool calls and their results."""
    agent_id = app.create_agent(name, AgentConfig(system_prompt="be brief"))
    app.start_task(agent_id, "count the files")
    agent = app.get(agent_id)
    requests = tuple(
        ToolCallRequest(call_id=f"c{i}", tool="ls", args={"n": i}) for i in range(calls)
    )
    agent.record_model_response("listing", model="m", tool_calls=requests)
    for request in requests:
        agent.call_tool(request, effect=EffectClass.PURE, policy=Policy.ALLOW)
        agent.start_tool(request.call_id, worker_id="w")
        agent.succeed(request.call_id, {"files": ["a", "ö"] * 3})
    app.save(agent)
    if done:
        app.complete(agent_id, "3 files")
    return agent_id


@settings(max_examples=max(10, settings().max_examples // 2))
@given(st.data())
def test_export_import_export_is_byte_identical_and_verifies(data: st.DataObject) -> None:
    with sqlite_file() as source_url, sqlite_file() as target_url:
        lived = [
            live(source_url, data, snapshot_interval=data.draw(st.sampled_from([0, 4])))[0]
            for _ in range(data.draw(st.integers(1, 3), "agents"))
        ]
        source, target = open_log(source_url), open_log(target_url)
        try:
            first = exported(source)
            report = imported(target, first)
            assert (report.agents, report.unchanged) == (len(lived), 0)
            assert exported(target) == first
            verify_all(target)
            for agent in lived:
                assert facts(target.get(agent.id)) == facts(agent)
        finally:
            source.close()
            target.close()


def test_round_trip_on_every_backend(backend_url: str, tmp_path: Path) -> None:
    source = open_log(f"sqlite:///{tmp_path / 'source.db'}")
    for n in range(3):
        busy_agent(source, f"agent {n}")
    text = exported(source)
    source.close()
    target = open_log(backend_url)
    try:
        assert imported(target, text).events == text.count("\n") - 2
        assert exported(target) == text
        verify_all(target)
    finally:
        target.close()


def test_a_bad_line_after_written_batches_imports_nothing_on_every_backend(
    backend_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(event_import, "BATCH", 4)  # several batches are written before it
    source = open_log(f"sqlite:///{tmp_path / 'source.db'}")
    for n in range(3):
        busy_agent(source, f"agent {n}")
    lines = exported(source).splitlines(keepends=True)
    source.close()
    lines.insert(-1, "{not json\n")
    target = open_log(backend_url)
    try:
        with pytest.raises(ImportFileError, match=f"^line {len(lines) - 1}: not JSON"):
            imported(target, "".join(lines))
        assert stored_count(target) == 0
    finally:
        target.close()


def test_a_database_error_in_a_later_batch_writes_nothing_on_every_backend(
    backend_url: str,
) -> None:
    target = open_log(backend_url)
    try:
        agent_id = busy_agent(target)
        before = stored_count(target)
        fresh = [StoredEvent(UUID(int=7), v, "t", b"{}") for v in (1, 2)]
        again = target.recorder.select_events(agent_id, limit=1)  # already stored
        with pytest.raises(IntegrityError):
            insert_batches(target.recorder, iter([fresh, list(again)]))
        assert stored_count(target) == before
    finally:
        target.close()


@pytest.fixture
def one_file(app: AgentLog) -> list[str]:
    """The lines of an export of two busy agents."""
    busy_agent(app, "first")
    busy_agent(app, "second")
    return exported(app).splitlines(keepends=True)


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[AgentLog]:
    log = open_log(f"sqlite:///{tmp_path / 'empty.db'}")
    yield log
    log.close()


def edit_state(line: str, **changes: Any) -> str:
    value = json.loads(line)
    value["state"].update(changes)
    return json.dumps(value) + "\n"


def refused(target: AgentLog, lines: list[str], message: str) -> None:
    with pytest.raises(ImportFileError, match=message):
        imported(target, "".join(lines))
    assert stored_count(target) == 0


def test_an_edited_event_is_named_by_its_line(one_file: list[str], empty: AgentLog) -> None:
    one_file[3] = edit_state(one_file[3], text="something else")
    refused(empty, one_file, "^line 4: agent .* version 3: its stored digest does not match")


def test_a_missing_event_is_named_by_the_line_after_the_gap(
    one_file: list[str], empty: AgentLog
) -> None:
    del one_file[3]
    refused(empty, one_file, "^line 4: .*version 4 follows 2: events are missing")


def test_a_digest_edited_in_the_file_alone_is_refused(one_file: list[str], empty: AgentLog) -> None:
    value = json.loads(one_file[2])
    value["digest"] = "0" * 64
    one_file[2] = json.dumps(value) + "\n"
    refused(empty, one_file, "^line 3: .*its digest is not the event's")


def test_an_agent_without_its_first_events_is_refused(one_file: list[str], empty: AgentLog) -> None:
    refused(empty, [one_file[0], *one_file[2:]], "^line 2: agent .* starts at version 2")


def test_a_file_cut_short_at_a_line_boundary_is_refused(
    one_file: list[str], empty: AgentLog
) -> None:
    refused(empty, one_file[:-3], "^the file ends without its trailer line")


def test_a_trailer_that_does_not_count_the_lines_is_refused(
    one_file: list[str], empty: AgentLog
) -> None:
    refused(empty, [*one_file[:4], one_file[-1]], "^the trailer counts")


def test_state_that_fits_no_event_class_is_refused(one_file: list[str], empty: AgentLog) -> None:
    value = json.loads(one_file[1])
    value["topic"] = "agentlog:Agent.TaskCompleted@1"  # a Created's state under another topic
    state = value["state"]
    if "digest" in state:  # resealed, so that only the class check can catch it
        state["digest"] = event_digest(value["topic"], value["agent"], 1, state)
    value["digest"] = ChainLinks().feed(value["topic"], value["agent"], 1, state)
    one_file[1] = json.dumps(value) + "\n"
    refused(empty, one_file, "^line 2: .*does not fit")


@pytest.mark.parametrize(
    ("first_line", "message"),
    [
        ('{"format":"something"}\n', "^line 1: not an agentlog-events file"),
        ('{"format":"agentlog-events","version":2}\n', "^line 1: format version 2"),
        ("\n", "^line 1: an empty line"),
    ],
)
def test_a_file_that_is_not_this_format_is_refused(
    one_file: list[str], empty: AgentLog, first_line: str, message: str
) -> None:
    refused(empty, [first_line, *one_file[1:]], message)


def test_an_empty_file_is_refused(empty: AgentLog) -> None:
    refused(empty, [], "^the file is empty")


def test_importing_the_same_file_twice_changes_nothing(
    one_file: list[str], empty: AgentLog
) -> None:
    text = "".join(one_file)
    assert imported(empty, text).agents == 2
    before = stored_count(empty)
    report = imported(empty, text)
    assert (report.events, report.agents, report.unchanged) == (0, 0, 2)
    assert stored_count(empty) == before


def test_an_agent_stored_with_other_events_is_refused_and_nothing_is_imported(
    app: AgentLog, empty: AgentLog
) -> None:
    first = busy_agent(app, "first", done=False)
    text = exported(app, [first])
    imported(empty, text)
    empty.send(first, "one more message")  # the copy moved on
    second = busy_agent(app, "second")
    both = exported(app, [second, first])
    before = stored_count(empty)
    with pytest.raises(AgentExistsError, match=f"agent {first} .*the store has more events"):
        imported(empty, both)
    assert stored_count(empty) == before  # the new agent "second" was not imported either


def test_an_agent_stored_with_fewer_events_is_refused(app: AgentLog, empty: AgentLog) -> None:
    agent_id = app.create_agent("growing")
    imported(empty, exported(app))
    app.start_task(agent_id, "grow")
    with pytest.raises(AgentExistsError, match="the file has more events, from version 2"):
        imported(empty, exported(app))


def test_an_encrypted_store_exports_portable_json_that_imports_under_another_key(
    tmp_path: Path,
) -> None:
    key_a, key_b = AESCipher.create_key(16), AESCipher.create_key(16)
    source = open_log(f"sqlite:///{tmp_path / 'a.db'}", cipher_key=key_a)
    target = open_log(f"sqlite:///{tmp_path / 'b.db'}", cipher_key=key_b)
    try:
        agent_id = busy_agent(source)
        text = exported(source)
        assert '"count the files"' in text  # readable JSON, not ciphertext
        imported(target, text)
        assert exported(target) == text
        verify_all(target)
        (a,), (b,) = (log.recorder.select_events(agent_id, limit=1) for log in (source, target))
        assert a.state != b.state  # each store encrypts under its own key
    finally:
        source.close()
        target.close()


def test_export_of_named_agents_gives_them_in_the_order_named(app: AgentLog) -> None:
    first, second = busy_agent(app, "first"), busy_agent(app, "second")
    lines = exported(app, [second, first]).splitlines()
    agents = [json.loads(line)["agent"] for line in lines[1:-1]]
    assert agents == sorted(agents, key=lambda a: a != str(second))
    assert json.loads(lines[-1]) == {"end": {"events": len(lines) - 2, "agents": 2}}


def test_an_imported_long_history_gets_a_snapshot_to_resume_from(
    app: AgentLog, empty: AgentLog
) -> None:
    long_one = busy_agent(app, "long", calls=30)  # 96 events: past the interval of 50
    short_one = busy_agent(app, "short", calls=1)
    imported(empty, exported(app))
    assert empty.snapshots is not None
    (snapshot,) = empty.snapshots.get(long_one)
    assert snapshot.originator_version == app.get(long_one).version
    assert not list(empty.snapshots.get(short_one))
    assert facts(empty.get(long_one)) == facts(app.get(long_one))
