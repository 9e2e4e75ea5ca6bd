"""The command side: load an agent, run one command, save its events."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from copy import deepcopy
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, Recording
from eventsourcing.utils import Environment
from pydantic import JsonValue

from agentlog.domain.agent import Agent
from agentlog.domain.aggregate import Aggregate
from agentlog.domain.errors import (
    AmbiguousAgentError,
    DamagedHistoryError,
    NotAnAgentError,
    StaleSnapshotError,
    UnknownAgentError,
)
from agentlog.domain.fork import fork_of
from agentlog.domain.history import MISSING, in_sequence, mutate_all
from agentlog.domain.kept import NOTHING_KEPT, KeptAggregates
from agentlog.domain.messages import TranscriptBuilder
from agentlog.domain.ports import Message
from agentlog.domain.recordings import record
from agentlog.domain.stored_tail import StateDecoder, StoredTail, chained, read_row
from agentlog.domain.values import AgentConfig, EffectClass, Policy, ToolCallRequest

DEFAULT_SNAPSHOT_INTERVAL = 50
OPEN_ATTEMPTS = 8
CheckFrom = Callable[[Agent], int | None]
"""Given a kept agent, the version its step's call check would read from, or None."""


class AgentLog(Application[UUID]):
    """The agents' event store, with one command method per domain command.

    Configure storage with ``agentlog.adapters.storage.env_for(url)``. The mapper and
    transcoder named in ``env`` are agentlog's own (pydantic events, upcasting).
    """

    name = "agentlog"
    env: ClassVar[dict[str, str]] = {
        "MAPPER_TOPIC": "agentlog.adapters.mapper:PydanticMapper",
        "TRANSCODER_TOPIC": "agentlog.adapters.mapper:JSONTranscoder",
        "COMPRESSOR_TOPIC": "agentlog.adapters.mapper:LargeStateCompressor",
        "IS_SNAPSHOTTING_ENABLED": "y",
    }

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The library names a subclass after itself, and PostgreSQL and SQLAlchemy stores
        # prefix their tables with the name: a subclass keeps "agentlog" (the same store,
        # the same CLI) unless it declares a name of its own.
        named = "name" in cls.__dict__
        super().__init_subclass__(**kwargs)
        if not named:
            cls.name = AgentLog.name

    def construct_env(self, name: str, env: Mapping[str, str] | None = None) -> Environment:
        """The library's environment; an interval of 0 turns the snapshot store off."""
        environment = super().construct_env(name, env)
        if environment.get("AGENTLOG_SNAPSHOT_INTERVAL") == "0":
            environment["IS_SNAPSHOTTING_ENABLED"] = "n"
        return environment

    def __init__(self, env: dict[str, str] | None = None) -> None:
        # Processes opening one new PostgreSQL store at once race on creating its tables
        # and functions ("tuple concurrently updated"): opening is retried a few times.
        for attempt in range(OPEN_ATTEMPTS):
            try:
                super().__init__(env)
                break
            except Exception as e:
                if attempt == OPEN_ATTEMPTS - 1 or "concurrently updated" not in str(e):
                    raise
                time.sleep(0.05 * (attempt + 1) * (1 + random.random()))  # noqa: S311 - jitter
        interval = self.env.get("AGENTLOG_SNAPSHOT_INTERVAL", str(DEFAULT_SNAPSHOT_INTERVAL))
        self.snapshot_interval = int(interval)
        self.after_save: list[Callable[[], None]] = []
        """Called after every save (embedded projections catch up here)."""
        cache, self.repository.cache = self.repository.cache, None
        self.kept = None if cache is None else KeptAggregates(getattr(cache, "maxsize", 0))
        """With an aggregate cache (workers): agents kept between loads, without copies
        where none is needed (:mod:`agentlog.domain.kept`); it replaces the library's."""

    def create_agent(
        self,
        name: str,
        config: AgentConfig | None = None,
        *,
        goal: str | None = None,
        actor: str = "user",
    ) -> UUID:
        """Record a new agent (and its first task, with ``goal``) in one save; return its id.

        A goal that cannot be recorded leaves nothing behind: no agent without its task.
        """
        agent = Agent.create(name, config, actor=actor)
        if goal is not None:
            agent.start_task(goal, actor=actor)
        self.save(agent)
        return agent.id

    def fork(
        self,
        parent_id: UUID,
        version: int | None = None,
        *,
        name: str | None = None,
        model: str | None = None,
        actor: str = "user",
    ) -> UUID:
        """Record a new agent whose state equals the parent's at ``version`` (default: its
        latest); the parent is not changed. See :mod:`agentlog.domain.fork`."""
        parent = require_agent(self.get(parent_id, version=version))
        child = fork_of(parent, self.context(parent), name=name, model=model, actor=actor)
        self.save(child)
        return child.id

    def compact(
        self, agent_id: UUID, summary: str, *, through: int | None = None, summarizer: str
    ) -> int:
        """Record that the agent's context up to ``through`` (default: its latest version)
        is summarised; returns the version covered. Stored events are not touched."""
        agent = require_agent(self.get(agent_id))
        covered = agent.version if through is None else through
        agent.compact(covered, summary, summarizer=summarizer)
        self.save(agent)
        return covered

    def context(self, agent: Agent) -> list[Message]:
        """The messages the agent's model sees at its loaded version, read from the log."""
        return TranscriptBuilder().apply(self.context_events(agent)).messages()

    def context_events(self, agent: Agent) -> Iterable[Aggregate.Event]:
        """The events the model's context is built from: ``Created`` (system prompt, or a
        fork's inherited context), then those after the latest compaction. O(context)."""
        covered = agent.compacted_through
        if covered <= 1:
            return self.events_of(agent.id, upto=agent.version)
        # The compaction event itself comes after what it covers, so it is in the tail.
        created = self.events_of(agent.id, upto=1)
        return itertools.chain(created, self.events_of(agent.id, after=covered, upto=agent.version))

    def get(self, agent_id: UUID, version: int | None = None) -> Agent:
        """The agent as it is now, or as it was at ``version`` (time travel).

        With an aggregate cache, a kept agent is brought up to date with the events
        stored after it, and the caller gets a copy of it."""
        if version is not None or self.kept is None:
            return self._load(agent_id, version)
        kept = self.kept.borrow(agent_id)
        agent = self._load(agent_id, None) if kept is None else self._fast_forward(kept)
        self.kept.put(agent)
        return deepcopy(agent)

    def take(
        self, agent_id: UUID, *, check_from: CheckFrom | None = None, read: bool = True
    ) -> Agent:
        """The agent as it is now, to change and save, then hand back with :meth:`keep`
        (a worker's load). With an aggregate cache, the agent kept since the last step is
        handed over as it is, brought up to date with the events stored after it: no
        copy, no decoding of what this process stored itself.

        ``check_from`` gives, for the kept agent, the version a call check of this step
        would read from (``agentlog.domain.call_check.check_from``), or None: the same
        read then fetches the stored events from there on, and :meth:`chained_events` of
        the agent handed out uses them instead of reading again (once, while unchanged).

        ``read=False`` is for a caller that saved the agent last and has held it since
        (a worker's next step in a turn, under the agent's lease): a kept agent with no
        call to check is handed over as this process stored it, without looking for
        events others stored since. If there are any, its next save loses its race
        (``IntegrityError``), as any save does, and the caller takes it again, reading.
        """
        if self.kept is None:
            return self.get(agent_id)
        kept = self.kept.borrow(agent_id)
        since = check_from(kept) if check_from is not None and isinstance(kept, Agent) else None
        if kept is None:
            agent, tail = self._load(agent_id, None), None
        elif since is None and not read and isinstance(kept, Agent):
            agent, tail = kept, None
        elif since is None:
            agent, tail = self._fast_forward(kept), None
        else:
            agent, tail = self._read_tail(kept, since)
        self.kept.lend(agent, tail)
        return agent

    def keep(self, agent: Aggregate) -> None:
        """Hand back an agent from :meth:`take` that the caller is done with; the next
        ``take`` may return this very object. Not kept if it changed since it was taken
        or last saved (a failed save, changes never saved)."""
        if self.kept is not None:
            self.kept.keep(agent)

    def _fast_forward(self, agent: Aggregate) -> Agent:
        """A kept agent with the events stored after it applied (the cheap check that
        nobody else wrote is this one read)."""
        assert self.kept is not None
        new = cast(list[Aggregate.Event], list(self.events.get(agent.id, gt=agent.version)))
        moved: Agent = mutate_all(agent, new)
        self.kept.stored(agent.id, new)
        return moved

    def _read_tail(self, agent: Aggregate, since: int) -> tuple[Agent, StoredTail]:
        """A kept agent with the events stored after it applied, and the stored events
        from version ``since`` (at or before its version) to its head: one read."""
        assert self.kept is not None
        version = agent.version
        since = min(since, version + 1)
        mapper = cast(StateDecoder, self.mapper)
        stored = self.recorder.select_events(agent.id, gt=since - 1)
        at = self.kept.recent(agent.id).at
        rows = tuple([read_row(mapper, row, at(row.originator_version)) for row in stored])
        new = [row.decoded() for row in rows if row.version > version]
        if not new:  # as a rule: nobody else wrote since this process stored it
            return cast(Agent, agent), StoredTail(since, rows)
        moved: Agent = mutate_all(agent, new)
        self.kept.stored(agent.id, new)
        return moved, StoredTail(since, rows)

    def recent_events(self, agent_id: UUID, after: int, upto: int) -> Iterable[Aggregate.Event]:
        """The agent's events after version ``after`` up to ``upto``, as ``events_of``
        reads them, but from memory when a worker's cache holds them all (the events
        this process stored or read last: no read, no decoding)."""
        found = None if self.kept is None else self.kept.between(agent_id, after, upto)
        return self.events_of(agent_id, after=after, upto=upto) if found is None else found

    def _load(self, agent_id: UUID, version: int | None) -> Agent:
        """The agent from its snapshot and the events after it (or its events alone)."""
        try:
            agent: Agent = self.repository.get(agent_id, version=version, projector_func=mutate_all)
        except AggregateNotFoundError:
            raise UnknownAgentError(agent_id, version) from None
        except StaleSnapshotError:
            agent = self._replay(agent_id, version)
        if version is not None and agent.version != version:
            if self.recorder.select_events(agent_id, gt=agent.version, limit=1):
                raise DamagedHistoryError(agent_id, agent.version + 1, MISSING)
            raise UnknownAgentError(agent_id, version)  # history is shorter than that
        return agent

    def _replay(self, agent_id: UUID, version: int | None) -> Agent:
        """The agent from its events alone (when its snapshot is stale)."""
        agent: Agent | None = mutate_all(None, self.events.get(agent_id, lte=version))
        if agent is None:
            raise UnknownAgentError(agent_id, version)
        return agent

    def start_task(self, agent_id: UUID, goal: str, *, actor: str = "user") -> None:
        """Give an agent its goal."""
        agent = require_agent(self.get(agent_id))
        agent.start_task(goal, actor=actor)
        self.save(agent)

    def send(self, agent_id: UUID, text: str, *, actor: str = "user") -> None:
        """Record a message from a person to the agent."""
        agent = require_agent(self.get(agent_id))
        agent.receive_user_message(text, actor=actor)
        self.save(agent)

    def call_tool(
        self, agent_id: UUID, request: ToolCallRequest, effect: EffectClass, policy: Policy | None
    ) -> None:
        """Record a tool call before anything runs."""
        agent = require_agent(self.get(agent_id))
        agent.call_tool(request, effect=effect, policy=policy)
        self.save(agent)

    def grant(
        self, agent_id: UUID, call_id: str, *, approver: str, args_hash: str | None = None
    ) -> None:
        """Allow a waiting call, bound to the arguments it was recorded with."""
        agent = require_agent(self.get(agent_id))
        agent.grant(call_id, args_hash, approver=approver)
        self.save(agent)

    def deny(self, agent_id: UUID, call_id: str, *, approver: str, reason: str = "") -> None:
        """Refuse a call that has not started."""
        agent = require_agent(self.get(agent_id))
        agent.deny(call_id, approver=approver, reason=reason)
        self.save(agent)

    def settle(self, agent_id: UUID, call_id: str, *, happened: bool, by: str) -> None:
        """A person decides a call whose outcome was unknown, having checked the world."""
        agent = require_agent(self.get(agent_id))
        agent.settle(call_id, happened=happened, by=by)
        self.save(agent)

    def record_result(self, agent_id: UUID, call_id: str, result: JsonValue) -> None:
        """Record a tool call's result."""
        agent = require_agent(self.get(agent_id))
        agent.succeed(call_id, result)
        self.save(agent)

    def complete(self, agent_id: UUID, result: str = "", *, actor: str | None = None) -> None:
        """Finish an agent's task."""
        agent = require_agent(self.get(agent_id))
        agent.complete(result, actor=actor)
        self.save(agent)

    def cancel(self, agent_id: UUID, reason: str = "", *, actor: str = "user") -> None:
        """Stop an agent's task."""
        agent = require_agent(self.get(agent_id))
        agent.cancel(reason, actor=actor)
        self.save(agent)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """Store pending events; snapshot agents whose version crossed the interval.

        With a worker's cache, what was saved is noted in it: the aggregates (this thread
        holds them) and their new events."""
        recordings = self._save(objs, kwargs)
        saved = _by_originator(recordings)
        for obj in objs:
            events = saved.pop(obj.id, None) if isinstance(obj, Aggregate) else None
            if events is None:
                continue
            if self.kept is not None:
                self.kept.saved(obj, events)
            if isinstance(obj, Agent):
                self._snapshot_if_due(obj, events[0].originator_version)
        if self.kept is not None:
            for agent_id, events in saved.items():  # saved as events, not as aggregates
                self.kept.stored(agent_id, events)
        for callback in self.after_save:
            callback()
        return recordings

    def _save(self, objs: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Recording[UUID]]:
        """The library's ``save``, collecting agentlog aggregates' events directly: its
        checks against runtime-checkable protocols cost more than the rest of collecting."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for obj in objs:
            if isinstance(obj, Aggregate):
                processing_event.events.extend(obj.collect_events())
                processing_event.aggregates[obj.id] = obj
            else:
                processing_event.collect_events(obj)
        processing_event.saved_kwargs.update(kwargs)
        recordings = record(self, processing_event)
        if recordings is None:
            recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # the library's deprecated hook, as it calls it
        return recordings

    def _snapshot_if_due(self, agent: Agent, first_new: int) -> None:
        k = self.snapshot_interval
        if k <= 0 or self.snapshots is None or agent.version // k == (first_new - 1) // k:
            return
        # Another worker may have stored this snapshot already: same version, same state.
        with suppress(IntegrityError):
            self.snapshots.put([agent.Snapshot.take(agent)])

    def events_of(
        self, agent_id: UUID, *, after: int | None = None, upto: int | None = None
    ) -> Iterator[Aggregate.Event]:
        """An agent's stored events in order: all, or those after and/or up to a version."""
        stored = in_sequence(
            agent_id, self.events.get(agent_id, gt=after, lte=upto), (after or 0) + 1
        )
        events = cast(Iterator[Aggregate.Event], stored)
        first = next(events, None)
        if first is None:
            if after is None and upto is None:
                raise UnknownAgentError(agent_id)
            return
        yield first
        yield from events

    def chained_events(self, agent: Aggregate, since: int) -> list[Aggregate.Event]:
        """The agent's events from version ``since`` to its loaded version, each checked
        against its stored bytes, linked in order, the last one being the agent's head.
        The rows are read from the store; or, if :meth:`take` read them with this very
        agent in this step (``check_from``) and it has not changed since, those rows.

        Raises :class:`BrokenChainError` naming the first event that fails.
        """
        tail = None if self.kept is None else self.kept.tail_of(agent)
        rows = None if tail is None else tail.rows_for(since, agent.version)
        if rows is None:
            mapper = cast(StateDecoder, self.mapper)
            stored = self.recorder.select_events(agent.id, gt=since - 1, lte=agent.version)
            known = NOTHING_KEPT if self.kept is None else self.kept.recent(agent.id)
            rows = [read_row(mapper, row, known.at(row.originator_version)) for row in stored]
        return chained(agent, rows)

    def resolve(self, ref: str) -> UUID:
        """The id of the one agent whose id is ``ref`` or starts with it."""
        try:
            return UUID(ref)
        except ValueError:
            pass
        prefix = ref.lower().strip()
        matches = [i for i in self.agent_ids() if prefix and str(i).startswith(prefix)]
        if len(matches) > 1:
            raise AmbiguousAgentError(ref, len(matches))
        if not matches:
            raise UnknownAgentError(ref)
        return matches[0]

    def agent_ids(self, page: int = 500) -> Iterator[UUID]:
        """Every stored agent's id, in order of creation (reads the log directly)."""
        start = 1
        while notifications := self.recorder.select_notifications(start, page):
            for n in notifications:
                if n.originator_version == 1:
                    yield UUID(str(n.originator_id))
            start = notifications[-1].id + 1


def _by_originator(recordings: list[Recording[UUID]]) -> dict[UUID, list[Aggregate.Event]]:
    """The saved events of each aggregate, in order."""
    saved: dict[UUID, list[Aggregate.Event]] = {}
    for recording in recordings:
        event = cast(Aggregate.Event, recording.domain_event)
        events = saved.get(event.originator_id)
        if events is None:
            saved[event.originator_id] = [event]
        else:
            events.append(event)
    return saved


def require_agent(aggregate: Aggregate) -> Agent:
    """The aggregate, if it is an agent (commands and the runtime work on agents only:
    a LangGraph thread or a user's own aggregate is read, never advanced)."""
    if not isinstance(aggregate, Agent):
        raise NotAnAgentError(aggregate.id, type(aggregate).__name__)
    return aggregate
