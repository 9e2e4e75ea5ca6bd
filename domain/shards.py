"""Shards: a store's events spread over several tables, each agent in one of them.

A store made with ``S`` shards keeps each aggregate's events in table ``id.int % S``
(shard 0 is the table of a store without shards), so saves of agents in different
shards take different table locks. Positions in one shard's notification log are that
shard's own; where one number must name an event among all shards (a view's rows, a
merged read of every shard), :func:`global_position` makes it ``local * S + shard``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder

SHARDS_KEY = "AGENTLOG_STORE_SHARDS"
"""The environment key (set by ``env_for``) that says how many shards a store has."""
WRAPPED = ("inner", "recorder")
"""Attributes under which a recorder that wraps another (group commit) keeps it."""


def shard_of(originator_id: UUID | str, shards: int) -> int:
    """The shard an aggregate's events live in (stable: a function of its id alone)."""
    key = originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))
    return key.int % shards


def global_position(local: int, shard: int, shards: int) -> int:
    """One number for a shard's position among every shard's (``local`` with S = 1)."""
    return local * shards + shard


def log_shards(recorder: ApplicationRecorder) -> Sequence[ApplicationRecorder]:
    """The notification logs to follow: each shard's recorder, or the recorder itself.

    A recorder that wraps the sharded one (under ``inner`` or ``recorder``) is looked
    through, so group commit and the like keep the shards visible to followers.
    """
    seen: object = recorder
    for _ in range(5):
        shards = getattr(seen, "shards", None)
        if shards is not None:
            return cast(Sequence[ApplicationRecorder], shards)
        inner = next((getattr(seen, a) for a in WRAPPED if hasattr(seen, a)), None)
        if inner is None:
            break
        seen = inner
    return [recorder]
