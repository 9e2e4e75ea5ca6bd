"""The shapes agent harnesses write chat transcripts in, read one message at a time.

A JSON list of messages, JSON Lines (one message a line), or a JSON object with a
``messages`` list and other keys (metadata). The file is read twice: once to learn its
shape and metadata (wherever in the object they are), once to hand out the messages;
standard input is copied to a temporary file first. Memory holds one message.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from agentlog.adapters.json_stream import JsonStream, JsonStreamError
from agentlog.domain.errors import ImportFileError


class ChatFile:
    """A transcript file: its metadata (``None`` unless an object) and its messages."""

    def __init__(self, file: IO[bytes]) -> None:
        if not file.seekable():
            copy = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the ChatFile
            shutil.copyfileobj(file, copy)
            copy.seek(0)
            file = copy
        self.text = io.TextIOWrapper(file, encoding="utf-8-sig", newline="")
        self.shape, self.metadata = self._survey()

    def messages(self) -> Iterator[tuple[int, Any]]:
        """Each message with its number (1, 2, ...); the messages are not checked here."""
        self.text.seek(0)
        stream = JsonStream(self.text)
        number = 0
        try:
            for number, message in enumerate(self._values(stream), 1):
                yield number, message
        except (JsonStreamError, UnicodeDecodeError) as e:
            raise ImportFileError(number + 1, f"not JSON: {e}", unit="message") from None

    def close(self) -> None:
        """Close the file (and the temporary copy of standard input)."""
        self.text.close()

    def _values(self, stream: JsonStream) -> Iterator[Any]:
        if self.shape == "list":
            yield from stream.array_items()
        elif self.shape == "object":
            for key in stream.object_keys():
                if key == "messages":
                    yield from stream.array_items()
                else:
                    stream.value()
        else:
            while stream.peek():
                yield stream.value()

    def _survey(self) -> tuple[str, dict[str, Any] | None]:
        stream = JsonStream(self.text)
        try:
            first = stream.peek()
            if first == "[":
                return "list", None
            if first != "{":
                raise JsonStreamError("a transcript is a JSON list, JSON Lines or an object")
            metadata: dict[str, Any] = {}
            has_messages = False
            for key in stream.object_keys():
                if key == "messages" and stream.peek() == "[":
                    has_messages = True
                    for _ in stream.array_items():
                        pass
                else:
                    metadata[key] = stream.value()
            return ("object", metadata) if has_messages else ("lines", None)
        except (JsonStreamError, UnicodeDecodeError) as e:
            raise ImportFileError(None, f"not a chat transcript: {e}") from None
