"""Canonical encoding and hashing: the tamper-evident chain and argument hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64
"""The predecessor hash of an aggregate's first event."""


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
"""What ``json.dumps`` with these options builds on every call, built once."""


def canonical(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no whitespace, UTF-8."""
    return _CANONICAL.encode(value).encode()


def args_hash(args: Mapping[str, Any]) -> str:
    """SHA-256 of a tool call's arguments in canonical form."""
    return hashlib.sha256(canonical(dict(args))).hexdigest()


def event_digest(topic: str, originator_id: str, version: int, payload: Mapping[str, Any]) -> str:
    """SHA-256 of an event as it is stored.

    ``payload`` is the event's JSON state as the mapper stores it (without its own
    ``digest``), so a verifier can recompute the digest from a stored row before any
    upcasting, and a digest never changes when an old event is read by new code.
    """
    body = {k: v for k, v in payload.items() if k != "digest"}
    body.update(_topic=topic, _originator_id=originator_id, _originator_version=version)
    return hashlib.sha256(canonical(body)).hexdigest()


class ChainLinks:
    """Checks stored events of one aggregate, fed in version order, against their hashes.

    Each event's digest is recomputed from its state *as stored* (before upcasting), and
    each ``prev_hash`` must be its predecessor's digest. Feed it from any version: the
    first event fed is linked to ``prev_hash`` only when that is given.
    """

    def __init__(self, prev_hash: str | None = None, prev_version: int | None = None) -> None:
        self.prev_hash, self.prev_version = prev_hash, prev_version

    def feed(self, topic: str, originator_id: str, version: int, state: Mapping[str, Any]) -> str:
        """This event's digest, once checked; raises ``ValueError`` naming the break."""
        if self.prev_version is not None and version != self.prev_version + 1:
            raise ValueError(f"version {version} follows {self.prev_version}: events are missing")
        if version == 1 and state.get("prev_hash", GENESIS) != GENESIS:
            raise ValueError("the first event does not start the chain")
        if self.prev_hash is not None and state.get("prev_hash") != self.prev_hash:
            raise ValueError("prev_hash is not its predecessor's digest (edited or reordered)")
        digest = event_digest(topic, originator_id, version, state)
        if state.get("digest") != digest:
            raise ValueError("its stored digest does not match its content (edited)")
        self.prev_hash, self.prev_version = digest, version
        return digest
