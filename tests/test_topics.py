"""Stored topics are a contract with every log ever written: they must never drift."""

from __future__ import annotations

from eventsourcing.utils import get_topic, resolve_topic

from agentlog.domain import Agent, Aggregate

PINNED = {
    Agent: "agentlog:Agent@1",
    Agent.Snapshot: "agentlog:Snapshot@1",
    Agent.Created: "agentlog:Agent.Created@1",
    Agent.TaskStarted: "agentlog:Agent.TaskStarted@1",
    Agent.UserMessageReceived: "agentlog:Agent.UserMessageReceived@1",
    Agent.ModelResponded: "agentlog:Agent.ModelResponded@1",
    Agent.ModelFailed: "agentlog:Agent.ModelFailed@1",
    Agent.ToolCallRejected: "agentlog:Agent.ToolCallRejected@1",
    Agent.LimitReached: "agentlog:Agent.LimitReached@1",
    Agent.ToolCalled: "agentlog:Agent.ToolCalled@1",
    Agent.PermissionRequested: "agentlog:Agent.PermissionRequested@1",
    Agent.PermissionGranted: "agentlog:Agent.PermissionGranted@1",
    Agent.PermissionDenied: "agentlog:Agent.PermissionDenied@1",
    Agent.ToolStarted: "agentlog:Agent.ToolStarted@1",
    Agent.ToolSucceeded: "agentlog:Agent.ToolSucceeded@1",
    Agent.ToolFailed: "agentlog:Agent.ToolFailed@1",
    Agent.ToolOutcomeUnknown: "agentlog:Agent.ToolOutcomeUnknown@1",
    Agent.ToolCallRefused: "agentlog:Agent.ToolCallRefused@1",
    Agent.OutcomeUndecided: "agentlog:Agent.OutcomeUndecided@1",
    Agent.ContextCompacted: "agentlog:Agent.ContextCompacted@1",
    Agent.TaskCompleted: "agentlog:Agent.TaskCompleted@1",
    Agent.TaskFailed: "agentlog:Agent.TaskFailed@1",
    Agent.TaskCancelled: "agentlog:Agent.TaskCancelled@1",
}


def test_topics_are_pinned_strings() -> None:
    assert {cls: get_topic(cls) for cls in PINNED} == PINNED


def test_pinned_topics_resolve_to_their_classes() -> None:
    assert all(resolve_topic(topic) is cls for cls, topic in PINNED.items())


def test_every_agent_event_class_is_pinned() -> None:
    events = {
        value
        for value in vars(Agent).values()
        if isinstance(value, type)
        and issubclass(value, Aggregate.Event)
        and value is not Agent.Event
    }
    assert events <= set(PINNED)


def test_created_events_name_the_aggregate_by_its_pinned_topic() -> None:
    agent = Agent.create("a")
    (created,) = agent.collect_events()
    assert isinstance(created, Agent.Created)
    assert created.originator_topic == "agentlog:Agent@1"
