"""Canonical encoding and hashing: the tamper-evident chain and argument hashes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64
"""The predecessor hash of an aggregate's first event."""


def canonical(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


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
