"""The shortcuts a rebuild takes give exactly what the long way gives: the mapper's JSON
decoding (what ``json.loads`` makes of the same bytes, errors included) and the bulk
writes' text for times (what SQLAlchemy stores in SQLite for the same datetime)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, DateTime
from sqlalchemy.dialects import sqlite

from agentlog.adapters.mapper import JSONTranscoder
from agentlog.projections.bulk import _processor

offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(timezones=st.none() | st.just(UTC) | offsets)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
objects = st.dictionaries(st.text(), json_values, max_size=4)


def outcome(decode: Any, data: bytes) -> tuple[str, Any]:
    """What decoding gives: the value, or the error's type and message."""
    try:
        return "value", decode(data)
    except Exception as e:  # the error itself is compared
        return type(e).__name__, str(e)


@given(times)
def test_the_bulk_writes_store_a_time_as_sqlalchemy_does_in_sqlite(moment: datetime) -> None:
    dialect = sqlite.dialect()
    column = Column("time", DateTime(timezone=True))
    sqlalchemy_process = column.type.dialect_impl(dialect).bind_processor(dialect)
    ours = _processor(column, dialect)
    assert ours is not None
    assert sqlalchemy_process is not None
    assert ours(moment) == sqlalchemy_process(moment)
    assert ours(None) == sqlalchemy_process(None)


@given(objects, st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32-le"]), st.booleans())
def test_the_mapper_decodes_stored_json_as_json_loads_does(
    state: dict[str, Any], encoding: str, ascii_only: bool
) -> None:
    data = json.dumps(state, ensure_ascii=ascii_only).encode(encoding, "surrogatepass")
    assert repr(outcome(JSONTranscoder().decode, data)) == repr(outcome(json.loads, data))


@given(st.binary(max_size=40) | st.builds(lambda b: b"{" + b, st.binary(max_size=40)))
def test_the_mapper_refuses_broken_json_as_json_loads_does(data: bytes) -> None:
    assert outcome(JSONTranscoder().decode, data) == outcome(json.loads, data)
