"""What a forked agent inherits from its parent, carried in its ``Created`` event."""

from __future__ import annotations

from pydantic import JsonValue

from agentlog.domain.ports import Message
from agentlog.domain.values import Frozen

IDENTITY = ("name", "config", "lineage", "compacted_through", "head_hash")
"""State a fork does not inherit: its own name, config, lineage, compactions and chain."""


class Inheritance(Frozen):
    """The parent's state and the model's context at the version forked at.

    ``state`` is the parent's public state as its snapshots store it, without
    ``IDENTITY``; ``context`` the messages the parent's model would have seen there, so
    the child's first model call sees exactly what the parent's would have.
    """

    state: dict[str, JsonValue]
    context: tuple[Message, ...] = ()
