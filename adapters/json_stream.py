"""Reading big JSON documents one value at a time (the standard library's decoder only).

A chat transcript can be one JSON list of thousands of messages, or an object whose
``messages`` list is; reading it whole would hold it all in memory. ``JsonStream``
holds the unread part of one value: it decodes each element with
``JSONDecoder.raw_decode`` and reads more text (in growing pieces) when a value runs
past what it has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

CHUNK = 1 << 16


class JsonStreamError(ValueError):
    """The text is not the JSON expected here."""


class JsonStream:
    """A cursor over JSON text read from ``file`` piece by piece."""

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.buf, self.pos, self.eof = "", 0, False
        self.decoder = json.JSONDecoder()

    def peek(self) -> str:
        """The next character that is not whitespace ("" at the end)."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buf) or not self._fill(CHUNK):
                return self.buf[self.pos : self.pos + 1]

    def take(self, char: str) -> None:
        """Consume ``char`` (after whitespace), or raise."""
        found = self.peek()
        if found != char:
            raise JsonStreamError(f"expected {char!r}, found {found or 'the end'!r}")
        self.pos += 1

    def value(self) -> Any:
        """The next whole JSON value."""
        self.peek()
        size = CHUNK
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self._fill(size):
                    size *= 2  # a long value: read it in fewer, larger pieces
                    continue
                raise JsonStreamError(str(e)) from None
            if end == len(self.buf) and self._fill(size):
                size *= 2  # a number may go on past what was read
                continue
            self.pos = end
            return value

    def array_items(self) -> Iterator[Any]:
        """The elements of the array that starts here, one at a time."""
        self.take("[")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            if self.peek() == "]":
                self.pos += 1
                return
            self.take(",")

    def object_keys(self) -> Iterator[str]:
        """The keys of the object that starts here; read each key's value before the next."""
        self.take("{")
        if self.peek() == "}":
            self.pos += 1
            return
        while True:
            key = self.value()
            if not isinstance(key, str):
                raise JsonStreamError("an object key must be a string")
            self.take(":")
            yield key
            if self.peek() == "}":
                self.pos += 1
                return
            self.take(",")

    def _fill(self, size: int) -> bool:
        """Read up to ``size`` more characters; False at the end of the file."""
        if self.eof:
            return False
        more = self.file.read(size)
        if not more:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + more
        self.pos = 0
        return True
