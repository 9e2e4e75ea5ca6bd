"""Workers: build a runtime for each agent from its config, and take work from the
runnable view. Stateless between steps: kill one anywhere and another carries on.

A step commits what the protocol needs and nothing else: the model's context comes
from the log (``LogTranscript``: the latest compaction and what followed), and the
views catch up for all views together, never inside or between one agent's steps
(docs/projections.md).

Told to stop (``stop``, set by the worker command on SIGINT/SIGTERM), a worker finishes
or abandons its current step (``Runtime``'s ``interrupt``) and starts nothing more. The
database going away is waited out (``adapters/outages.py``); a claim by a worker of
this host whose process is gone ends at once (``adapters/liveness.py``).

With ``concurrency`` K, up to K agents' turns run at once, in threads
(``adapters/turn_pool.py``); each agent is advanced by one worker at a time, the one
holding its lease (``adapters/leases.py``). One worker of a store at a time catches the
views up, in a thread of its own (``adapters/view_follower.py``); or none, with
``follow_views=False``, when ``agentlog projections run`` follows the log."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from uuid import UUID

from sqlalchemy.exc import SQLAlchemyError

from agentlog.adapters.group_commit import unwrapped
from agentlog.adapters.idle_agents import IdleAgents
from agentlog.adapters.lease_holding import holding, while_held
from agentlog.adapters.lease_keeper import LeaseKeeper
from agentlog.adapters.lease_queries import candidates
from agentlog.adapters.lease_writes import writes_for
from agentlog.adapters.leased_turn import LeasedTurn, leased_elsewhere
from agentlog.adapters.leases import LEASE_SECONDS, Lease, Leases
from agentlog.adapters.liveness import worker_gone, worker_id
from agentlog.adapters.models import UnbuiltModel, model_for
from agentlog.adapters.outages import Outage, is_outage
from agentlog.adapters.tools import ToolRegistry, builtin_tools
from agentlog.adapters.turn_pool import TurnPool
from agentlog.adapters.view_follower import ViewFollower
from agentlog.adapters.views import Store
from agentlog.adapters.worker_pools import fit_pools
from agentlog.domain.application import require_agent
from agentlog.domain.claims import WorkerGone
from agentlog.domain.errors import AgentError
from agentlog.domain.ports import Model
from agentlog.domain.runtime import LogTranscript, Runtime, Step, StepKind
from agentlog.projections import queries

DEFAULT_SANDBOX = Path(".agentlog/sandbox")
Warn = Callable[[UUID, AgentError], None]
"""Told about an agent whose model cannot be built, and why."""
WORKER_CACHE = 1000
"""Agents (and their model contexts) a worker keeps in memory between steps."""
PASS_SIZE = 100
"""Runnable agents a pass looks at, at least (more with more concurrency)."""
log = logging.getLogger(__name__)


class Worker:
    """Advances agents of one store with their configured models and the given tools."""

    def __init__(
        self,
        store: Store,
        tools: ToolRegistry | None = None,
        name: str | None = None,
        *,
        gone: WorkerGone = worker_gone,
        concurrency: int = 1,
        lease_seconds: float = LEASE_SECONDS,
    ):
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.store = store
        self.tools = tools if tools is not None else builtin_tools(DEFAULT_SANDBOX)
        self.name = name or worker_id()
        self.transcripts = LogTranscript(store.log, cache_size=WORKER_CACHE)
        self.gone = gone
        self.concurrency, self.lease_seconds = concurrency, lease_seconds
        self.stop = threading.Event()
        self.outage: Outage | None = None  # while working: outcomes wait out outages
        self._leases: Leases | None = None
        self._idle = IdleAgents()  # agents just found with nothing to do

    def runtime_for(self, agent_id: UUID, *, on_unbuilt: Warn | None = None) -> Runtime:
        """A runtime with the models the agent's config names (its model, its summarizer).

        A model that cannot be built raises, unless ``on_unbuilt`` is given: then it is
        told why, and the runtime gets a stand-in whose every answer is a recorded
        failure (``ModelFailed``, then the agent's limits end the task).
        """
        config = require_agent(self.store.log.get(agent_id)).config
        build = partial(_model, agent_id, on_unbuilt)
        return Runtime(
            self.store.log,
            build(config.model),
            self.tools,
            worker_id=self.name,
            transcripts=self.transcripts,
            summarizer=build(config.compact_model) if config.compact_model else None,
            interrupt=self.stop,
            gone=self.gone,
            patience=self._patience,
        )

    def _patience(self, error: Exception) -> bool:
        """While working: wait out an outage (an outcome must not be lost); else give up."""
        return self.outage is not None and is_outage(error) and self.outage.wait(error)

    def step(self, agent_id: UUID, *, lease: bool = False) -> Step:
        """Advance one step; with ``lease``, holding the agent's lease while it runs
        (``AgentLeasedError`` if a live worker holds it; ``adapters/lease_holding.py``)."""
        with self._holding(agent_id, lease):
            return self.runtime_for(agent_id).advance(agent_id)

    def run(
        self,
        agent_id: UUID,
        max_steps: int,
        on_step: Callable[[Step], None],
        *,
        record_limit: bool = True,
        lease: bool = False,
    ) -> Step:
        """Advance until the agent waits, is blocked, finishes, or max_steps were taken.

        With ``lease``, the agent's lease is held (renewed) for the whole run and given
        back when it ends, however it ends: ``AgentLeasedError`` if a live worker holds
        it, ``LeaseLostError`` after the step under way if it is lost meanwhile.
        """
        with self._holding(agent_id, lease) as held:
            checked = on_step if held is None else while_held(held, on_step)
            return self.runtime_for(agent_id).run(
                agent_id, max_steps, checked, record_limit=record_limit
            )

    def _holding(self, agent_id: UUID, lease: bool) -> AbstractContextManager[Lease | None]:
        """The agent's lease in a slot no turn thread uses, or nothing without ``lease``."""
        if not lease:
            return contextlib.nullcontext()
        return holding(self.leases(), agent_id, slot=self.concurrency)

    def work(
        self,
        *,
        poll: float,
        exit_when_idle: bool,
        on_step: Callable[[Step], None],
        on_unbuilt: Warn | None = None,
        stop: threading.Event | None = None,
        turn: int = 50,
        say: Callable[[str], None] = log.warning,
        follow_views: bool = True,
    ) -> None:
        """Take runnable agents from the view, in random order, until stopped (or idle).

        Each agent gets up to ``turn`` steps before the next one's turn; a turn is not a
        limit (nothing is recorded): the agent's own finite limits end its task. Up to
        ``concurrency`` turns run at once, each holding its agent's lease; an agent
        another worker holds is left to it (and counts as busy). An agent whose model
        cannot be built is told so through ``on_unbuilt`` (once per agent and reason)
        and advanced with a model that fails, recorded (:class:`UnbuiltModel`).
        ``on_step`` is called for every step, one call at a time. Once ``stop`` is set,
        the steps under way finish (or are abandoned, see ``Runtime``) and nothing more
        starts. While the database is unavailable, the loop waits with backoff (``say``
        tells when an outage starts and ends) and carries on after.

        The views (the runnable view among them) are caught up by one worker of the store
        at a time, the holder of the views' lease, in a thread of its own
        (:class:`ViewFollower`); with ``follow_views=False`` never by this worker (run
        ``agentlog projections run`` beside the workers). Exiting when idle, a worker
        first catches the views up itself, and exits only if they still show no work.
        """
        if stop is not None:
            self.stop = stop
        stop = self.stop
        self.outage = Outage(say, stop)
        fit_pools(self.store.log.recorder, self.concurrency)  # a connection for each turn
        leases = self.leases()
        keeper = LeaseKeeper(leases)
        pool = TurnPool(self.concurrency, stop)
        serial = threading.Lock()
        record = partial(_record_serially, serial, on_step)
        runtime_for = partial(self.runtime_for, on_unbuilt=_Once(on_unbuilt or _log_unbuilt))
        run_turn = LeasedTurn(keeper, runtime_for, record, turn)
        follower = ViewFollower(self.store.views, keeper, every=poll, stop=stop)
        views = follower if follow_views else None
        with keeper, views or contextlib.nullcontext():
            try:
                self._loop(pool, run_turn, poll, exit_when_idle, views)
            except BaseException:
                stop.set()  # the turns under way end soon, then this error goes on
                raise
            finally:
                pool.close()
                _flush(leases)

    def leases(self) -> Leases:
        """This worker's leases (their table is created on first use)."""
        if self._leases is None:
            engine, recorder = self.store.views.engine, unwrapped(self.store.log.recorder)
            writes = writes_for(engine, recorder)  # SQLite: in turn with the event inserts
            self._leases = Leases(engine, seconds=self.lease_seconds, writes=writes)
        return self._leases

    def _loop(
        self,
        pool: TurnPool,
        run_turn: Callable[[UUID, int], list[Step]],
        poll: float,
        exit_when_idle: bool,
        views: ViewFollower | None,
    ) -> None:
        stop, outage = self.stop, self.outage
        assert outage is not None
        looked = views is None  # whether the views were caught up since the last progress
        while not stop.is_set():
            try:
                steps = self._pass(pool, run_turn)
            except Exception as e:
                if not is_outage(e):
                    raise
                outage.wait(e)
                continue
            outage.over()
            if any(step.progressed for step in steps):
                if views is not None:
                    views.nudge()
                    looked = False
                continue
            _flush(self.leases())  # before waiting: leave the agents it is done with to others
            if pool.busy:  # turns under way: look again when one ends
                pool.wait_any(poll)
                continue
            if views is not None and views.behind():  # its own steps are not in them yet
                views.settle(poll)
                continue
            busy = any(step.kind is StepKind.BUSY for step in steps)
            if exit_when_idle and not busy:
                if looked or views is None:
                    return  # nothing runnable, and no call running elsewhere to wait for
                try:  # the views may be behind this worker's own steps
                    views.catch_up_now()
                except Exception as e:
                    if not is_outage(e):
                        raise
                    outage.wait(e)  # then look again: the pass goes first
                    continue
                looked = True
                continue
            stop.wait(poll)

    def _pass(self, pool: TurnPool, run_turn: Callable[[UUID, int], list[Step]]) -> list[Step]:
        """One pass: once a slot is free, runnable agents (as the views stand) not leased
        elsewhere get a turn in the free slots; the steps of the turns that ended."""
        if not pool.wait_for_slot():
            return self._harvest(pool)
        ended = self._harvest(pool)  # first: an agent whose turn just ended may look runnable
        free, held = self._candidates(pool.agents)
        random.shuffle(free)  # several workers: fewer collisions
        # As many as slots are free now: the next slot to free gets a fresh look (a list
        # read seconds ago names agents other workers took meanwhile).
        for agent_id in free[: pool.free]:
            pool.start(agent_id, run_turn)
        return ended + [leased_elsewhere(agent_id) for agent_id in held] + self._harvest(pool)

    def _harvest(self, pool: TurnPool) -> list[Step]:
        """The steps of the turns that ended; those with nothing more to do are noted."""
        steps = pool.harvest()
        self._idle.note(steps)
        return steps

    def _candidates(self, running: set[UUID]) -> tuple[list[UUID], list[UUID]]:
        views, leases = self.store.views, self.leases()
        limit = max(PASS_SIZE, 4 * self.concurrency)
        with views.engine.connect() as conn:
            table = views.table(conn, "runnable")
            found = candidates(
                conn, table, views.engine, owner=leases.owner, limit=limit, gone=self.gone
            )
        free = [a for a in found.free if a not in running]
        return self._idle.worth_a_look(free, found.versions), found.held

    def runnable(self) -> list[UUID]:
        """Agents a worker may advance now (the views caught up first, in one pass)."""
        views = self.store.views
        views.catch_up_quietly()
        with views.engine.connect() as conn:
            return queries.runnable(conn, views.table(conn, "runnable"))


def _model(agent_id: UUID, on_unbuilt: Warn | None, spec: str) -> Model:
    """The model ``spec`` names, or (told to ``on_unbuilt``) one that always fails."""
    try:
        return model_for(spec)
    except AgentError as e:
        if on_unbuilt is None:
            raise
        on_unbuilt(agent_id, e)
        return UnbuiltModel(spec, e)


class _Once:
    """Passes each (agent, reason) on once: a worker polling forever warns once (turn
    threads may ask at the same time)."""

    def __init__(self, warn: Warn) -> None:
        self.warn = warn
        self.seen: set[tuple[UUID, str]] = set()
        self.lock = threading.Lock()

    def __call__(self, agent_id: UUID, error: AgentError) -> None:
        key = (agent_id, str(error))
        with self.lock:
            if key in self.seen:
                return
            self.seen.add(key)
            self.warn(agent_id, error)


def _log_unbuilt(agent_id: UUID, error: AgentError) -> None:
    log.warning("agent %s: %s", agent_id, error)


def _flush(leases: Leases) -> None:
    """Release the leases given back; if the database cannot be reached, they expire."""
    with contextlib.suppress(SQLAlchemyError):
        leases.flush()


def _record_serially(lock: threading.Lock, on_step: Callable[[Step], None], step: Step) -> None:
    with lock:  # turn threads report one at a time: lines never interleave
        on_step(step)
