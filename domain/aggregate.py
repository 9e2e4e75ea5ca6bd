"""The base every agentlog aggregate stands on: pydantic events with stable topics,
actor and causation on every event, a hash chain, and snapshots of bounded state."""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any, ClassVar, Self, cast
from uuid import UUID
from weakref import WeakKeyDictionary, WeakSet

import eventsourcing.domain as es
from eventsourcing.domain import ProgrammingError
from eventsourcing.utils import TopicError, get_topic, register_topic, resolve_topic
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError, model_validator

from agentlog.domain.chain import GENESIS, canonical, event_digest, sealed_json
from agentlog.domain.errors import InvalidEventDataError, StaleSnapshotError, UnknownTopicError

_LIBRARY_ATTRS = ("_id", "_version", "_pending_events", "_created_on", "_modified_on")
_UNPINNED: WeakSet[type[DomainEvent]] = WeakSet()
"""Event classes that declared no topic and have not been given their aggregate's."""
_TRIGGERABLE: WeakKeyDictionary[type[Any], Callable[[dict[str, Any]], Any] | None] = (
    WeakKeyDictionary()
)
"""Event classes found fit to trigger (their topic resolves to them: it stays so), each
with its pydantic validator where the class keeps pydantic's ``__init__`` (what that
``__init__`` runs, without its frame), else None (the class is called)."""
_UNCHECKED: Any = object()
_SEALED = "_agentlog_sealed"
"""Where an event keeps the state it was sealed from (in its ``__dict__``, which is no
field: pydantic's equality, iteration and dumps ignore it)."""


class DomainEvent(BaseModel):
    """A stored fact: frozen, typed, with an explicit topic and a class version.

    ``TOPIC`` is the string stored with the event; it must never change, so that moving
    or renaming a module never orphans old logs. An event nested in an aggregate that
    does not declare one gets the aggregate's topic with its own name added
    (``support:SupportAgent@1`` -> ``support:SupportAgent.TaskStarted@1``): this is how
    the events a subclass inherits get pinned topics without being re-declared. Other
    classes get ``module:QualName``, which is what the library would use.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    TOPIC: ClassVar[str]
    class_version: ClassVar[int] = 1

    originator_id: UUID
    originator_version: int
    timestamp: datetime

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "TOPIC" in cls.__dict__:
            register_topic(cls.TOPIC, cls)  # resolvable as soon as its module is imported
        else:
            cls.TOPIC = f"{cls.__module__}:{cls.__qualname__}"
            _UNPINNED.add(cls)  # until its aggregate pins it (Aggregate.__init_subclass__)

    def stored_state(self) -> dict[str, JsonValue]:
        """The JSON state the mapper stores (id and version live in the row)."""
        # ``model_dump(mode="json")`` without its per-call Python overhead (same options).
        state: dict[str, JsonValue] = type(self).__pydantic_serializer__.to_python(
            self, mode="json"
        )
        state.pop("originator_id", None)  # in the row (a custom serializer may drop them)
        state.pop("originator_version", None)
        if self.class_version > 1:
            state["class_version"] = self.class_version
        return state


class Aggregate(es.Aggregate):
    """Base aggregate: subclass it to model your own agent domain.

    Declare ``TOPIC`` (the aggregate's stable name), nested event classes that subclass
    ``Event`` (each with its own ``TOPIC``), and a ``State`` model listing the public
    attributes, which is what snapshots store.
    """

    TOPIC: ClassVar[str] = "agentlog:Aggregate@1"
    State: ClassVar[type[BaseModel]]
    SNAPSHOT_SCHEMA: ClassVar[int] = 1
    """Bump when the state gains something only a replay can compute: older snapshots
    are then skipped (the aggregate is replayed from its events) instead of upcast."""
    head_hash: str

    class Event(DomainEvent, es.CanMutateAggregate[UUID]):
        """An event of an agentlog aggregate: who did it, why, and its place in the chain."""

        actor: str
        caused_by: int | None = None
        prev_hash: str = GENESIS
        digest: str = ""

        @model_validator(mode="after")
        def _seal(self) -> Self:
            if not self.digest:
                state = self.stored_state()
                if "digest" not in state:  # a serializer of its own dropped it
                    object.__setattr__(self, "digest", self._digest_of(state))
                    return self
                # What the mapper stores: the state hashed, now with its digest, as
                # canonical JSON (hashed and stored from one encoding, where it can).
                id_, version = id_text(self.originator_id), self.originator_version
                sealed = sealed_json(self.TOPIC, id_, version, state)
                if sealed is None:
                    digest = event_digest(self.TOPIC, id_, version, state)
                    state["digest"] = digest
                    sealed = digest, canonical(state)
                object.__setattr__(self, "digest", sealed[0])
                state["digest"] = sealed[0]
                self.__dict__[_SEALED] = (id(self), state, sealed[1])
            return self

        def compute_digest(self) -> str:
            """SHA-256 of this event as stored, chaining it to its predecessor."""
            return self._digest_of(self.stored_state())

        def _digest_of(self, state: dict[str, JsonValue]) -> str:
            originator_id = id_text(self.originator_id)
            return event_digest(self.TOPIC, originator_id, self.originator_version, state)

        def sealed(self) -> dict[str, JsonValue] | None:
            """The state this event was sealed from, with its digest: what ``stored_state()``
            gives, already built (the mapper stores it); read it, never change it. None if
            this event was not sealed here (it was read from the store), or is a copy of
            one that was (``model_copy``, ``deepcopy``: another object), or its digest is
            no longer the one it was sealed with."""
            sealed = self.__dict__.get(_SEALED)
            if sealed is None or sealed[0] != id(self):
                return None
            state: dict[str, JsonValue] = sealed[1]
            return state if state["digest"] == self.digest else None

        def pop_sealed(self) -> dict[str, JsonValue] | None:
            """``sealed()``, forgotten: the mapper stores it once, and events kept in
            memory (a worker keeps the last ones of each agent) do not carry it on."""
            state = self.sealed()
            self.__dict__.pop(_SEALED, None)
            return state

        def pop_sealed_json(self) -> bytes | None:
            """The canonical JSON bytes of ``sealed()`` (what the mapper stores: the very
            bytes its digest was computed from, with the digest in place), forgotten as
            by ``pop_sealed``; None when ``sealed()`` is."""
            sealed = self.__dict__.pop(_SEALED, None)  # as pop_sealed(), in one frame
            if sealed is None or sealed[0] != id(self) or sealed[1]["digest"] != self.digest:
                return None
            data: bytes = sealed[2]
            return data

        def mutate(self, aggregate: Any) -> Any:
            """Apply the event, then move the aggregate's chain head to it."""
            result = super().mutate(aggregate)
            assert result is not None  # mutate() always returns the aggregate it applied to
            result.head_hash = self.digest
            return result

    class Created(Event, es.CanInitAggregate[UUID]):
        """The first event of an aggregate."""

        TOPIC: ClassVar[str] = "agentlog:Aggregate.Created@1"
        originator_topic: str

    class Snapshot(DomainEvent, es.CanSnapshotAggregate[UUID]):
        """The bounded state of an aggregate at a version."""

        TOPIC: ClassVar[str] = "agentlog:Snapshot@1"
        topic: str
        state: dict[str, JsonValue]

        @classmethod
        def take(cls, aggregate: Any) -> Self:
            """Snapshot the aggregate's state through its ``State`` model."""
            return cls(
                originator_id=aggregate.id,
                originator_version=aggregate.version,
                timestamp=cls.create_timestamp(),
                topic=get_topic(type(aggregate)),
                state=aggregate.snapshot_state(),
            )

        def mutate(self, _: Any) -> Any:
            """Rebuild the aggregate this snapshot was taken of."""
            try:
                aggregate_class = resolve_topic(self.topic)
            except TopicError:
                raise UnknownTopicError(
                    self.originator_id, self.originator_version, self.topic
                ) from None
            return aggregate_class.from_snapshot_state(
                self.originator_id, self.originator_version, dict(self.state)
            )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "TOPIC" not in cls.__dict__:
            cls.TOPIC = f"{cls.__module__}:{cls.__qualname__}"
        super().__init_subclass__(**kwargs)
        _pin_event_topics(cls)

    def collect_events(self) -> list[Aggregate.Event]:
        """Pending events, removed from the aggregate (what ``save`` stores)."""
        return cast(list[Aggregate.Event], super().collect_events())

    def trigger_event(self, event_class: type[Any], **kwargs: Any) -> None:
        """Trigger an event chained to the current head; data no event can hold (a lone
        surrogate, NaN, a wrong type) is refused with :class:`InvalidEventDataError`.

        What the library's ``trigger_event`` does (its checks of the class, once per
        class), without copying the arguments on the way."""
        validate = _TRIGGERABLE.get(event_class, _UNCHECKED)
        if validate is _UNCHECKED:
            validate = _check_triggerable(event_class)
        if kwargs.get("timestamp") is None:
            kwargs["timestamp"] = event_class.create_timestamp()
        try:
            try:
                data = dict(
                    originator_id=self.id,
                    originator_version=self._version + 1,
                    prev_hash=self.head_hash,
                    **kwargs,
                )
                event = event_class(**data) if validate is None else validate(data)
            except TypeError as e:
                msg = f"Can't construct event {event_class}: {e}"
                raise TypeError(msg) from None
            event.mutate(self)
        except (ValidationError, ValueError) as e:
            name = getattr(event_class, "__name__", str(event_class))
            raise InvalidEventDataError(self.id, name, str(e).splitlines()[0]) from e
        self._pending_events.append(event)

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        """A copy that shares immutable attribute values and deep-copies the rest.

        The library deep-copies every agent it hands out of a worker's cache; an agent's
        attributes are mostly immutable (strings, numbers, times, ids, frozen values), so
        only containers and unknown types are copied, as ``copy.deepcopy`` would.
        """
        twin = object.__new__(type(self))
        memo[id(self)] = twin
        twin.__dict__.update(
            {
                k: v if type(v) in _IMMUTABLE or _is_frozen_value(v) else deepcopy(v, memo)
                for k, v in self.__dict__.items()
            }
        )
        return twin

    def state(self) -> dict[str, Any]:
        """The aggregate's public attributes (what replay must reproduce exactly)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def snapshot_state(self) -> dict[str, JsonValue]:
        """The JSON state a snapshot stores, validated by the ``State`` model."""
        state: dict[str, JsonValue] = (
            type(self).State.model_validate(self.state()).model_dump(mode="json")
        )
        state.update(self.snapshot_extras())
        return state

    def snapshot_extras(self) -> dict[str, JsonValue]:
        """What a snapshot stores beside the ``State`` model's fields: the times, the
        snapshot schema and (past 1) the class version, in that order."""
        extras: dict[str, JsonValue] = {
            "_created_on": self.created_on.isoformat(),
            "_modified_on": self.modified_on.isoformat(),
            "_schema": type(self).SNAPSHOT_SCHEMA,
        }
        if getattr(type(self), "class_version", 1) > 1:
            extras["class_version"] = type(self).class_version  # type: ignore[attr-defined]
        return extras

    @classmethod
    def validated_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        """Public attributes from stored JSON state: upcast from its ``class_version``
        (if older), then validated by the ``State`` model."""
        from_version = state.pop("class_version", 1)
        while from_version < getattr(cls, "class_version", 1):
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        return dict(cls.State.model_validate(state))

    @classmethod
    def from_snapshot_state(cls, agg_id: UUID, version: int, state: dict[str, Any]) -> Self:
        """Rebuild an aggregate from snapshot state, upcasting old state first.

        Raises :class:`StaleSnapshotError` for a snapshot older than ``SNAPSHOT_SCHEMA``.
        """
        if state.pop("_schema", 1) < cls.SNAPSHOT_SCHEMA:
            raise StaleSnapshotError(agg_id, version)
        times = {k: datetime.fromisoformat(state.pop(k)) for k in ("_created_on", "_modified_on")}
        public = cls.validated_state(state)
        aggregate = object.__new__(cls)
        aggregate.__dict__.update(public, _id=agg_id, _version=version, _pending_events=[])
        aggregate.__dict__.update(times)
        return aggregate


ID_TEXTS_KEPT = 4096
"""Aggregates whose id's text :func:`id_text` keeps (then it starts over)."""
_ID_TEXTS: dict[UUID, str] = {}


def id_text(originator_id: UUID) -> str:
    """``str(originator_id)``, kept for the aggregates seen last: every event's digest
    hashes its aggregate's id as text, and ``UUID.__str__`` is Python code costing about
    a tenth of a small event's seal."""
    text = _ID_TEXTS.get(originator_id)
    if text is None:
        if len(_ID_TEXTS) >= ID_TEXTS_KEPT:
            _ID_TEXTS.clear()
        text = _ID_TEXTS[originator_id] = str(originator_id)
    return text


def _check_triggerable(event_class: type[Any]) -> Callable[[dict[str, Any]], Any] | None:
    """The library's checks of a class before it triggers an event of it (raising
    ``ProgrammingError``); a class that passes them is remembered, with what makes its
    events (see ``_TRIGGERABLE``)."""
    if event_class.__name__ == "Event":
        msg = "Triggering base 'Event' class is prohibited."
        raise ProgrammingError(msg)
    es._check_explicit_topic_is_registered(event_class)  # the library's own check
    plain = isinstance(event_class, type) and issubclass(event_class, BaseModel)
    plain = plain and event_class.__init__ is BaseModel.__init__
    validate = event_class.__pydantic_validator__.validate_python if plain else None
    _TRIGGERABLE[event_class] = validate
    return validate


def _pin_event_topics(aggregate: type[Aggregate]) -> None:
    """Give the aggregate's events that declare no topic (those the library re-derived
    from a base aggregate's, and new ones) the aggregate's topic plus their name. The
    topic they had (``module:QualName``) keeps resolving to them, for logs written
    before their aggregate pinned it."""
    stem, at, suffix = aggregate.TOPIC.rpartition("@")
    if not at:
        stem, suffix = aggregate.TOPIC, ""
    for name, value in list(vars(aggregate).items()):
        if value in _UNPINNED and value.__qualname__ == f"{aggregate.__qualname__}.{name}":
            if name != "Event":
                value.TOPIC = f"{stem}.{name}{at}{suffix}"
                register_topic(value.TOPIC, value)
            _UNPINNED.discard(value)


_IMMUTABLE: frozenset[type] = frozenset(
    {str, int, float, bool, bytes, type(None), UUID, datetime, date, timedelta}
)


def _is_frozen_value(value: Any) -> bool:
    """An enum member or a frozen pydantic value: never changed in place."""
    return isinstance(value, Enum) or (
        isinstance(value, BaseModel) and bool(value.model_config.get("frozen"))
    )
