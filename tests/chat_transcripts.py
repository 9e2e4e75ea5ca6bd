"""Real-shaped OpenAI chat transcripts, written for the tests (never committed as data).

Shaped like what agent harnesses save: a system prompt, a user task, then rounds of an
assistant asking for several tools at once (parallel calls, arguments as JSON strings,
``content: null``), multi-KB tool outputs (some as lists of parts), answers, follow-up
questions, and keys agentlog has no field for (ids, names, timestamps, reasoning).
Messages are generated one at a time, so a long transcript is written without being held.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TOOLS = ("read_file", "grep", "list_dir", "run_tests", "http_get")
WORDS = [
    "the",
    "log",
    "is",
    "the",
    "agent",
    "every",
    "event",
    "a",
    "fact",
    "replay",
    "audit",
    "fork",
    "tool",
    "result",
]


def messages(count: int, *, seed: int = 0, output_kb: int = 4, parallel: int = 4) -> Iterator[Any]:
    """``count`` messages (at least 3): system, user, then rounds; the last is an answer."""
    rng = random.Random(seed)
    yield {"role": "system", "content": "You are a careful coding agent. " + _words(rng, 40)}
    yield {"role": "user", "content": [{"type": "text", "text": "Fix the failing test. "}]}
    made, round_ = 2, 0
    while made < count - 1:
        round_ += 1
        room = count - 1 - made  # keep one message for the final answer
        if room >= 2 and rng.random() < 0.8:
            calls = min(rng.randint(1, parallel), room - 1)
            yield from _round(rng, round_, calls, output_kb)
            made += 1 + calls
        elif rng.random() < 0.5:
            yield {"role": "user", "content": _words(rng, 12), "name": "dev"}
            made += 1
        else:
            yield {"role": "assistant", "content": _words(rng, 30), "id": f"msg_{round_}"}
            made += 1
    yield {"role": "assistant", "content": "Done: the test passes now.", "refusal": None}


def _round(rng: random.Random, round_: int, calls: int, output_kb: int) -> Iterator[Any]:
    ids = [f"call_{round_}_{i}_{rng.randrange(16**6):06x}" for i in range(calls)]
    yield {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {
                    "name": rng.choice(TOOLS),
                    "arguments": json.dumps({"path": f"src/m{i}.py", "line": rng.randint(1, 900)}),
                },
            }
            for i, call_id in enumerate(ids)
        ],
        "reasoning_content": _words(rng, 8),
    }
    for call_id in ids:
        output = _words(rng, rng.randint(output_kb * 100, output_kb * 250))
        content: Any = output if rng.random() < 0.7 else [{"type": "text", "text": output}]
        yield {"role": "tool", "tool_call_id": call_id, "content": content}


def write(path: Path, count: int, *, shape: str = "list", **options: Any) -> Path:
    """Write a transcript as a JSON list, JSON Lines, or an object with metadata."""
    with path.open("w", encoding="utf-8") as out:
        if shape == "object":
            out.write('{"id": "run-42", "model": "gpt-4o-2024-08-06", "messages": ')
        for n, message in enumerate(messages(count, **options)):
            if shape == "lines":
                out.write(json.dumps(message) + "\n")
            else:
                out.write(("[\n" if n == 0 else ",\n") + json.dumps(message))
        if shape != "lines":
            out.write("\n]")
        if shape == "object":
            out.write(', "usage": {"total_tokens": 123456}}')
    return path


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))
