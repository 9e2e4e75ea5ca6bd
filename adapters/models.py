"""Model specs: the string in an agent's config names the model a worker builds."""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import parse_qsl

from agentlog.adapters.scripted import ScriptedModel
from agentlog.domain.errors import AgentError
from agentlog.domain.ports import Context, Decision, Model, ModelCallError

SPEC_HELP = "scripted:FILE[?latency=SECONDS] (a JSON list of decisions) or openai:MODEL"
SCRIPTED_OPTIONS = ("latency",)
"""What may follow ``scripted:FILE?``: ``latency=SECONDS``, a wait before each answer."""


class ModelSpecError(AgentError):
    """A model spec agentlog cannot build a model from."""

    def __init__(self, spec: str, reason: str) -> None:
        super().__init__(f"model {spec!r}: {reason} (use {SPEC_HELP})")
        self.spec = spec


def check_spec(spec: str) -> str:
    """The spec, if it has a known form (checked when an agent is created)."""
    kind, _, rest = spec.partition(":")
    if kind not in ("scripted", "openai") or not rest:
        raise ModelSpecError(spec, "unknown form")
    if kind == "scripted":
        scripted_parts(spec)
    return spec


def scripted_parts(spec: str) -> tuple[Path, float]:
    """The script file and the latency of ``scripted:FILE[?latency=SECONDS]``."""
    path, _, query = spec.partition(":")[2].partition("?")
    if not path:
        raise ModelSpecError(spec, "no script file named")
    options = dict(parse_qsl(query, keep_blank_values=True))
    unknown = [name for name in options if name not in SCRIPTED_OPTIONS]
    if unknown or (query and not options):
        raise ModelSpecError(spec, f"unknown option {(unknown or [query])[0]!r}")
    text = options.get("latency", "0")
    try:
        latency = float(text)
    except ValueError:
        latency = math.nan
    if not (math.isfinite(latency) and latency >= 0):
        raise ModelSpecError(spec, f"latency must be seconds >= 0, not {text!r}")
    return Path(path), latency


class UnbuiltModel:
    """Stands in for a model whose spec cannot be built (unknown form, missing key, no
    script file): every ask fails, so the runtime records ``ModelFailed`` and the
    agent's limits end its task, instead of a worker skipping it forever."""

    def __init__(self, spec: str, error: AgentError) -> None:
        self.spec = spec
        self.error = error

    @property
    def name(self) -> str:
        """The spec, as the agent's config names it."""
        return self.spec

    def decide(self, context: Context) -> Decision:
        """Always fails, with why the model could not be built."""
        raise ModelCallError("model_unavailable", str(self.error))


def model_for(spec: str) -> Model:
    """The model an agent's config names; scripted paths are relative to the cwd."""
    kind, _, rest = check_spec(spec).partition(":")
    if kind == "scripted":
        path, latency = scripted_parts(spec)
        if not path.is_file():
            raise ModelSpecError(spec, f"no script file {path}")
        try:
            return ScriptedModel.from_file(path, latency=latency)
        except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON, not decisions
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelSpecError(spec, f"script file {path} cannot be used: {reason}") from None
    try:
        from agentlog.adapters.openai_model import OpenAIChatModel  # the 'openai' extra
    except ImportError as e:
        reason = f"the 'openai' extra is not installed (module {e.name} is missing): "
        raise ModelSpecError(spec, reason + "pip install 'agentlog[openai]'") from None
    try:
        return OpenAIChatModel.from_spec(rest)
    except ModelCallError as e:
        raise ModelSpecError(spec, e.message) from None
