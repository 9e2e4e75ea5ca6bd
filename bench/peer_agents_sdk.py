"""The OpenAI Agents SDK's ``SQLiteSession``, recording the workload of ``peers.py``.
It comes from the ``openai-agents`` (and ``bench``) extra; bench_peers.py imports this
module only when it is installed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agents import SQLiteSession
from peers import ARGS_JSON, RESULT, TEXT, TOOL, call_id

SESSION_ID = "bench"
BUILD_STEPS = 1_000  # steps per untimed add_items


def session_items(step: int) -> list[Any]:
    """The step's items as the SDK's Runner stores them (Responses API input items)."""
    cid = call_id(step)
    return [
        {
            "id": f"msg_{step:08d}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": TEXT, "annotations": []}],
        },
        {
            "id": f"fc_{step:08d}",
            "type": "function_call",
            "call_id": cid,
            "name": TOOL,
            "arguments": ARGS_JSON,
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": cid, "output": RESULT},
    ]


class AgentsSession:
    """``agents.SQLiteSession`` on a file: one ``add_items`` of the step's three items
    (the SDK records no claim: a call is not durable before its tool runs)."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / "openai-agents.db"
        self.loop = asyncio.new_event_loop()
        self.session = SQLiteSession(SESSION_ID, self.path)
        self.steps = 0

    def build(self, steps: int) -> None:
        """Add ``steps`` steps' items, ``BUILD_STEPS`` steps per call."""
        while steps > 0:
            batch = min(steps, BUILD_STEPS)
            items = [i for s in range(self.steps, self.steps + batch) for i in session_items(s)]
            self.loop.run_until_complete(self.session.add_items(items))
            self.steps += batch
            steps -= batch

    def step(self) -> None:
        """One ``add_items``."""
        self.loop.run_until_complete(self.session.add_items(session_items(self.steps)))
        self.steps += 1

    def between(self) -> None:
        """Nothing between steps."""

    def resume_key(self) -> str:
        """The session id."""
        return SESSION_ID

    def close(self) -> None:
        """Close the session and the event loop."""
        self.session.close()
        self.loop.close()


def resume_session(path: Path, key: str) -> int:
    """Open the session and get every item, as the Runner does before a run."""
    loop = asyncio.new_event_loop()
    session = SQLiteSession(key, path)
    try:
        return len(loop.run_until_complete(session.get_items()))
    finally:
        session.close()
        loop.close()
