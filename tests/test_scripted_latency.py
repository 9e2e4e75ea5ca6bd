"""``scripted:FILE?latency=SECONDS``: a scripted model that takes its time, the stand-in
for a real model's wait (tests of overlapping turns, the scale benchmark)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cli_checks import checked, invoke, ok
from click.testing import CliRunner

from agentlog.adapters.models import ModelSpecError, check_spec, model_for
from agentlog.adapters.scripted import ScriptedModel
from agentlog.domain.ports import Context


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps([{"text": "done", "done": True}]))
    return path


def context() -> Context:
    from uuid import uuid4

    return Context(agent_id=uuid4(), goal="g", messages=(), tools=())


def test_latency_delays_every_answer(script: Path) -> None:
    model = model_for(f"scripted:{script}?latency=0.2")
    assert isinstance(model, ScriptedModel)
    started = time.monotonic()
    assert model.decide(context()).text == "done"
    assert 0.2 <= time.monotonic() - started < 2.0


def test_latency_leaves_the_model_name_as_it_was(script: Path) -> None:
    assert model_for(f"scripted:{script}?latency=0.01").name == model_for(f"scripted:{script}").name


def test_no_latency_answers_at_once(script: Path) -> None:
    model = model_for(f"scripted:{script}")
    started = time.monotonic()
    model.decide(context())
    assert time.monotonic() - started < 0.1


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ("latency=-1", "latency must be seconds >= 0"),
        ("latency=soon", "latency must be seconds >= 0"),
        ("latency=nan", "latency must be seconds >= 0"),
        ("latency=inf", "latency must be seconds >= 0"),
        ("latency=", "latency must be seconds >= 0"),
        ("speed=2", "unknown option 'speed'"),
    ],
)
def test_a_bad_option_is_refused_with_why(script: Path, option: str, reason: str) -> None:
    with pytest.raises(ModelSpecError, match=reason):
        check_spec(f"scripted:{script}?{option}")


def test_new_refuses_a_bad_latency_as_a_usage_error(
    script: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    cli = CliRunner()
    spec = f"scripted:{script}?latency=-0.5"
    result = invoke(cli, "new", "--name", "a", "--model", spec, "--goal", "g")
    assert "latency must be seconds >= 0" in checked(result, 2, "Usage:").stderr


def test_a_worker_runs_an_agent_with_latency(
    script: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTLOG_DB", sqlite_url)
    cli = CliRunner()
    agent = ok(
        cli, "new", "--name", "a", "--model", f"scripted:{script}?latency=0.1", "--goal", "g"
    ).split()[-1]
    ok(cli, "worker", "--exit-when-idle")
    assert "completed" in ok(cli, "show", agent)
