"""Compaction: replacing the model's context up to a version with a summary.

``ContextCompacted`` records the summary, the version it covers and who summarised it
(a person, or ``model:<name>``). Only the model's context changes: the stored events are
never touched, and every view but the transcript still shows them.

A compaction never splits a model's tool calls from their results (see
``compaction_cuts``): :func:`safe_cut` checks a cut, or finds the latest safe one.

A worker compacts by itself before a model call when the agent's config says so
(``compact_at_chars`` / ``compact_at_tokens``) and the context has passed that size.
Tokens are estimated as characters / 4 (no tokenizer is needed or assumed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from uuid import UUID

from agentlog.domain.agent import Agent
from agentlog.domain.application import AgentLog, require_agent
from agentlog.domain.compaction_cuts import Cut, check_cut, latest_cut, spans
from agentlog.domain.errors import SummaryFailedError
from agentlog.domain.messages import TranscriptBuilder
from agentlog.domain.ports import Context, Message, Model, ModelCallError
from agentlog.domain.values import AgentConfig

CHARS_PER_TOKEN = 4
SUMMARY_PROMPT = (
    "Summarise the conversation below for the assistant that will carry on with it: "
    "the goal, what was done and found, the tool results that still matter, decisions "
    "taken, and what is left to do. Answer with the summary only."
)


def context_chars(messages: Sequence[Message]) -> int:
    """Characters of a context: each message's text and its tool calls as JSON."""
    return sum(len(m.content) + len(_calls(m)) for m in messages)


def estimated_tokens(chars: int) -> int:
    """Tokens a context of ``chars`` characters is taken to have."""
    return -(-chars // CHARS_PER_TOKEN)


def over_limit(config: AgentConfig, messages: Sequence[Message]) -> bool:
    """Whether the context has passed the size at which the config says to compact.

    Costs nothing when the config sets no size, and stops counting at the limit.
    """
    limits = [config.compact_at_chars]
    if config.compact_at_tokens is not None:
        limits.append(config.compact_at_tokens * CHARS_PER_TOKEN)
    limit = min((n for n in limits if n is not None), default=None)
    if limit is None:
        return False
    chars = 0
    for m in messages:
        chars += len(m.content) + len(_calls(m))
        if chars > limit:
            return True
    return False


def due(agent: Agent, messages: Sequence[Message]) -> bool:
    """Whether a worker should compact before the next model call: the context is over
    the limit and something was recorded since the last compaction."""
    return agent.version > agent.compacted_through + 1 and over_limit(agent.config, messages)


def summarize(model: Model, agent_id: UUID, goal: str, messages: Sequence[Message]) -> str:
    """The model's summary of ``messages``; :class:`SummaryFailedError` if it gives none."""
    request = (
        Message(role="system", content=SUMMARY_PROMPT),
        Message(role="user", content=transcript_text(messages)),
    )
    try:
        decision = model.decide(Context(agent_id=agent_id, goal=goal, messages=request))
    except ModelCallError as e:
        raise SummaryFailedError(agent_id, model.name, f"{e.kind}: {e.message}") from None
    if not decision.text.strip():
        raise SummaryFailedError(agent_id, model.name, "it answered with no text")
    return decision.text.strip()


def compact_with_model(
    log: AgentLog, agent_id: UUID, model: Model, through: int | None = None
) -> int:
    """Ask ``model`` to summarise the agent's context up to ``through`` (default: its
    latest safe version, see :func:`safe_cut`) and record it; returns the version covered."""
    cut = safe_cut(log, require_agent(log.get(agent_id)), through)
    at = log.get(agent_id, version=cut.through)
    summary = summarize(model, agent_id, at.goal or "", log.context(at))
    return log.compact(agent_id, summary, through=at.version, summarizer=f"model:{model.name}")


def safe_cut(log: AgentLog, agent: Agent, through: int | None = None) -> Cut:
    """Where a compaction of ``agent`` (as loaded) may cut: ``through`` if it splits no
    tool call from its result, else :class:`CompactionSplitsCallError` naming the nearest
    safe versions; by default the latest version that splits none. Reads the context.
    A version out of range is left to the compaction's own check."""
    low = agent.compacted_through
    if through is not None and not low < through <= agent.version:
        return Cut(through)
    found = spans(TranscriptBuilder().apply(log.context_events(agent)).entries())
    if through is None:
        return latest_cut(agent.id, found, agent.version, low)
    return Cut(check_cut(agent.id, found, through, low))


def transcript_text(messages: Sequence[Message]) -> str:
    """A context as plain text, one message per paragraph."""
    parts = []
    for m in messages:
        who = f"tool {m.call_id}" if m.role == "tool" else m.role
        calls = f"\n[calls {_calls(m)}]" if m.tool_calls else ""
        parts.append(f"{who}: {m.content}{calls}")
    return "\n\n".join(parts)


def _calls(message: Message) -> str:
    if not message.tool_calls:
        return ""
    return json.dumps([c.model_dump(mode="json") for c in message.tool_calls], ensure_ascii=False)
