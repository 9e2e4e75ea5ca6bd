"""Encryption of the views' sensitive columns, with the log's own cipher.

A store opened with a cipher key encrypts its events and snapshots; the views hold
copies of what those events say (goals, messages, tool arguments, results), so their
sensitive columns are encrypted with the same cipher (AES-GCM), as base64 text. Columns
the views are queried by (ids, tool names, actors, decisions, effect classes, times)
stay plain. Without a key, a :class:`Seal` leaves text as it is.

The key check (``agentlog_key_check``) guarantees that a store is opened with the key it
was created with, or without one if it has none: every build of a view was written with
the same key, so a reader never has to guess whether a value is sealed.
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode

from eventsourcing.persistence import Cipher

from agentlog.projections.errors import SealedValueError


class Seal:
    """Seals text for a view's sensitive column, and opens it again (identity without
    a cipher)."""

    def __init__(self, cipher: Cipher | None = None) -> None:
        self.cipher = cipher

    @property
    def on(self) -> bool:
        """Whether text is encrypted."""
        return self.cipher is not None

    def close(self, text: str | None) -> str | None:
        """``text`` as the column holds it: encrypted (base64) with a cipher."""
        if text is None or self.cipher is None:
            return text
        return b64encode(self.cipher.encrypt(text.encode())).decode("ascii")

    def open(self, stored: str | None) -> str | None:
        """The text a column holds, decrypted with a cipher."""
        if stored is None or self.cipher is None:
            return stored
        try:
            sealed = b64decode(stored, validate=True)
        except binascii.Error:
            raise SealedValueError("it is not encrypted") from None
        try:
            return self.cipher.decrypt(sealed).decode()
        except (ValueError, UnicodeDecodeError):  # AES-GCM's tag does not verify
            raise SealedValueError("it was encrypted with another key") from None


PLAIN = Seal()
"""The seal of a store without a cipher key."""
