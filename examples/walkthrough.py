"""A scripted walk-through of one agent's life, on the default SQLite store.

No network, no API key. The agent reads a file, asks to write one, gets a person's
grant, and its worker is killed (SIGKILL) after recording that the write started. A new
process resumes it from the log alone: the side-effecting write is never re-run blindly;
its outcome is recorded as unknown, reconciled against the sandbox, and the task ends.
Run from any folder: ``python examples/walkthrough.py``; then try ``agentlog ls``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from uuid import UUID

from agentlog.adapters.storage import DEFAULT_URL, open_log
from agentlog.domain import AgentLog, CallStage, EffectClass, TokenUsage, ToolCallRequest

SANDBOX = Path(".agentlog/sandbox")
HAIKU = "append-only lines\nthe worker dies, the log stays\nreplay, and go on\n"
READ = ToolCallRequest(call_id="call-1", tool="read_file", args={"path": "notes.txt"})
WRITE = ToolCallRequest(call_id="call-2", tool="write_file", args={"path": "haiku.txt"})


def agentlog(*args: str) -> str:
    """Run the agentlog command, echo it and its output."""
    print(f"\n$ agentlog {' '.join(args)}", flush=True)
    command = [sys.executable, "-c", "from agentlog.cli import main; main()", *args]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    print(out, end="", flush=True)
    return out


def model_turn(
    log: AgentLog, agent_id: UUID, text: str, call: ToolCallRequest, effect: EffectClass
) -> None:
    """What a worker records for one model response asking for one tool call."""
    agent = log.get(agent_id)
    agent.record_model_response(
        text, model="scripted", tool_calls=(call,), usage=TokenUsage(prompt=120, completion=30)
    )
    agent.call_tool(call, effect=effect, caused_by=agent.version)  # the response's version
    log.save(agent)


def read_notes(log: AgentLog, agent_id: UUID) -> None:
    """A pure tool call under an 'allow' policy runs at once."""
    model_turn(log, agent_id, "Let me read the notes first.", READ, EffectClass.PURE)
    agent = log.get(agent_id)
    agent.start_tool(READ.call_id, worker_id="worker-1")
    log.save(agent)  # recorded as started before the tool runs
    agent.succeed(READ.call_id, (SANDBOX / "notes.txt").read_text(), actor="worker:worker-1")
    log.save(agent)


def worker_killed_mid_write(agent_id: UUID) -> None:
    """Child process: record the write as started, write the file, die before the result."""
    log = open_log(os.environ.get("AGENTLOG_DB", DEFAULT_URL))
    agent = log.get(agent_id)
    agent.start_tool(WRITE.call_id, worker_id="worker-2")
    log.save(agent)
    (SANDBOX / "haiku.txt").write_text(HAIKU)
    os.kill(os.getpid(), signal.SIGKILL)


def resume(log: AgentLog, agent_id: UUID) -> None:
    """A fresh worker: a started side-effecting call without outcome is reconciled."""
    agent = log.get(agent_id)
    call = agent.calls[WRITE.call_id]
    assert call.stage is CallStage.STARTED
    assert call.effect is EffectClass.SIDE_EFFECTING
    agent.mark_outcome_unknown(WRITE.call_id, actor="worker:worker-3")
    written = (SANDBOX / "haiku.txt").read_text() == HAIKU  # reconcile: did it happen?
    agent.succeed(WRITE.call_id, {"reconciled": written}, actor="worker:worker-3")
    agent.record_model_response("The haiku is written.", model="scripted")
    agent.complete("haiku.txt written")
    log.save(agent)


def main() -> None:
    """Walk one agent through its life and print what the log says."""
    if len(sys.argv) == 3 and sys.argv[1] == "--killed-worker":
        worker_killed_mid_write(UUID(sys.argv[2]))
    SANDBOX.mkdir(parents=True, exist_ok=True)
    (SANDBOX / "notes.txt").write_text("topic: logs that outlive their workers\n")
    agent_id = UUID(
        agentlog(
            "new",
            "--name",
            "poet",
            "--goal",
            "write a haiku about logs",
            "--policy",
            "read_file=allow",
            "--policy",
            "write_file=ask",
        ).strip()
    )
    log = open_log(os.environ.get("AGENTLOG_DB", DEFAULT_URL))
    read_notes(log, agent_id)
    model_turn(log, agent_id, "Now I will write the haiku.", WRITE, EffectClass.SIDE_EFFECTING)
    agent = log.get(agent_id)
    agent.request_permission(WRITE.call_id)
    log.save(agent)
    agentlog("show", str(agent_id))  # waiting for a person
    log.grant(agent_id, WRITE.call_id, approver="ana")
    print("\n-- a worker starts the write and is killed with SIGKILL --", flush=True)
    child = subprocess.run(
        [sys.executable, __file__, "--killed-worker", str(agent_id)], check=False
    )
    assert child.returncode == -signal.SIGKILL
    print("-- a new process resumes from the log --", flush=True)
    resume(open_log(os.environ.get("AGENTLOG_DB", DEFAULT_URL)), agent_id)
    agentlog("log", str(agent_id))
    agentlog("show", str(agent_id))
    agentlog("show", str(agent_id), "--at", "9")


if __name__ == "__main__":
    main()
