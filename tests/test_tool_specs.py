"""What the model is told about a tool is built once, not every turn (a worker builds a
runtime per turn), and never mixed up between tools."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, JsonValue

from agentlog.domain.runtime import tool_spec
from agentlog.domain.values import EffectClass, Policy


class Counted(BaseModel):
    """Arguments whose schema counts how often it is built."""

    builds: ClassVar[int] = 0
    path: str

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        Counted.builds += 1
        return super().model_json_schema(*args, **kwargs)


class Other(BaseModel):
    """Other arguments."""

    count: int


class Tool:
    """A pure tool that does nothing, with the given name, description and arguments."""

    effect = EffectClass.PURE
    policy = Policy.ALLOW

    def __init__(self, name: str, description: str, args_model: type[BaseModel]) -> None:
        self.name, self.description, self.args_model = name, description, args_model

    def run(self, args: BaseModel, idempotency_key: str) -> JsonValue:
        return None

    def reconcile(self, idempotency_key: str) -> bool | None:
        return None


def test_a_tools_spec_is_built_once_however_many_runtimes_ask() -> None:
    before = Counted.builds
    specs = [tool_spec(Tool("read", "Read a file.", Counted)) for _ in range(5)]
    assert Counted.builds == before + 1
    assert specs[0].parameters["required"] == ["path"]
    assert all(spec == specs[0] for spec in specs)


def test_tools_that_differ_get_their_own_specs() -> None:
    read = tool_spec(Tool("read", "Read a file.", Counted))
    described = tool_spec(Tool("read", "Read a text file.", Counted))
    renamed = tool_spec(Tool("cat", "Read a file.", Counted))
    other = tool_spec(Tool("read", "Read a file.", Other))
    assert described.description == "Read a text file."
    assert renamed.name == "cat"
    assert other.parameters["required"] == ["count"]
    assert read.parameters != other.parameters
