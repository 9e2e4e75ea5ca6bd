"""Many stored events written in one transaction, batch by batch: all or nothing.

Imports produce their events lazily (reading, checking and converting a file as they
go) and may fail at any line; the batches are written inside one open transaction, so
a failure anywhere rolls everything back and memory holds one batch, not the file.
The library's ``insert_events`` commits each call, so this reaches one level below it,
per engine: native SQLite and PostgreSQL (eventsourcing's own modules) and
eventsourcing-sqlalchemy; a store in shards writes every shard in that one transaction.
Any other recorder (``memory://``) gets all events in one
``insert_events`` call: still atomic, but held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from eventsourcing.persistence import IntegrityError, Recorder, StoredEvent

from agentlog.adapters.group_commit import unwrapped

Batches = Iterable[Sequence[StoredEvent]]


def insert_batches(recorder: Recorder, batches: Batches) -> int:
    """Write every batch in one transaction; return how many events were written.

    An exception raised while producing a batch (or by the database) rolls back all of
    them and propagates. A group-committing recorder is passed by: this is one
    transaction already.
    """
    recorder = unwrapped(recorder)
    kind = f"{type(recorder).__module__}:{type(recorder).__name__}"
    if kind.startswith(("eventsourcing.sqlite:", "agentlog.adapters.sqlite_saves:")):
        return _sqlite(recorder, batches)
    if kind.startswith(("eventsourcing.postgres:", "agentlog.adapters.postgres_saves:")):
        return _postgres(recorder, batches)
    if kind.startswith("eventsourcing_sqlalchemy."):
        return _sqlalchemy(recorder, batches)
    if kind == "agentlog.adapters.shards:ShardedRecorder":
        written: int = recorder.insert_batches(batches)  # type: ignore[attr-defined]
        return written
    events = list(chain.from_iterable(batches))
    recorder.insert_events(events)  # type: ignore[attr-defined]
    return len(events)


def _sqlite(recorder: Any, batches: Batches) -> int:
    written = 0
    with recorder.datastore.transaction(commit=True) as cursor:
        for batch in batches:
            recorder._insert_events(cursor, batch)
            written += len(batch)
    return written


def _postgres(recorder: Any, batches: Batches) -> int:
    from psycopg.errors import IntegrityError as PostgresIntegrityError

    written = 0
    try:
        with (
            recorder.datastore.get_connection() as conn,
            conn.transaction(),
            conn.cursor() as curs,
        ):
            for batch in batches:
                # Locks the table (insert order = commit order) and notifies listeners.
                recorder._insert_stored_events(curs, batch)
                written += len(batch)
    except PostgresIntegrityError as e:  # what the library's own insert raises
        raise IntegrityError(e) from e
    return written


def _sqlalchemy(recorder: Any, batches: Batches) -> int:
    written = 0
    with recorder.transaction(commit=True) as session:
        for batch in batches:
            recorder.insert_events(batch, session=session)
            session.expunge_all()  # the rows are flushed: keep one batch in memory
            written += len(batch)
    return written
