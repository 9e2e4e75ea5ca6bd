"""Built-in tools and the registry: real tools for the demo and for users to start from.

Each declares its effect class and default permission policy. ``read_file`` and
``calculator`` are pure; ``clock`` is idempotent; ``write_file`` is side-effecting, asks
a person by default, and can ``reconcile``: it keeps a journal so that after a crash it
can tell whether a write with a given idempotency key happened.
"""

from __future__ import annotations

import ast
import hashlib
import operator
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field, JsonValue

from agentlog.domain.ports import Tool
from agentlog.domain.values import EffectClass, Policy


class ToolRegistry(dict[str, Tool]):
    """Tools by name."""

    @classmethod
    def of(cls, tools: Iterable[Tool]) -> ToolRegistry:
        """A registry of the given tools (names must be unique)."""
        registry = cls()
        for tool in tools:
            if tool.name in registry:
                raise ValueError(f"two tools are named {tool.name!r}")
            registry[tool.name] = tool
        return registry


class Sandbox:
    """A folder the file tools may not leave."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, relative: str) -> Path:
        """The file inside the sandbox; anything that escapes it is refused."""
        target = (self.root / relative).resolve()
        if not target.is_relative_to(self.root) or target == self.root:
            raise PermissionError(f"{relative!r} is outside the sandbox")
        return target


class PathArgs(BaseModel):
    """A path inside the sandbox."""

    path: str = Field(min_length=1, description="Path relative to the sandbox folder")


class WriteArgs(PathArgs):
    """A path and the text to write there."""

    content: str = Field(description="The whole new content of the file")


class CalcArgs(BaseModel):
    """An arithmetic expression."""

    expression: str = Field(min_length=1, max_length=200, description="e.g. (2 + 3) * 4 / 5")


class NoArgs(BaseModel):
    """No arguments."""


class ReadFile:
    """Read a text file in the sandbox."""

    name = "read_file"
    description = "Read a UTF-8 text file inside the sandbox folder."
    args_model: ClassVar[type[BaseModel]] = PathArgs
    effect = EffectClass.PURE
    policy = Policy.ALLOW

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """The file's text."""
        assert isinstance(args, PathArgs)
        return self.sandbox.path(args.path).read_text()

    def reconcile(self, idempotency_key: str) -> bool | None:
        """Reading leaves no effect to reconcile."""
        return None


class WriteFile:
    """Write a text file in the sandbox, journaled by idempotency key."""

    name = "write_file"
    description = "Write (replace) a UTF-8 text file inside the sandbox folder."
    args_model: ClassVar[type[BaseModel]] = WriteArgs
    effect = EffectClass.SIDE_EFFECTING
    policy = Policy.ASK

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.journal = sandbox.root.parent / f".{sandbox.root.name}-journal"
        self.journal.mkdir(parents=True, exist_ok=True)

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """Write the file; the journal says what was intended, then that it was done."""
        assert isinstance(args, WriteArgs)
        target = self.sandbox.path(args.path)
        entry = self._entry(idempotency_key)
        entry.with_suffix(".intent").write_text(f"{target}\n{_digest(args.content)}\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(args.content)
        entry.with_suffix(".intent").rename(entry.with_suffix(".done"))
        return {"path": args.path, "bytes": len(args.content.encode())}

    def reconcile(self, idempotency_key: str) -> bool | None:
        """True if the write with this key happened, False if it never began, None if it
        began and the file does not hold its content (it may be under way: a person decides)."""
        entry = self._entry(idempotency_key)
        if entry.with_suffix(".done").exists():
            return True
        intent = entry.with_suffix(".intent")
        if not intent.exists():
            return False
        target, digest = intent.read_text().splitlines()
        path = Path(target)
        return True if path.exists() and _digest(path.read_text()) == digest else None

    def _entry(self, key: str) -> Path:
        return self.journal / hashlib.sha256(key.encode()).hexdigest()[:32]


_OPERATORS: dict[type[Any], Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


class Calculator:
    """Evaluate arithmetic (numbers and + - * / // % ** only; no names, no calls)."""

    name = "calculator"
    description = "Evaluate an arithmetic expression with + - * / // % ** and parentheses."
    args_model: ClassVar[type[BaseModel]] = CalcArgs
    effect = EffectClass.PURE
    policy = Policy.ALLOW

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """The expression's value."""
        assert isinstance(args, CalcArgs)
        value = _evaluate(ast.parse(args.expression, mode="eval").body)
        return value if isinstance(value, int | float) else float(value)

    def reconcile(self, idempotency_key: str) -> bool | None:
        """Nothing to reconcile."""
        return None


class Clock:
    """The current time in UTC."""

    name = "clock"
    description = "The current date and time in UTC (ISO 8601)."
    args_model: ClassVar[type[BaseModel]] = NoArgs
    effect = EffectClass.IDEMPOTENT
    policy = Policy.ALLOW

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        """Now, as ISO 8601 text."""
        return datetime.now(UTC).isoformat()

    def reconcile(self, idempotency_key: str) -> bool | None:
        """Nothing to reconcile."""
        return None


def builtin_tools(sandbox_root: Path) -> ToolRegistry:
    """The built-in tools, with the file tools confined to ``sandbox_root``."""
    sandbox = Sandbox(sandbox_root)
    return ToolRegistry.of([ReadFile(sandbox), WriteFile(sandbox), Calculator(), Clock()])


def _evaluate(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:
            raise ValueError("exponent too large")
        return _OPERATORS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError(f"not allowed in an expression: {ast.dump(node)[:40]}")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
