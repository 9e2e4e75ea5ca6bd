"""A field renamed twice (v1 -> v2 -> v3) reads back renamed and converted, from events
and from snapshot state, whatever class version a row was stored at.

The test aggregate's fields have no defaults, so a skipped upcaster (or a chain that
stops one version short) cannot hide behind one: the row fails validation or reads
back wrong. Old rows are written by hand in the shape each old version stored, through
the recorders of a real SQLite file; today's code then continues the same log, and
everything is read back through the production mapper.

Class versions of ``Parcel`` (events and snapshot state alike):
  v1  ``text``, ``weight`` (grams)
  v2  ``label``, ``grams``             (renamed)
  v3  ``caption``, ``weight_kg``       (renamed; grams converted to kilograms)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent
from pydantic import BaseModel, ConfigDict

from agentlog.adapters.mapper import JSONTranscoder, PydanticMapper
from agentlog.adapters.storage import open_log
from agentlog.domain import GENESIS, AgentLog, Aggregate, event_digest


class ParcelState(BaseModel):
    """Every public attribute of a Parcel (snapshot state, class version 3)."""

    model_config = ConfigDict(extra="forbid")

    caption: str
    weight_kg: float
    relabels: int
    head_hash: str


class Parcel(Aggregate):
    """A parcel with a caption that is relabelled now and then."""

    TOPIC: ClassVar[str] = "upcast-chain-test:Parcel@1"
    State: ClassVar[type[BaseModel]] = ParcelState
    class_version: ClassVar[int] = 3

    class Event(Aggregate.Event):
        """Base class of the parcel's events."""

    class Created(Aggregate.Created, Event):
        """The parcel was registered with its caption and weight."""

        TOPIC: ClassVar[str] = "upcast-chain-test:Parcel.Created@1"
        class_version: ClassVar[int] = 3
        caption: str
        weight_kg: float

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """v2 renamed text to label and weight to grams."""
            state["label"] = state.pop("text")
            state["grams"] = state.pop("weight")

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            """v3 renamed label to caption and keeps the weight in kilograms."""
            state["caption"] = state.pop("label")
            state["weight_kg"] = state.pop("grams") / 1000

    class Relabelled(Event):
        """The parcel got a new caption."""

        TOPIC: ClassVar[str] = "upcast-chain-test:Parcel.Relabelled@1"
        class_version: ClassVar[int] = 3
        caption: str

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """v2 renamed text to label."""
            state["label"] = state.pop("text")

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            """v3 renamed label to caption."""
            state["caption"] = state.pop("label")

        def apply(self, parcel: Parcel) -> None:
            parcel.caption = self.caption
            parcel.relabels += 1

    def __init__(
        self, caption: str, weight_kg: float, actor: str = "user", caused_by: int | None = None
    ) -> None:
        self.caption, self.weight_kg, self.relabels = caption, weight_kg, 0

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Snapshot state v2 renamed text to label and weight to grams."""
        state["label"] = state.pop("text")
        state["grams"] = state.pop("weight")

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """Snapshot state v3 renamed label to caption and keeps kilograms."""
        state["caption"] = state.pop("label")
        state["weight_kg"] = state.pop("grams") / 1000

    def relabel(self, caption: str) -> None:
        """Give the parcel a new caption."""
        self.trigger_event(self.Relabelled, caption=caption, actor="clerk")


P = UUID("6f1c1a52-8f6e-4d4b-9a57-0d5c2b1f4e01")  # created by v1, relabelled by v1, v2, v3
Q = UUID("0b9d7e33-21aa-4c0e-8d0e-5a3f6c7b8d02")  # created by v2, relabelled by v2, v3
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

# What each version of the parcel holds, as today's code must read it: exact values, no
# defaults anywhere (1250 g and 800 g were stored by the old versions).
EXPECTED = {
    P: {
        1: ("fragile", 1.25, 0),
        2: ("fragile: glass", 1.25, 1),
        3: ("this side up", 1.25, 2),
        4: ("handle with care", 1.25, 3),
        5: ("keep dry", 1.25, 4),
        6: ("delivered", 1.25, 5),
    },
    Q: {1: ("books", 0.8, 0), 2: ("books, 2 boxes", 0.8, 1), 3: ("books, 3 boxes", 0.8, 2)},
}
STORED_AT = {P: [1, 1, 2, 3, 3, 3], Q: [2, 2, 3]}
"""The class version each event of P and Q is stored at, by version."""
SNAPSHOTS = {2: 1, 3: 2, 5: 3}
"""P's snapshots: version -> class version of their state (v1 and v2 before the upgrade,
v3 taken by today's code after it)."""


def iso(seconds: int) -> str:
    """A timestamp as the mapper stores it."""
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@dataclass
class OldWriter:
    """Writes one aggregate's rows as an old version of the code stored them."""

    agg_id: UUID
    version: int = 0
    head: str = GENESIS

    def event(self, name: str, fields: dict[str, Any], class_version: int) -> StoredEvent:
        """The next event, stored at ``class_version`` (digest over the stored state)."""
        self.version += 1
        topic = f"upcast-chain-test:Parcel.{name}@1"
        state: dict[str, Any] = {
            "timestamp": iso(self.version),
            "actor": "clerk",
            "caused_by": None,
            "prev_hash": self.head,
            **fields,
        }
        if name == "Created":
            state["originator_topic"] = Parcel.TOPIC
        if class_version > 1:
            state["class_version"] = class_version
        self.head = event_digest(topic, str(self.agg_id), self.version, state)
        return self._row(topic, state | {"digest": self.head})

    def snapshot(self, fields: dict[str, Any], class_version: int) -> StoredEvent:
        """A snapshot of the current version whose state is at ``class_version``."""
        state = fields | {
            "head_hash": self.head,
            "_created_on": (T0 + timedelta(seconds=1)).isoformat(),
            "_modified_on": (T0 + timedelta(seconds=self.version)).isoformat(),
        }
        if class_version > 1:
            state |= {"class_version": class_version, "_schema": 1}
        body = {"topic": Parcel.TOPIC, "state": state, "timestamp": iso(self.version)}
        return self._row(Aggregate.Snapshot.TOPIC, body)

    def _row(self, topic: str, state: dict[str, Any]) -> StoredEvent:
        return StoredEvent(self.agg_id, self.version, topic, JSONTranscoder().encode(state))


def write_old_rows(log: AgentLog) -> None:
    """P and Q as versions 1 and 2 of the code left them."""
    assert log.snapshots is not None
    p, q = OldWriter(P), OldWriter(Q)
    events = [
        p.event("Created", {"text": "fragile", "weight": 1250}, 1),
        p.event("Relabelled", {"text": "fragile: glass"}, 1),
    ]
    snapshots = [p.snapshot({"text": "fragile: glass", "weight": 1250, "relabels": 1}, 1)]
    events += [
        p.event("Relabelled", {"label": "this side up"}, 2),
        q.event("Created", {"label": "books", "grams": 800}, 2),
        q.event("Relabelled", {"label": "books, 2 boxes"}, 2),
    ]
    snapshots.append(p.snapshot({"label": "this side up", "grams": 1250, "relabels": 2}, 2))
    log.recorder.insert_events(events)
    log.snapshots.recorder.insert_events(snapshots)


def picked_up_by_todays_code(log: AgentLog, agg_id: UUID, version: int) -> Parcel:
    """The parcel at ``version`` in today's classes, from its known state (not from the
    log, so that set-up does not depend on the upcasting under test)."""
    caption, weight_kg, relabels = EXPECTED[agg_id][version]
    state = {
        "caption": caption,
        "weight_kg": weight_kg,
        "relabels": relabels,
        "head_hash": stored_states(log, agg_id)[version - 1]["digest"],
        "_created_on": (T0 + timedelta(seconds=1)).isoformat(),
        "_modified_on": (T0 + timedelta(seconds=version)).isoformat(),
        "class_version": Parcel.class_version,
    }
    return Parcel.from_snapshot_state(agg_id, version, state)


def continue_with_todays_code(log: AgentLog) -> None:
    """Version 3 (today's classes) relabels both parcels and snapshots P once."""
    assert log.snapshots is not None
    parcel = picked_up_by_todays_code(log, P, 3)
    parcel.relabel("handle with care")
    parcel.relabel("keep dry")
    log.save(parcel)
    log.snapshots.put([parcel.Snapshot.take(parcel)])
    parcel.relabel("delivered")
    other = picked_up_by_todays_code(log, Q, 2)
    other.relabel("books, 3 boxes")
    log.save(parcel, other)


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite file holding old rows of every class version, then today's."""
    url = f"sqlite:///{tmp_path / 'parcels.db'}"
    log = open_log(url)
    write_old_rows(log)
    continue_with_todays_code(log)
    log.close()
    return url


@pytest.fixture
def log(url: str) -> Iterator[AgentLog]:
    """Today's application on the file, with its snapshots."""
    opened = open_log(url)
    yield opened
    opened.close()


@pytest.fixture
def replayer(url: str) -> Iterator[AgentLog]:
    """Today's application on the file, blind to snapshots: every load is a full replay."""
    opened = open_log(url, snapshot_interval=0)
    assert opened.snapshots is None
    yield opened
    opened.close()


def stored_states(log: AgentLog, agg_id: UUID, *, snapshots: bool = False) -> list[dict[str, Any]]:
    """The JSON state of an aggregate's rows exactly as stored (nothing upcast)."""
    recorder = log.snapshots.recorder if snapshots and log.snapshots else log.recorder
    assert isinstance(log.mapper, PydanticMapper)
    return [log.mapper.decode_state(row) for row in recorder.select_events(agg_id)]


def digests(log: AgentLog, agg_id: UUID) -> dict[int, str]:
    """Each version's digest as stored."""
    return {n: s["digest"] for n, s in enumerate(stored_states(log, agg_id), start=1)}


def expected_state(log: AgentLog, agg_id: UUID, version: int) -> dict[str, Any]:
    caption, weight_kg, relabels = EXPECTED[agg_id][version]
    return {
        "caption": caption,
        "weight_kg": weight_kg,
        "relabels": relabels,
        "head_hash": digests(log, agg_id)[version],
    }


def test_the_log_holds_rows_of_every_class_version(log: AgentLog) -> None:
    for agg_id, versions in STORED_AT.items():
        states = stored_states(log, agg_id)
        assert [s.get("class_version", 1) for s in states] == versions
        renamed = {1: {"text"}, 2: {"label"}, 3: {"caption"}}
        assert all(renamed[v] <= set(s) for v, s in zip(versions, states, strict=True))
    snapshots = stored_states(log, P, snapshots=True)
    assert {s["state"].get("class_version", 1) for s in snapshots} == {1, 2, 3}
    assert [s["state"].get("class_version", 1) for s in snapshots] == list(SNAPSHOTS.values())


@pytest.mark.parametrize("agg_id", [P, Q], ids=["created-at-v1", "created-at-v2"])
def test_events_of_every_class_version_read_back_renamed_with_their_stored_values(
    log: AgentLog, agg_id: UUID
) -> None:
    events = list(log.events.get(agg_id))
    assert [e.originator_version for e in events] == list(EXPECTED[agg_id])
    created, *later = events
    relabelled = [e for e in later if isinstance(e, Parcel.Relabelled)]
    assert isinstance(created, Parcel.Created)
    assert len(relabelled) == len(later)
    captions = [created.caption, *(e.caption for e in relabelled)]
    assert captions == [caption for caption, _, _ in EXPECTED[agg_id].values()]
    assert created.weight_kg == EXPECTED[agg_id][1][1]


def test_an_event_stored_at_the_current_class_version_is_not_upcast_again(
    log: AgentLog,
) -> None:
    fourth = stored_states(log, P)[3]
    assert (fourth["class_version"], fourth["caption"]) == (3, "handle with care")
    assert "label" not in fourth
    row = next(iter(log.recorder.select_events(P, gt=3, lte=4)))
    event = log.mapper.to_domain_event(row)
    assert isinstance(event, Parcel.Relabelled)
    assert (event.caption, event.digest) == ("handle with care", fourth["digest"])


@pytest.mark.parametrize(
    ("version", "class_version"),
    list(SNAPSHOTS.items()),
    ids=[f"at-{v}-state-v{c}" for v, c in SNAPSHOTS.items()],
)
def test_snapshot_state_of_every_class_version_is_upcast_to_the_exact_state(
    log: AgentLog, version: int, class_version: int
) -> None:
    assert log.snapshots is not None
    (snapshot,) = log.snapshots.get(P, lte=version, desc=True, limit=1)
    assert isinstance(snapshot, Aggregate.Snapshot)
    assert snapshot.originator_version == version
    stored = stored_states(log, P, snapshots=True)[list(SNAPSHOTS).index(version)]
    assert stored["state"].get("class_version", 1) == class_version
    parcel = snapshot.mutate(None)
    assert isinstance(parcel, Parcel)
    assert parcel.version == version
    assert parcel.state() == expected_state(log, P, version)


EVERY_VERSION = [
    pytest.param(agg_id, v, id=f"{name}@{v}")
    for agg_id, name in ((P, "P"), (Q, "Q"))
    for v in EXPECTED[agg_id]
]


@pytest.mark.parametrize(("agg_id", "version"), EVERY_VERSION)
def test_every_version_loads_the_exact_state_from_snapshots_and_from_full_replay(
    log: AgentLog, replayer: AgentLog, agg_id: UUID, version: int
) -> None:
    from_snapshot: Parcel = log.repository.get(agg_id, version=version)
    replayed: Parcel = replayer.repository.get(agg_id, version=version)
    expected = expected_state(log, agg_id, version)
    assert from_snapshot.state() == expected
    assert replayed.state() == expected
    assert from_snapshot.version == replayed.version == version
    assert from_snapshot.modified_on == replayed.modified_on
