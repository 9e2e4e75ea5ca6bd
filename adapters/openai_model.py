"""A model behind an OpenAI-compatible chat-completions endpoint, through the official client.

Works with OpenAI and with servers that speak the same protocol (vLLM, Ollama, llama.cpp's
``llama-server``): point ``base_url`` (or ``OPENAI_BASE_URL``) at them. Everything that can
go wrong on the way (HTTP errors, timeouts, an unreachable server, output that is not a
decision) becomes a :class:`ModelCallError` with a kind, which the runtime records as an
event; nothing here crashes a worker.
"""

from __future__ import annotations

import json
import os

import openai
from openai.types import CompletionUsage
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)
from pydantic import JsonValue, ValidationError

from agentlog.domain.ports import Context, Decision, Message, ModelCallError, ToolSpec
from agentlog.domain.values import TokenUsage, ToolCallRequest

DEFAULT_TIMEOUT = 60.0
NO_KEY = "no-key"  # local servers ignore the key, but the client insists on one
_SHOWN = 300  # characters of a server's error text kept in the recorded message


class OpenAIChatModel:
    """Decides by asking a chat-completions endpoint; its tools are the agent's tools."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = 2,
    ) -> None:
        """Unset, ``base_url`` and ``api_key`` come from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``.

        The key may be missing only when a base URL names a server of your own.
        """
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if api_key is None and base_url is None:
            raise ModelCallError("config", "set OPENAI_API_KEY, or OPENAI_BASE_URL for a server")
        self.model, self.timeout = model, timeout
        self.client = openai.OpenAI(
            base_url=base_url,
            api_key=api_key or NO_KEY,
            timeout=timeout,
            max_retries=max_retries,
        )

    @classmethod
    def from_spec(cls, spec: str, base_url: str | None = None) -> OpenAIChatModel:
        """The model named ``spec``, configured from the environment like the official client.

        ``OPENAI_BASE_URL`` (unless ``base_url`` is given), ``OPENAI_API_KEY`` (optional for
        a server of your own), ``AGENTLOG_MODEL_TIMEOUT`` (seconds, default 60).
        """
        return cls(spec, base_url=base_url, timeout=_env_timeout())

    @property
    def name(self) -> str:
        """The model id sent with every request and recorded with every response."""
        return self.model

    def decide(self, context: Context) -> Decision:
        """Ask the endpoint; its answer as a decision, or a :class:`ModelCallError`."""
        return decision_from(self._complete(context))

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    def _complete(self, context: Context) -> object:
        tools = wire_tools(context.tools)
        try:
            return self.client.chat.completions.create(
                model=self.model,
                messages=wire_messages(context.messages),
                tools=tools or openai.omit,
            )
        except openai.APITimeoutError:
            raise ModelCallError("timeout", f"no answer within {self.timeout:g}s") from None
        except openai.APIConnectionError as e:
            cause = f": {e.__cause__}" if e.__cause__ else ""
            raise ModelCallError("connection", f"cannot reach {self.client.base_url}{cause}") from e
        except openai.APIStatusError as e:
            raise ModelCallError("http_error", f"HTTP {e.status_code}: {_detail(e)}") from e
        except (openai.OpenAIError, ValueError) as e:  # ValueError: a body that is not JSON
            raise ModelCallError("bad_output", f"unreadable response: {e}"[:_SHOWN]) from e


def wire_messages(messages: tuple[Message, ...]) -> list[ChatCompletionMessageParam]:
    """Our messages as chat-completions messages."""
    return [_wire_message(m) for m in messages]


def _wire_message(message: Message) -> ChatCompletionMessageParam:
    if message.role == "tool":
        return {"role": "tool", "content": message.content, "tool_call_id": message.call_id or ""}
    if message.role == "assistant" and message.tool_calls:
        calls = [_wire_call(c) for c in message.tool_calls]
        return {"role": "assistant", "content": message.content or None, "tool_calls": calls}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    if message.role == "system":
        return {"role": "system", "content": message.content}
    return {"role": "user", "content": message.content}


def _wire_call(call: ToolCallRequest) -> ChatCompletionMessageFunctionToolCallParam:
    arguments = json.dumps(call.args, ensure_ascii=False)
    return {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.tool, "arguments": arguments},
    }


def wire_tools(tools: tuple[ToolSpec, ...]) -> list[ChatCompletionFunctionToolParam]:
    """Our tool specs as function tools with JSON-schema parameters."""
    return [
        {
            "type": "function",
            "function": {
                "name": t.name,
                "description": t.description,
                "parameters": dict[str, object](t.parameters),
            },
        }
        for t in tools
    ]


def decision_from(response: object) -> Decision:
    """The decision in a chat completion; ``bad_output`` if it holds none."""
    if not isinstance(response, ChatCompletion):
        raise ModelCallError("bad_output", f"not a chat completion: {str(response)[:_SHOWN]!r}")
    try:
        return _decision(response)
    except (AttributeError, TypeError, KeyError, ValidationError) as e:
        raise ModelCallError("bad_output", f"malformed chat completion: {e}"[:_SHOWN]) from e


def _decision(response: ChatCompletion) -> Decision:
    if not isinstance(response.choices, list) or not response.choices:
        raise ModelCallError("bad_output", "the response has no choices")
    choice = response.choices[0]
    calls = tuple(_tool_call(c) for c in choice.message.tool_calls or ())
    return Decision(
        text=choice.message.content or "",
        tool_calls=calls,
        done=choice.finish_reason == "stop" and not calls,
        usage=_usage(response.usage),
        finish_reason=choice.finish_reason,
    )


def _usage(usage: CompletionUsage | None) -> TokenUsage:
    if usage is None:
        return TokenUsage()  # some servers do not count
    return TokenUsage(prompt=usage.prompt_tokens or 0, completion=usage.completion_tokens or 0)


def _tool_call(call: object) -> ToolCallRequest:
    if not isinstance(call, ChatCompletionMessageFunctionToolCall):
        raise ModelCallError("bad_output", f"not a function tool call: {str(call)[:_SHOWN]}")
    name = call.function.name
    return ToolCallRequest(
        call_id=call.id, tool=name, args=_arguments(name, call.function.arguments)
    )


def _arguments(tool: str, raw: object) -> dict[str, JsonValue]:
    """A call's arguments: a JSON object, sent as a string (some servers send the object)."""
    if isinstance(raw, str):
        if not raw.strip():
            return {}  # some servers send "" for a function without parameters
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ModelCallError("bad_output", f"arguments of {tool} are not JSON: {e}") from e
    if not isinstance(raw, dict):
        raise ModelCallError(
            "bad_output", f"arguments of {tool} are not a JSON object: {raw!r}"[:_SHOWN]
        )
    return raw


def _detail(error: openai.APIStatusError) -> str:
    body = error.body
    message = body.get("message") if isinstance(body, dict) else body
    return str(message or error.message)[:_SHOWN]


def _env_timeout() -> float:
    raw = os.environ.get("AGENTLOG_MODEL_TIMEOUT")
    try:
        timeout = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise ModelCallError("config", f"AGENTLOG_MODEL_TIMEOUT={raw!r} is not seconds") from None
    if not timeout > 0:
        raise ModelCallError("config", f"AGENTLOG_MODEL_TIMEOUT={raw!r} must be above 0")
    return timeout
