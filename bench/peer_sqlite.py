"""The floor and the library underneath: raw ``sqlite3``, and eventsourcing's own sqlite
module with a plain aggregate, recording the workload of ``peers.py``."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from common import RAW_INSERT, RAW_TABLE, raw_connect
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from peers import ARGS, ARGS_JSON, RESULT, TEXT, TOOL, call_id

BUILD_BATCH = 4_000  # rows (raw) or events (eventsourcing) per untimed save
RAW_SELECT = (
    "SELECT topic, state FROM stored_events WHERE originator_id=? ORDER BY originator_version"
)


def step_rows(step: int) -> list[list[tuple[str, bytes]]]:
    """The step's rows (topic, JSON state), grouped as agentlog commits them: the response
    with its call, then the claim, then the result."""
    cid = call_id(step)

    def row(topic: str, state: dict[str, Any]) -> tuple[str, bytes]:
        return topic, json.dumps(state).encode()

    return [
        [
            row("ModelResponded", {"text": TEXT, "tool_calls": [{"id": cid, "tool": TOOL}]}),
            row("ToolCalled", {"call_id": cid, "tool": TOOL, "args": ARGS}),
        ],
        [row("ToolStarted", {"call_id": cid, "worker": "bench-worker"})],
        [row("ToolSucceeded", {"call_id": cid, "result": RESULT})],
    ]


class RawOne:
    """Raw sqlite3, a table like eventsourcing's: the step's four rows in one transaction."""

    groups_per_commit = 3  # all of a step's commit groups in one transaction

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / f"{type(self).__name__.lower()}.db"
        self.conn = raw_connect(self.path)
        self.conn.execute(RAW_TABLE)
        self.oid = uuid.uuid4().hex
        self.version = self.steps = 0

    def build(self, steps: int) -> None:
        """Insert ``steps`` steps' rows in large transactions."""
        rows = []
        for _ in range(steps):
            rows += [r for group in step_rows(self.steps) for r in group]
            self.steps += 1
            if len(rows) >= BUILD_BATCH:
                self._insert(rows)
                rows = []
        self._insert(rows)

    def step(self) -> None:
        """One step: its rows, ``groups_per_commit`` commit groups per transaction."""
        groups = step_rows(self.steps)
        for i in range(0, len(groups), self.groups_per_commit):
            self._insert([r for group in groups[i : i + self.groups_per_commit] for r in group])
        self.steps += 1

    def _insert(self, rows: list[tuple[str, bytes]]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany(
            RAW_INSERT,
            [(self.oid, self.version + i, t, s) for i, (t, s) in enumerate(rows, start=1)],
        )
        self.conn.commit()
        self.version += len(rows)

    def between(self) -> None:
        """Nothing between steps."""

    def resume_key(self) -> str:
        """The conversation's originator id."""
        return self.oid

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class RawThree(RawOne):
    """Raw sqlite3 with the same commits as agentlog: response and call, claim, result."""

    groups_per_commit = 1


def resume_raw(path: Path, key: str) -> int:
    """Open the file and read every row of the conversation, decoding each state."""
    conn = raw_connect(path)
    try:
        rows = conn.execute(RAW_SELECT, (key,)).fetchall()
        return len([json.loads(row["state"]) for row in rows])
    finally:
        conn.close()


class Conversation(Aggregate):
    """A plain aggregate, as eventsourcing's README writes one: the messages are state."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.running: dict[str, str] = {}

    @event("Responded")
    def respond(self, text: str, call_id: str, tool: str, arguments: str) -> None:
        """The model's response and its tool call."""
        self.messages.append({"role": "assistant", "text": text, "call": call_id})

    @event("Started")
    def start(self, call_id: str, worker: str) -> None:
        """The claim on the call, before the tool runs."""
        self.running[call_id] = worker

    @event("Finished")
    def finish(self, call_id: str, result: str) -> None:
        """The tool's result."""
        self.running.pop(call_id, None)
        self.messages.append({"role": "tool", "call": call_id, "result": result})


def plain_app(path: Path) -> Application[uuid.UUID]:
    """An eventsourcing application on its own sqlite module, default settings."""
    return Application(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    )


class PlainAggregate:
    """eventsourcing.sqlite with ``Conversation``, held in memory between steps; three
    saves a step (the same commits as agentlog), no snapshots."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "eventsourcing.db"
        self.app = plain_app(self.path)
        self.conversation = Conversation()
        self.app.save(self.conversation)
        self.steps = 0

    def build(self, steps: int) -> None:
        """Record ``steps`` steps, saved in large batches."""
        pending = 0
        for _ in range(steps):
            self._record(save=False)
            pending += 3
            if pending >= BUILD_BATCH:
                self.app.save(self.conversation)
                pending = 0
        self.app.save(self.conversation)

    def step(self) -> None:
        """One step, three saves."""
        self._record(save=True)

    def _record(self, *, save: bool) -> None:
        cid, c = call_id(self.steps), self.conversation
        c.respond(TEXT, cid, TOOL, ARGS_JSON)
        if save:
            self.app.save(c)
        c.start(cid, "bench-worker")
        if save:
            self.app.save(c)
        c.finish(cid, RESULT)
        if save:
            self.app.save(c)
        self.steps += 1

    def between(self) -> None:
        """Nothing between steps."""

    def resume_key(self) -> str:
        """The aggregate's id."""
        return str(self.conversation.id)

    def close(self) -> None:
        """Close the application's store."""
        self.app.close()


def resume_plain(path: Path, key: str) -> int:
    """Open the application and get the aggregate (replays every event)."""
    app = plain_app(path)
    try:
        conversation: Conversation = app.repository.get(uuid.UUID(key))
        return len(conversation.messages)
    finally:
        app.close()
