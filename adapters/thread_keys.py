"""Per-thread keys for erasable LangGraph threads (crypto-shredding).

An erasable ``AgentLogSaver`` encrypts every payload of a thread (AES-GCM) with a key of
that thread's current generation, kept in the table ``agentlog_thread_keys`` beside the
log, never in it. ``delete_thread`` records ``ThreadDeleted`` and then destroys the
thread's keys: the events stay (the chain still verifies) but their payloads can no
longer be read by anyone. The keys are not exported: an export of an erasable thread
carries ciphertext only.
"""

from __future__ import annotations

import os
from typing import Any

from Crypto.Cipher import AES
from langgraph.checkpoint.serde.base import SerializerProtocol
from sqlalchemy import Column, LargeBinary, MetaData, String, Table, delete, insert, select
from sqlalchemy.exc import IntegrityError

from agentlog.adapters.storage import engine_for

SUFFIX = "+aesgcm"
_NONCE, _TAG = 12, 16
_METADATA = MetaData()
KEYS = Table(
    "agentlog_thread_keys",
    _METADATA,
    Column("key_id", String(100), primary_key=True),
    Column("secret", LargeBinary, nullable=False),
)


class ShreddedError(Exception):
    """A payload whose thread key was destroyed (the thread was deleted)."""


class ThreadKeys:
    """The keys of erasable threads, in the store's own database."""

    def __init__(self, url: str) -> None:
        self.engine = engine_for(url)
        _METADATA.create_all(self.engine)
        self._known: dict[str, bytes] = {}

    def find(self, key_id: str) -> bytes | None:
        """The key with this id, or None if it never existed or was destroyed."""
        if key_id not in self._known:
            with self.engine.begin() as conn:
                query = select(KEYS.c.secret).where(KEYS.c.key_id == key_id)
                found = conn.execute(query).scalar()
            if found is None:
                return None
            self._known[key_id] = bytes(found)
        return self._known[key_id]

    def key(self, key_id: str) -> bytes:
        """The key with this id, made if it does not exist yet."""
        if (found := self.find(key_id)) is not None:
            return found
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(KEYS).values(key_id=key_id, secret=os.urandom(32)))
        except IntegrityError:  # another process made it first: use theirs
            pass
        return self.key(key_id)

    def destroy(self, prefix: str) -> None:
        """Destroy every key whose id starts with ``prefix``."""
        with self.engine.begin() as conn:
            conn.execute(delete(KEYS).where(KEYS.c.key_id.startswith(prefix, autoescape=True)))
        self._known = {k: v for k, v in self._known.items() if not k.startswith(prefix)}

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


class ThreadCipher:
    """LangGraph's serializer with AES-GCM around its bytes, under one thread's key."""

    def __init__(self, serde: SerializerProtocol, keys: ThreadKeys, key_id: str) -> None:
        self.serde, self.keys, self.key_id = serde, keys, key_id

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        """Serialize, then encrypt (the type tag gains ``+aesgcm``)."""
        kind, data = self.serde.dumps_typed(obj)
        nonce = os.urandom(_NONCE)
        sealed, tag = AES.new(
            self.keys.key(self.key_id), AES.MODE_GCM, nonce=nonce
        ).encrypt_and_digest(data)
        return kind + SUFFIX, nonce + sealed + tag

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        """Decrypt (if encrypted), then deserialize."""
        kind, blob = data
        if not kind.endswith(SUFFIX):
            return self.serde.loads_typed(data)
        key = self.keys.find(self.key_id)
        if key is None:
            raise ShreddedError(f"the key of {self.key_id} was destroyed: its payloads are gone")
        nonce, sealed, tag = blob[:_NONCE], blob[_NONCE:-_TAG], blob[-_TAG:]
        plain = AES.new(key, AES.MODE_GCM, nonce=nonce).decrypt_and_verify(sealed, tag)
        return self.serde.loads_typed((kind.removesuffix(SUFFIX), plain))
