"""A scripted model's file is parsed once per version of the file, not at every turn
(a worker builds each agent's model at each turn)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agentlog.adapters import scripted
from agentlog.adapters.models import model_for
from agentlog.adapters.scripted import ScriptedModel
from agentlog.domain.ports import Decision


def write(path: Path, *texts: str, mtime_ns: int | None = None) -> Path:
    path.write_text(json.dumps([{"text": t, "done": True} for t in texts]))
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def texts(spec: str) -> list[str]:
    model = model_for(spec)
    assert isinstance(model, ScriptedModel)
    return [d.text for d in model.decisions]


def test_a_script_is_parsed_once_while_its_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "s.json", "a", "b")
    parsed: list[object] = []
    real = scripted._DECISIONS.validate_python

    def counted(data: object) -> list[Decision]:
        parsed.append(data)
        return real(data)

    monkeypatch.setattr(scripted._DECISIONS, "validate_python", counted)
    for _ in range(5):
        assert texts(f"scripted:{path}") == ["a", "b"]
        assert texts(f"scripted:{path}?latency=0") == ["a", "b"]
    assert len(parsed) == 1


def test_a_changed_script_is_read_again(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", "a", mtime_ns=1_000_000_000)
    assert texts(f"scripted:{path}") == ["a"]
    write(path, "b", mtime_ns=2_000_000_000)  # a new version (same size, other mtime)
    assert texts(f"scripted:{path}") == ["b"]
    write(path, "c", "d", mtime_ns=2_000_000_000)  # same mtime, other size
    assert texts(f"scripted:{path}") == ["c", "d"]


def test_a_model_cannot_change_the_cached_script(tmp_path: Path) -> None:
    path = write(tmp_path / "s.json", "a")
    model = model_for(f"scripted:{path}")
    assert isinstance(model, ScriptedModel)
    model.decisions.clear()
    assert texts(f"scripted:{path}") == ["a"]
