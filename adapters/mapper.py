"""Our mapper for pydantic events (eventsourcing 9.5 ships none), with upcasting.

Stored state is the event's JSON (``DomainEvent.stored_state``; an aggregate's event
writes it as canonical JSON, sorted keys, the bytes its digest was computed from, older
rows have the keys in field order: both read and verify alike), zlib-compressed when
that makes it smaller (see ``LargeStateCompressor``); reading it back upcasts old class
versions and validates into the typed event, so tuples stay tuples and int keys stay
ints. Any failure names the agent, the version and the topic.
"""

from __future__ import annotations

import json
import zlib
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Compressor, Mapper, StoredEvent, Transcoder, Transcoding
from eventsourcing.utils import TopicError, get_topic, resolve_topic
from pydantic import ValidationError

from agentlog.domain.aggregate import Aggregate, DomainEvent
from agentlog.domain.chain import canonical, json_encoder
from agentlog.domain.errors import StoredEventError, UnknownTopicError
from agentlog.domain.recordings import stored_event
from agentlog.domain.stored_tail import remember_row, sealed_link

_decode_json = json.JSONDecoder().decode  # what json.loads uses
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""What ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False)`` builds per call."""
_ENCODE_COMPACT = json_encoder(_COMPACT)


class JSONTranscoder(Transcoder):
    """Plain JSON to bytes; pydantic does all the typing."""

    def encode(self, obj: Any) -> bytes:
        """Compact UTF-8 JSON."""
        if _ENCODE_COMPACT is None:  # pragma: no cover - CPython always has it
            return _COMPACT.encode(obj).encode()
        return "".join(_ENCODE_COMPACT(obj, 0)).encode()

    def decode(self, data: bytes) -> Any:
        """Parse JSON bytes."""
        if type(data) is bytes and data[:1] == b"{" and data[1:2] != b"\x00":
            # What json.loads does with bytes it detects as UTF-8, minus the detection.
            return _decode_json(data.decode("utf-8", "surrogatepass"))
        return json.loads(data)

    def register(self, transcoding: Transcoding) -> None:
        """Transcodings are not used: type the pydantic fields instead."""
        msg = "agentlog's transcoder takes no transcodings; type the pydantic fields instead"
        raise TypeError(msg)


COMPRESS_AT = 512
"""States of at least this many bytes of JSON are stored compressed (when that is smaller)."""
SMALL = 2048
"""States shorter than this are deflated with a smaller hash table (``memLevel`` 5, not
zlib's default 8): zeroing the default's 64 KB table costs more than deflating a state
of a few hundred bytes. The stream is the same zlib format as ``zlib.compress`` gives
(window, level and header alike: any inflate reads it), and mostly the same bytes."""
SMALL_MEM_LEVEL = 5


class LargeStateCompressor(Compressor):
    """zlib for large states only: small ones stay readable JSON, and cost no inflate.

    A stored state is JSON (it starts with ``{``) or a zlib stream (it starts with
    ``0x78``), so any store reads back whatever mix its writers chose: ``?compress=zlib``
    (every state), this default, or ``?compress=none``.
    """

    def __init__(self, threshold: int = COMPRESS_AT) -> None:
        self.threshold = threshold

    def compress(self, data: bytes) -> bytes:
        """``data`` deflated when it is large and that saves bytes, else as it is."""
        if len(data) < self.threshold:
            return data
        packed = deflate(data)
        return packed if len(packed) < len(data) else data

    def decompress(self, data: bytes) -> bytes:
        """Stored bytes back to JSON bytes, whichever way they were written."""
        return inflate(data)


def deflate(data: bytes) -> bytes:
    """``zlib.compress(data)``: a zlib stream at the default level and window, with a
    smaller hash table for small data (see ``SMALL``)."""
    if len(data) >= SMALL:
        return zlib.compress(data)
    packer = zlib.compressobj(
        zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, zlib.MAX_WBITS, SMALL_MEM_LEVEL
    )
    return packer.compress(data) + packer.flush()


def inflate(data: bytes) -> bytes:
    """JSON bytes from stored bytes, compressed or not (they never both start alike)."""
    return zlib.decompress(data) if data[:1] == ZLIB_HEADER else data


ZLIB_HEADER = b"\x78"
"""The first byte of every zlib stream (deflate, 32 KB window); JSON text never has it."""


class PydanticMapper(Mapper[UUID]):
    """Maps agentlog's pydantic events to stored events and back."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        """Encode (then compress, then encrypt) an event's JSON state."""
        if not isinstance(domain_event, DomainEvent):
            msg = f"{type(domain_event).__name__} is not an agentlog DomainEvent"
            raise TypeError(msg)
        topic = get_topic(type(domain_event))
        if not isinstance(domain_event, Aggregate.Event):
            data = self.encode_state(domain_event.stored_state())
        elif type(self.transcoder) is not JSONTranscoder:
            sealed = domain_event.pop_sealed()
            data = self.encode_state(sealed or domain_event.stored_state())
            if sealed:
                remember_row(domain_event, topic, data, sealed_link(domain_event))
        elif (text := domain_event.pop_sealed_json()) is not None:
            # The bytes the digest was computed from (canonical JSON, digest in place).
            data = self.pack(text)
            # A read of these very bytes gives back this very event (stored_tail.read_row).
            remember_row(domain_event, topic, data, sealed_link(domain_event))
        else:  # as a sealed event of the same state is stored: canonical JSON
            data = self.pack(canonical(domain_event.stored_state()))
        fields: dict[str, Any] = {
            "originator_id": domain_event.originator_id,
            "originator_version": domain_event.originator_version,
            "topic": topic,
            "state": data,
        }
        return stored_event(fields)

    def encode_state(self, state: dict[str, Any]) -> bytes:
        """The bytes a JSON state is stored as (encoded, compressed, encrypted):
        the inverse of :meth:`decode_state`."""
        return self.pack(self.transcoder.encode(state))

    def pack(self, data: bytes) -> bytes:
        """Encoded state to the bytes stored (compressed, encrypted)."""
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return data

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        """Decode a stored event, upcasting its state to the current class version."""
        event = self.read_direct(stored_event)
        if event is None:
            event = self.event_from_state(stored_event, self.decode_state(stored_event))
        return event

    def read_direct(self, stored_event: StoredEvent) -> Any:
        """The event validated by pydantic straight from its JSON bytes (no ``json.loads``,
        no dict in between), or None when that path does not apply or fails: then
        :meth:`to_domain_event` reads the row the general way, which gives the same event,
        or says clearly why the row cannot be read.

        It applies to a class at version 1 (nothing to upcast) already resolved, with
        our JSON transcoder, and a row whose id is a ``UUID`` and version an ``int``: the
        row's id and version are appended to the stored object, and the last of
        duplicate keys wins, as the general path's "the row's, over anything stored".
        Pydantic's JSON mode accepts no JSON text ``json.loads`` rejects and reads the
        same values (tests/test_mapper_direct.py); what it rejects but ``json.loads``
        reads (a lone surrogate) goes the general way.
        """
        cls = _EVENT_CLASSES.get(stored_event.topic)
        originator_id = stored_event.originator_id
        version = stored_event.originator_version
        if (
            cls is None
            or cls.class_version != 1
            or type(originator_id) is not UUID
            or type(version) is not int
            or type(self.transcoder) is not JSONTranscoder
        ):
            return None
        try:
            data = stored_event.state
            if self.cipher:
                data = self.cipher.decrypt(data)
            data = inflate(data)
        except Exception:
            return None  # the general path says why
        if data[:1] != b"{" or data[-1:] != b"}" or len(data) < 3:
            return None
        id_key = _ID_KEYS.get(originator_id)
        if id_key is None:
            if len(_ID_KEYS) >= ID_KEYS_KEPT:
                _ID_KEYS.clear()
            id_key = _ID_KEYS[originator_id] = b',"originator_id":"%s","originator_version":' % (
                str(originator_id).encode()
            )
        try:
            # What cls.model_validate_json does, without its Python frame (once per event).
            return cls.__pydantic_validator__.validate_json(
                b"%s%s%d}" % (data[:-1], id_key, version)
            )
        except (ValidationError, AttributeError, KeyError, TypeError, ValueError):
            return None

    def event_from_state(self, stored_event: StoredEvent, state: dict[str, Any]) -> Any:
        """The event from its already decoded ``state`` (which is upcast in place)."""
        cls = self.event_class(stored_event)
        try:
            upcast(cls, state)
            originator_id = stored_event.originator_id
            if type(originator_id) is not UUID:
                originator_id = UUID(str(originator_id))
            state["originator_id"] = originator_id  # the row's, over anything stored
            state["originator_version"] = stored_event.originator_version
            return cls.model_validate(state)
        except (ValidationError, AttributeError, KeyError, TypeError, ValueError) as e:
            raise _error(stored_event, f"does not fit {cls.__qualname__}: {e}") from e

    def decode_state(self, stored_event: StoredEvent) -> dict[str, Any]:
        """The JSON state as it was written (decrypted, decompressed, not upcast)."""
        try:
            data = stored_event.state
            if self.cipher:
                data = self.cipher.decrypt(data)
            state = self.transcoder.decode(inflate(data))
        except Exception as e:
            reason = f"cannot be decoded (wrong cipher key or corrupt row?): {e}"
            raise _error(stored_event, reason) from e
        if not isinstance(state, dict):
            raise _error(stored_event, "state is not a JSON object")
        return state

    @staticmethod
    def event_class(stored_event: StoredEvent) -> type[DomainEvent]:
        """The class a stored event's topic names (without decoding its state)."""
        cls = _EVENT_CLASSES.get(stored_event.topic)
        if cls is not None:
            return cls
        try:
            cls = resolve_topic(stored_event.topic)
        except TopicError:
            raise UnknownTopicError(
                stored_event.originator_id, stored_event.originator_version, stored_event.topic
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, DomainEvent)):
            raise _error(stored_event, f"topic names {cls!r}, not an agentlog event")
        _EVENT_CLASSES[stored_event.topic] = cls
        return cls


_EVENT_CLASSES: dict[str, type[DomainEvent]] = {}
"""Topics resolved to event classes (a topic names one class for good)."""

ID_KEYS_KEPT = 4096
"""Agents whose id's JSON :meth:`PydanticMapper.read_direct` keeps (then it starts over):
building it is a tenth of an event's decode, and a batch mostly reads a few agents."""
_ID_KEYS: dict[UUID, bytes] = {}


def upcast(cls: type[DomainEvent], state: dict[str, Any]) -> None:
    """Upcast stored state in place, ``upcast_vN_vN+1`` by ``upcast_vN_vN+1``."""
    version = state.pop("class_version", 1)
    while version < cls.class_version:
        getattr(cls, f"upcast_v{version}_v{version + 1}")(state)
        version += 1


def _error(stored_event: StoredEvent, reason: str) -> StoredEventError:
    return StoredEventError(
        stored_event.originator_id, stored_event.originator_version, stored_event.topic, reason
    )
