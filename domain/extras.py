"""Events that keep what an import carried and agentlog has no field for."""

from __future__ import annotations

from pydantic import Field, JsonValue, field_validator

from agentlog.domain.aggregate import DomainEvent


class KeepsExtra(DomainEvent):
    """Mixin of events recorded from imported chat messages (put it first in the bases).

    ``extra`` is stored only when it holds something, so events without it are stored,
    and hashed, exactly as before the field existed.
    """

    extra: dict[str, JsonValue] = Field(default_factory=dict)
    """Keys of an imported message that no field of the event gives back as they were
    (unknown keys, content as a list of parts, ...), kept as they came."""

    @field_validator("extra", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        # Aggregate constructors pass their parameters' defaults (None) on to Created.
        return {} if value is None else value

    def stored_state(self) -> dict[str, JsonValue]:
        """The JSON state the mapper stores, without an empty ``extra``."""
        state = super().stored_state()
        if not self.extra:
            del state["extra"]
        return state
