"""Ready to call the model: a fresh process opens the store, loads one agent and builds
the model's context, at N steps of history.

Each step is what the runtime records (a model response of ~500 B asking for one call
with ~200 B of arguments, the call, its claim and a ~1 KB result). With compaction (a
``ContextCompacted`` every 50 steps, the last one 25 steps before the end), the context is
the system prompt, the latest summary and what followed, so the time must not grow
with N; without compaction it grows with the conversation (the whole conversation is
the context). Imports are excluded: the child process imports everything, then times
open + load + context.

    .venv/bin/python bench/bench_ready.py [--sizes 100,1000,10000,100000] [--runs 5]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import UUID

from common import (
    argument_parser,
    db_bytes,
    flat_verdict,
    fmt,
    log,
    machine_info,
    markdown_table,
    median,
    preamble,
    whole_numbers,
    write_section,
)
from pydantic import JsonValue

from agentlog.adapters.storage import open_log
from agentlog.domain import Agent, AgentConfig, EffectClass, Policy, TokenUsage, ToolCallRequest

COMPACT_EVERY = 50
TEXT = "x" * 500
ARGS = {"query": "y" * 180, "limit": 10}
RESULT: dict[str, JsonValue] = {"rows": ["z" * 100] * 9}
CHILD = """
import json, sys, time
from uuid import UUID
import eventsourcing.sqlite, sqlalchemy.dialects.sqlite  # what open_log loads: imports excluded
import agentlog.adapters.mapper, agentlog.adapters.key_check
from agentlog.adapters.storage import open_log
from agentlog.domain.runtime import LogTranscript
from agentlog.domain.ports import Context
url, agent_id = sys.argv[1], UUID(sys.argv[2])
start = time.perf_counter()
log = open_log(url)
opened = time.perf_counter()
agent = log.get(agent_id)
loaded = time.perf_counter()
messages = LogTranscript(log).messages(agent)
context = Context(agent_id=agent.id, goal=agent.goal or "", messages=tuple(messages))
done = time.perf_counter()
print(json.dumps({"open": opened - start, "load": loaded - opened,
                  "context": done - loaded, "total": done - start,
                  "messages": len(context.messages), "version": agent.version}))
"""


def build(path: Path, steps: int, *, compact: bool) -> UUID:
    """One agent with ``steps`` recorded steps, saved in chunks (fast to build)."""
    app = open_log(f"sqlite:///{path}")
    agent = Agent.create("bench", AgentConfig(system_prompt="be brief", max_steps=10**9))
    agent.start_task("answer")
    for n in range(steps):
        call = ToolCallRequest(call_id=f"c{n}", tool="lookup", args=ARGS)
        agent.record_model_response(
            TEXT, model="m", tool_calls=(call,), usage=TokenUsage(prompt=1, completion=1)
        )
        agent.call_tool(call, effect=EffectClass.PURE, policy=Policy.ALLOW)
        agent.start_tool(call.call_id, worker_id="w")
        agent.succeed(call.call_id, RESULT)
        if compact and (n + 1) % COMPACT_EVERY == COMPACT_EVERY // 2:  # half a cycle left
            agent.compact(agent.version, f"summary through step {n}", summarizer="s")
        if (n + 1) % 500 == 0:
            app.save(agent)
    app.save(agent)
    app.close()
    return agent.id


def ready(path: Path, agent_id: UUID) -> dict[str, float]:
    """One fresh process's timings (seconds) and context size."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, f"sqlite:///{path}", str(agent_id)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def measure(sizes: list[int], runs: int, folder: Path) -> list[dict[str, float]]:
    """Median of ``runs`` fresh processes per size and mode."""
    rows = []
    for steps in sizes:
        for compact in (True, False):
            path = folder / f"ready-{steps}-{'c' if compact else 'n'}.db"
            log(f"building {steps} steps ({'compaction' if compact else 'no compaction'})")
            agent_id = build(path, steps, compact=compact)
            samples = [ready(path, agent_id) for _ in range(runs)]
            row = {k: median(s[k] for s in samples) for k in samples[0]}
            rows.append(row | {"steps": steps, "compact": compact, "bytes": db_bytes(path)})
    return rows


def report(rows: list[dict[str, float]], command: str, wall: float, info: str) -> str:
    """The markdown section."""
    table = markdown_table(
        ["steps", "compaction", "open ms", "load ms", "context ms", "total ms", "messages"],
        [
            [
                f"{int(r['steps']):,}",
                "yes" if r["compact"] else "no",
                fmt(r["open"] * 1e3, 2),
                fmt(r["load"] * 1e3, 2),
                fmt(r["context"] * 1e3, 2),
                fmt(r["total"] * 1e3, 2),
                f"{int(r['messages']):,}",
            ]
            for r in rows
        ],
    )
    compacted = [r["total"] for r in rows if r["compact"]]
    worst = max(compacted) * 1e3
    verdict = "meets" if worst <= 10 else "misses"
    question = (
        "How long a fresh worker process takes to open the store, load an agent and build"
        " its model context."
    )
    return f"""{preamble("bench_ready.py", "Ready to call the model", question, command, wall)}

{info}

{table}

With compaction every {COMPACT_EVERY} steps, the worst total is {worst:.2f} ms: it {verdict}
the 10 ms goal, and it is {flat_verdict(compacted)} along the history. Without
compaction the context is the whole conversation, so it grows with it (the goal is
stated for compacted agents; the log's other history is never read either way).
"""


def main() -> None:
    """Parse, measure, write the section."""
    parser = argument_parser(__doc__)
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    sizes = whole_numbers(parser, "--sizes", opts.sizes)
    load_start, started = os.getloadavg()[0], time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        rows = measure(sizes, opts.runs, Path(folder))
        info = machine_info(Path(folder), load_start)
    command = f".venv/bin/python bench/bench_ready.py --sizes {opts.sizes} --runs {opts.runs}"
    write_section(opts.out, "bench_ready", report(rows, command, time.monotonic() - started, info))
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
