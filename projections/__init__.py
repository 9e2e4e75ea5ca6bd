"""Views that follow the agent log with their own positions, and their rebuild."""

from agentlog.projections.audit import AuditTrail
from agentlog.projections.catalog import Build
from agentlog.projections.errors import (
    CatchUpStoppedError,
    UnknownViewError,
    ViewFailedError,
    ViewStoppedError,
    ViewTooNewError,
)
from agentlog.projections.projections import Projections, ViewStatus
from agentlog.projections.runnable import RunnableAgents
from agentlog.projections.state import AgentStates
from agentlog.projections.transcript import Transcripts
from agentlog.projections.view import Positioned, View

DEFAULT_VIEWS: tuple[type[View], ...] = (AgentStates, AuditTrail, Transcripts, RunnableAgents)
"""The views every agent log has."""

__all__ = [
    "DEFAULT_VIEWS",
    "AgentStates",
    "AuditTrail",
    "Build",
    "CatchUpStoppedError",
    "Positioned",
    "Projections",
    "RunnableAgents",
    "Transcripts",
    "UnknownViewError",
    "View",
    "ViewFailedError",
    "ViewStatus",
    "ViewStoppedError",
    "ViewTooNewError",
]
