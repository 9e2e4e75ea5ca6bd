"""Canonical encoding and hashing: the tamper-evident chain and argument hashes."""

from __future__ import annotations

import hashlib
import json
import json.encoder
from collections.abc import Mapping
from typing import Any, NamedTuple

GENESIS = "0" * 64
"""The predecessor hash of an aggregate's first event."""


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
"""What ``json.dumps`` with these options builds on every call, built once."""


def json_encoder(encoder: json.JSONEncoder) -> Any:
    """The C function ``encoder.encode`` builds on every call, built once: called with
    (value, 0), it gives the same chunks of text. It keeps no state between calls, so
    threads may share it; it does not look for cycles (what it encodes comes from
    pydantic models and parsed JSON, which have none), and runs into the recursion
    limit instead. None if the C accelerator is missing (``encoder.encode`` then)."""
    make = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed: C-only
    if make is None:  # pragma: no cover - CPython always has it
        return None
    return make(
        None,
        encoder.default,
        json.encoder.encode_basestring_ascii
        if encoder.ensure_ascii
        else json.encoder.encode_basestring,
        encoder.indent,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )


_ENCODE_CANONICAL = json_encoder(_CANONICAL)


_SHA256 = hashlib.sha256()


def sha256_hex(data: bytes) -> str:
    """``hashlib.sha256(data).hexdigest()``, from a copy of an empty hash made once:
    ``hashlib.sha256()`` looks its algorithm up in OpenSSL on every call, which costs
    more than hashing an event's few hundred bytes. (A copy is the caller's alone.)"""
    h = _SHA256.copy()
    h.update(data)
    return h.hexdigest()


def canonical(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, no whitespace, UTF-8."""
    if _ENCODE_CANONICAL is None:  # pragma: no cover
        return _CANONICAL.encode(value).encode()
    return "".join(_ENCODE_CANONICAL(value, 0)).encode()


def args_hash(args: Mapping[str, Any]) -> str:
    """SHA-256 of a tool call's arguments in canonical form."""
    return sha256_hex(canonical(dict(args)))


def event_digest(topic: str, originator_id: str, version: int, payload: Mapping[str, Any]) -> str:
    """SHA-256 of an event as it is stored.

    ``payload`` is the event's JSON state as the mapper stores it (without its own
    ``digest``), so a verifier can recompute the digest from a stored row before any
    upcasting, and a digest never changes when an old event is read by new code.
    """
    body = dict(payload)
    body.pop("digest", None)
    body["_topic"], body["_originator_id"] = topic, originator_id
    body["_originator_version"] = version
    return sha256_hex(canonical(body))


_HEAD = '{"_originator_id":%s,"_originator_version":%d,"_topic":%s'
_json_text = json.encoder.encode_basestring  # a str as JSON (what canonical() writes)
_NO_DIGEST = b'"digest":""'
"""A state's ``digest`` member before it is sealed, as :func:`canonical` writes it."""


def sealed_json(
    topic: str, originator_id: str, version: int, state: Mapping[str, Any]
) -> tuple[str, bytes] | None:
    """The digest of an event about to be stored and its state's canonical JSON bytes
    with that digest in place, from *one* encoding of the state; None where this short
    way does not apply (then: :func:`event_digest`, and :func:`canonical` once more).

    ``state`` is the event's stored state with an empty ``digest``. What is hashed is
    what :func:`event_digest` hashes: the canonical JSON of the state without its digest
    and with the row's topic, id and version, here spliced from the state's own encoding
    (sorted keys: the three ``_`` keys come first when every key of the state sorts after
    them). The ``digest`` member is found by its text, so it must occur exactly once: a
    nested ``"digest": ""`` goes the long way.
    """
    if state.get("digest") != "" or min(state) <= "_topic" or type(version) is not int:
        return None
    data = canonical(state)
    at = data.find(_NO_DIGEST)
    end = at + len(_NO_DIGEST)
    if at < 0 or data.find(_NO_DIGEST, end) >= 0:
        return None
    if data[at - 1 : at] == b",":
        rest = data[: at - 1] + data[end:]
    elif data[end : end + 1] == b",":
        rest = data[:at] + data[end + 1 :]
    else:
        rest = data[:at] + data[end:]
    # canonical({"_originator_id": ..., "_originator_version": ..., "_topic": ...}),
    # less its closing brace, written out (a version is an int: its JSON is its repr)
    head = (_HEAD % (_json_text(originator_id), version, _json_text(topic))).encode()
    body = head + b"}" if rest == b"{}" else head + b"," + rest[1:]
    digest = sha256_hex(body)
    return digest, b'%s"digest":"%s"%s' % (data[:at], digest.encode(), data[end:])


ABSENT = object()
"""A link's ``prev_hash`` when the stored state has none."""


class Link(NamedTuple):
    """What the chain checks of one stored event: its version, the hashes it stores, and
    its digest recomputed from its state as stored (before upcasting)."""

    version: int
    prev_hash: Any  # ABSENT if the state has none
    stored_digest: Any
    digest: str

    @classmethod
    def of(cls, topic: str, originator_id: str, version: int, state: Mapping[str, Any]) -> Link:
        """The link of a stored event, from its decoded (not upcast) state."""
        digest = event_digest(topic, originator_id, version, state)
        return cls(version, state.get("prev_hash", ABSENT), state.get("digest"), digest)


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
        return self.follow(Link.of(topic, originator_id, version, state))

    def follow(self, link: Link) -> str:
        """The digest of the event ``link`` was taken of, once checked (as ``feed``)."""
        version = link.version
        if self.prev_version is not None and version != self.prev_version + 1:
            raise ValueError(f"version {version} follows {self.prev_version}: events are missing")
        if version == 1 and link.prev_hash not in (ABSENT, GENESIS):
            raise ValueError("the first event does not start the chain")
        if self.prev_hash is not None and link.prev_hash != self.prev_hash:
            raise ValueError("prev_hash is not its predecessor's digest (edited or reordered)")
        if link.stored_digest != link.digest:
            raise ValueError("its stored digest does not match its content (edited)")
        self.prev_hash, self.prev_version = link.digest, version
        return link.digest
