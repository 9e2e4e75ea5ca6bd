"""A local HTTP server speaking the chat-completions wire protocol, for tests.

It serves ``POST /v1/chat/completions`` on 127.0.0.1 (a free port) from a queue of
scripted replies, and records every request it received so tests can check what the
client sent. Past the end of the script it answers an error, or the one reply it was
given as ``otherwise`` (a model that always says the same). Use it as a context manager:
leaving the block stops it, and wakes any reply that was still sleeping to simulate a
slow model.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, body, content type, extra headers, delay before it."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    path: str
    headers: Mapping[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages the client sent."""
        messages: list[dict[str, Any]] = self.body["messages"]
        return messages


def completion(message: dict[str, Any], finish_reason: str | None, usage: tuple[int, int]) -> Reply:
    """A well-formed chat completion with one choice (some servers send a null reason)."""
    prompt, done = usage
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": done,
            "total_tokens": prompt + done,
        },
    }
    return json_reply(body)


def text_reply(
    text: str | None, *, finish_reason: str | None = "stop", usage: tuple[int, int] = (10, 5)
) -> Reply:
    """The model answers with text, or None: no content at all (by default: and stops)."""
    return completion({"role": "assistant", "content": text}, finish_reason, usage)


def tool_call(call_id: str, name: str, arguments: str | dict[str, Any]) -> dict[str, Any]:
    """One tool call on the wire; dict arguments are encoded as the JSON string they travel as."""
    encoded = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": encoded}}


def tool_calls_reply(
    *calls: dict[str, Any],
    text: str | None = None,
    finish_reason: str = "tool_calls",
    usage: tuple[int, int] = (20, 8),
) -> Reply:
    """The model asks for tool calls (built with :func:`tool_call`)."""
    message = {"role": "assistant", "content": text, "tool_calls": list(calls)}
    return completion(message, finish_reason, usage)


def error_reply(status: int, message: str, *, kind: str = "server_error") -> Reply:
    """An HTTP error with an OpenAI-style error body (no client retry delay)."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return json_reply(body, status=status, headers={"retry-after-ms": "1"})


def slow_reply(delay: float, then: Reply | None = None) -> Reply:
    """A reply that comes only after ``delay`` seconds (or never, if the server stops first)."""
    reply = then or text_reply("too late")
    return Reply(reply.body, reply.status, reply.content_type, reply.headers, delay)


def json_reply(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    """Any JSON body."""
    return Reply(json.dumps(body).encode(), status=status, headers=headers or {})


def raw_reply(body: bytes, *, content_type: str = "application/json", status: int = 200) -> Reply:
    """Any bytes, e.g. a body that is not JSON although it says it is."""
    return Reply(body, status=status, content_type=content_type)


NO_REPLY_LEFT = error_reply(500, "fake server: no scripted reply left")


class FakeChatServer:
    """A chat-completions server on loopback that replies from a script."""

    def __init__(self, replies: Iterable[Reply] = (), *, otherwise: Reply | None = None) -> None:
        self.requests: list[Request] = []
        self._replies: deque[Reply] = deque(replies)
        self._otherwise = otherwise or NO_REPLY_LEFT
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._serve, name="fake-chat-server")

    @property
    def base_url(self) -> str:
        """What to give the client as ``base_url``."""
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def queue(self, *replies: Reply) -> None:
        """Add replies to the end of the script."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def pending(self) -> int:
        """Replies not yet served."""
        with self._lock:
            return len(self._replies)

    def __enter__(self) -> FakeChatServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def _serve(self) -> None:
        self._http.serve_forever(poll_interval=0.01)  # a short poll: stopping is quick

    def answer(self, request: Request) -> Reply:
        """Record the request; the next scripted reply (``otherwise`` when the script is over)."""
        with self._lock:
            self.requests.append(request)
            return self._replies.popleft() if self._replies else self._otherwise

    def wait(self, seconds: float) -> None:
        """Sleep, but wake up when the server stops."""
        self._stopping.wait(seconds)


def _handler_for(server: FakeChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != PATH:
                self._send(error_reply(404, f"no route {self.path}"))
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = server.answer(Request(self.path, headers, json.loads(body)))
            server.wait(reply.delay)
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)
            except OSError:
                pass  # the client gave up (its timeout): nobody is listening any more

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read ``server.requests`` instead."""

    return Handler
