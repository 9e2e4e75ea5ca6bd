"""Model specs: the string in an agent's config names the model a worker builds."""

from __future__ import annotations

from pathlib import Path

from agentlog.adapters.scripted import ScriptedModel
from agentlog.domain.errors import AgentError
from agentlog.domain.ports import Context, Decision, Model, ModelCallError

SPEC_HELP = "scripted:FILE (a JSON list of decisions) or openai:MODEL"


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
    return spec


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
        path = Path(rest)
        if not path.is_file():
            raise ModelSpecError(spec, f"no script file {path}")
        try:
            return ScriptedModel.from_file(path)
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
