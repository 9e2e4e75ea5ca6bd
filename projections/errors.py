"""Errors of the projections."""

from __future__ import annotations

from agentlog.domain import AgentError


class ViewFailedError(AgentError):
    """A view's handler failed: the view stops at its position; the log is untouched."""

    def __init__(self, view: str, build: int, position: int, cause: Exception) -> None:
        first_line = (str(cause).strip().splitlines() or [""])[0]  # DB errors add SQL lines
        super().__init__(
            f"view {view} (build {build}) stopped at position {position}: "
            f"{type(cause).__name__}: {first_line}"
        )
        self.view = view
        self.build = build
        self.position = position
        self.cause = cause


class CatchUpStoppedError(Exception):
    """A catch-up ended before the head because its caller asked it to stop; the views
    stand where their last batch left them (nothing half-written)."""

    def __init__(self) -> None:
        super().__init__("the catch-up was asked to stop")


class UnknownViewError(AgentError):
    """No view has that name."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no view named {name!r}; views: {', '.join(known)}")
        self.name = name


class ViewStoppedError(AgentError):
    """A view is read while it is stopped on a failure."""

    def __init__(self, view: str, position: int, error: str) -> None:
        super().__init__(
            f"view {view} is stopped at position {position} ({error}); fix the cause, then "
            f"`agentlog projections rebuild {view}`"
        )
        self.view = view
        self.position = position


class SealedValueError(AgentError):
    """A view's sealed column does not open with the store's key (written with another
    key, or before the view sealed it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"a view's encrypted column does not open with this key ({reason}); rebuild the "
            f"views: `agentlog projections rebuild --all`"
        )
        self.reason = reason


class ViewTooNewError(AgentError):
    """A view was built by a newer agentlog (a newer view version) than this one."""

    def __init__(self, view: str, built: int, known: int) -> None:
        super().__init__(
            f"view {view} is at version {built}, made by a newer agentlog (this one knows "
            f"version {known}): upgrade agentlog to rebuild it"
        )
        self.view = view
        self.built = built
        self.known = known
