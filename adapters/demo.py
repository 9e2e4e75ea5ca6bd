"""``agentlog demo``: a scripted agent's whole life on the default store, including a
worker killed with SIGKILL mid-tool and a new process that resumes it from the log."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from uuid import UUID

from pydantic import BaseModel, JsonValue

from agentlog.adapters.tools import ToolRegistry, builtin_tools
from agentlog.adapters.views import Store
from agentlog.domain import AgentConfig, Policy
from agentlog.domain.ports import Tool

CRASH_POINTS = ("before-tool", "mid-tool", "none")
DEMO_DIR = Path(".agentlog/demo")
HAIKU = "append-only lines\nthe worker dies, the log stays\nreplay, and go on\n"
SCRIPT = [
    {
        "text": "First I read the brief.",
        "tool_calls": [{"call_id": "read-1", "tool": "read_file", "args": {"path": "brief.txt"}}],
    },
    {
        "text": "Counting syllables: 5 + 7 + 5.",
        "tool_calls": [
            {"call_id": "calc-1", "tool": "calculator", "args": {"expression": "5 + 7 + 5"}}
        ],
    },
    {
        "text": "Writing the haiku to haiku.txt.",
        "tool_calls": [
            {
                "call_id": "write-1",
                "tool": "write_file",
                "args": {
                    "path": "haiku.txt",
                    "content": HAIKU,
                },
            }
        ],
    },
    {
        "text": "The haiku is written: 17 syllables, in haiku.txt.",
        "done": True,
        "usage": {"prompt": 310, "completion": 24},
    },
]


def prepare(store: Store, sandbox: Path) -> UUID:
    """Write the demo's script and its brief in the sandbox; create the agent with its goal."""
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    sandbox.mkdir(parents=True, exist_ok=True)
    script = DEMO_DIR / "script.json"
    script.write_text(json.dumps(SCRIPT, indent=2))
    (sandbox / "brief.txt").write_text("A haiku about logs that outlive workers.\n")
    config = AgentConfig(
        model=f"scripted:{script}",
        system_prompt="You are a poet with a calculator.",
        tool_policies={"write_file": Policy.ASK},
        tool_timeout=1.0,  # a started call older than this is taken to be dead
    )
    agent_id = store.log.create_agent("demo-poet", config)
    store.log.start_task(agent_id, "Write a haiku about logs into haiku.txt")
    return agent_id


def demo_tools(sandbox: Path, crash_at: str = "none") -> ToolRegistry:
    """The built-in tools; ``write_file`` may kill its own process."""
    tools = builtin_tools(sandbox)
    if crash_at != "none":
        tools["write_file"] = CrashingTool(tools["write_file"], crash_at)
    return tools


class CrashingTool:
    """Wraps a tool; SIGKILLs the process before or after the real effect."""

    def __init__(self, inner: Tool, point: str) -> None:
        self.inner, self.point = inner, point
        self.name, self.description = inner.name, inner.description
        self.args_model: type[BaseModel] = inner.args_model
        self.effect, self.policy = inner.effect, inner.policy

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """Die where told to: nothing but the log survives."""
        if self.point == "before-tool":
            os.kill(os.getpid(), signal.SIGKILL)
        result = self.inner.run(args, idempotency_key)
        if self.point == "mid-tool":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    def reconcile(self, idempotency_key: str) -> bool | None:
        """Ask the real tool."""
        return self.inner.reconcile(idempotency_key)
