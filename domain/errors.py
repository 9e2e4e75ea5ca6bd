"""One hierarchy of domain errors, each carrying the facts a caller needs."""

from __future__ import annotations

from uuid import UUID


class AgentError(Exception):
    """Base class of every error agentlog raises on purpose."""


class UnknownAgentError(AgentError):
    """No agent with this id (at this version) is stored."""

    def __init__(self, agent_id: UUID | str, version: int | None = None) -> None:
        at = f" at version {version}" if version is not None else ""
        super().__init__(f"no agent {agent_id}{at}")
        self.agent_id = agent_id
        self.version = version


class NotAnAgentError(AgentError):
    """The command works on agents, and the id names another kind of aggregate."""

    def __init__(self, aggregate_id: UUID, kind: str) -> None:
        super().__init__(
            f"{aggregate_id} is a {kind}, not an agent: this command works on agents only"
        )
        self.aggregate_id = aggregate_id
        self.kind = kind


class AgentFinishedError(AgentError):
    """The agent's task is over; nothing more may happen to it."""

    def __init__(self, agent_id: UUID, status: str) -> None:
        super().__init__(f"agent {agent_id} is {status}; no further commands are accepted")
        self.agent_id = agent_id
        self.status = status


class NoTaskRunningError(AgentError):
    """The command needs a running task and the agent has none."""

    def __init__(self, agent_id: UUID, status: str) -> None:
        super().__init__(f"agent {agent_id} has no running task (status: {status})")
        self.agent_id = agent_id
        self.status = status


class TaskAlreadyRunningError(AgentError):
    """A task was started while another one is running."""

    def __init__(self, agent_id: UUID, goal: str) -> None:
        super().__init__(f"agent {agent_id} is already running a task: {goal!r}")
        self.agent_id = agent_id
        self.goal = goal


class UnknownCallError(AgentError):
    """A command names a tool call the agent has no open record of."""

    def __init__(self, agent_id: UUID, call_id: str) -> None:
        super().__init__(f"agent {agent_id} has no open tool call {call_id!r}")
        self.agent_id = agent_id
        self.call_id = call_id


class DuplicateCallError(AgentError):
    """A tool call id was used twice."""

    def __init__(self, agent_id: UUID, call_id: str) -> None:
        super().__init__(f"agent {agent_id} already has a tool call {call_id!r}")
        self.agent_id = agent_id
        self.call_id = call_id


class CallStageError(AgentError):
    """A tool-call command arrived when the call is in the wrong stage."""

    def __init__(self, agent_id: UUID, call_id: str, stage: str, command: str) -> None:
        super().__init__(
            f"cannot {command} tool call {call_id!r} of agent {agent_id}: it is {stage}"
        )
        self.agent_id = agent_id
        self.call_id = call_id
        self.stage = stage
        self.command = command


class PermissionRequiredError(AgentError):
    """A call whose policy is 'ask' was started without a grant."""

    def __init__(self, agent_id: UUID, call_id: str, tool: str) -> None:
        super().__init__(f"tool call {call_id!r} ({tool}) of agent {agent_id} needs a grant first")
        self.agent_id = agent_id
        self.call_id = call_id
        self.tool = tool


class ToolDeniedError(AgentError):
    """A call whose policy is 'deny' may never run."""

    def __init__(self, agent_id: UUID, call_id: str, tool: str) -> None:
        super().__init__(f"tool {tool} is denied by policy (call {call_id!r}, agent {agent_id})")
        self.agent_id = agent_id
        self.call_id = call_id
        self.tool = tool


class ArgsHashMismatchError(AgentError):
    """A permission decision names arguments other than the call's."""

    def __init__(self, agent_id: UUID, call_id: str, expected: str, given: str) -> None:
        super().__init__(
            f"decision for tool call {call_id!r} of agent {agent_id} is bound to arguments "
            f"{given[:12]}, but the call's arguments hash to {expected[:12]}"
        )
        self.agent_id = agent_id
        self.call_id = call_id
        self.expected = expected
        self.given = given


class RerunNotAllowedError(AgentError):
    """A side-effecting call that was started may not be re-run blindly."""

    def __init__(self, agent_id: UUID, call_id: str) -> None:
        super().__init__(
            f"tool call {call_id!r} of agent {agent_id} is side-effecting and already started; "
            "record its outcome as unknown and reconcile it instead of re-running it"
        )
        self.agent_id = agent_id
        self.call_id = call_id


class OpenCallsError(AgentError):
    """The task cannot complete while tool calls are still open."""

    def __init__(self, agent_id: UUID, call_ids: tuple[str, ...]) -> None:
        super().__init__(f"agent {agent_id} still has open tool calls: {', '.join(call_ids)}")
        self.agent_id = agent_id
        self.call_ids = call_ids


class CompactionRangeError(AgentError):
    """A compaction must cover a range of versions that exists and is new."""

    def __init__(self, agent_id: UUID, through: int, low: int, high: int) -> None:
        super().__init__(
            f"agent {agent_id}: cannot compact through version {through}; "
            f"it must be above {low} and at most {high}"
        )
        self.agent_id = agent_id
        self.through = through


class CompactionSplitsCallError(AgentError):
    """A compaction would summarise a model's tool call away and keep its result (or the
    other way round): the context would hold a tool message without its call."""

    def __init__(
        self, agent_id: UUID, through: int, call_id: str, before: int | None, after: int | None
    ) -> None:
        safe = " or ".join(f"v{v}" for v in (before, after) if v is not None)
        hint = f"compact through {safe}" if safe else "nothing before it is left to compact"
        if after is None:
            hint += f"; call {call_id!r} has no result yet"
        super().__init__(
            f"agent {agent_id}: cannot compact through version {through}: it would split "
            f"tool call {call_id!r} from its result; {hint}"
        )
        self.agent_id = agent_id
        self.through = through
        self.call_id = call_id
        self.before = before
        self.after = after


class ForkPointError(AgentError):
    """An agent cannot be forked at that version (a tool call there has no outcome yet)."""

    def __init__(self, agent_id: UUID, version: int, reason: str) -> None:
        super().__init__(f"cannot fork agent {agent_id} at version {version}: {reason}")
        self.agent_id = agent_id
        self.version = version
        self.reason = reason


class SummaryFailedError(AgentError):
    """The model asked to summarise a context gave no summary."""

    def __init__(self, agent_id: UUID, model: str, reason: str) -> None:
        super().__init__(f"agent {agent_id}: model {model} could not summarise: {reason}")
        self.agent_id = agent_id
        self.model = model
        self.reason = reason


class DamagedHistoryError(AgentError):
    """An agent's stored history has a hole or a record that no longer reads."""

    def __init__(self, agent_id: UUID | str, version: int, reason: str) -> None:
        super().__init__(self.describe(agent_id, version, reason))
        self.agent_id = agent_id
        self.version = version
        self.reason = reason

    @staticmethod
    def describe(agent_id: UUID | str, version: int, reason: str) -> str:
        """The message: the agent, the version, why, and where to look further."""
        return (
            f"the history of agent {agent_id} is damaged at version {version}: {reason} "
            "(run `agentlog verify` to check the whole log)"
        )


class StoredEventError(DamagedHistoryError):
    """A stored record could not be turned back into an event."""

    def __init__(self, agent_id: UUID | str, version: int, topic: str, reason: str) -> None:
        super().__init__(agent_id, version, f"stored event {topic!r} cannot be read: {reason}")
        self.topic = topic
        self.reason = reason


class UnknownTopicError(StoredEventError):
    """A stored record names a class this process does not know (its module is not
    imported): a user's own aggregate, read without the code that defines it."""

    def __init__(self, agent_id: UUID | str, version: int, topic: str) -> None:
        super().__init__(
            agent_id,
            version,
            topic,
            "unknown topic (no class registered): import the module that defines it "
            "(agentlog --app module:Class)",
        )

    @staticmethod
    def describe(agent_id: UUID | str, version: int, reason: str) -> str:
        """Not damage: the code that reads this event is not loaded."""
        return f"agent {agent_id} version {version}: {reason}"


class StorageURLError(AgentError):
    """A storage URL that agentlog cannot use."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"storage URL {url!r}: {reason}")
        self.url = url
        self.reason = reason


class AmbiguousAgentError(AgentError):
    """An id prefix matches more than one agent."""

    def __init__(self, prefix: str, matches: int) -> None:
        super().__init__(f"{matches} agents have ids starting with {prefix!r}; give more of the id")
        self.prefix = prefix
        self.matches = matches


class StaleSnapshotError(AgentError):
    """A snapshot from before a state change that only a replay can compute."""

    def __init__(self, agent_id: UUID, version: int) -> None:
        super().__init__(f"snapshot of {agent_id} at version {version} predates the state schema")
        self.agent_id = agent_id
        self.version = version


class InvalidEventDataError(AgentError):
    """A command's data cannot be recorded (not JSON-exact, or of the wrong type)."""

    def __init__(self, agent_id: UUID, event: str, reason: str) -> None:
        super().__init__(f"agent {agent_id}: cannot record {event}: {reason}")
        self.agent_id = agent_id
        self.event = event
        self.reason = reason


class TextTooLargeError(AgentError):
    """A goal or message is longer than an event may hold (``MAX_TEXT_CHARS``)."""

    def __init__(self, agent_id: UUID, what: str, length: int, limit: int) -> None:
        super().__init__(f"the {what} has {length:,} characters; at most {limit:,} fit")
        self.agent_id = agent_id
        self.what = what
        self.length = length
        self.limit = limit


class BrokenChainError(AgentError):
    """A stored event does not match its hash, or does not link to its predecessor."""

    def __init__(self, agent_id: UUID, version: int, event: str, reason: str) -> None:
        super().__init__(f"agent {agent_id}, version {version} ({event}): {reason}")
        self.agent_id = agent_id
        self.version = version
        self.event = event
        self.reason = reason


class CallTamperedError(AgentError):
    """A call's arguments are not the ones recorded, granted and chained: it must not run."""

    def __init__(self, agent_id: UUID, call_id: str, reason: str) -> None:
        super().__init__(f"refused to run {call_id!r} of agent {agent_id}: {reason}")
        self.agent_id = agent_id
        self.call_id = call_id
        self.reason = reason


class CipherKeyError(AgentError):
    """The cipher key given (or not given) does not fit the store's key check."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url


class CipherKeyRequiredError(CipherKeyError):
    """The store was created with a cipher key and was opened without one."""

    def __init__(self, url: str) -> None:
        super().__init__(
            url,
            f"the store at {url} is encrypted: give its key (--cipher-key or AGENTLOG_CIPHER_KEY)",
        )


class WrongCipherKeyError(CipherKeyError):
    """The store was created with another cipher key than the one given."""

    def __init__(self, url: str) -> None:
        super().__init__(url, f"the cipher key does not open the store at {url}")


class UnexpectedCipherKeyError(CipherKeyError):
    """A key was given for a store created without one (it would mix encrypted events in)."""

    def __init__(self, url: str) -> None:
        super().__init__(
            url,
            f"the store at {url} is not encrypted: open it without a cipher key "
            "(with one, its new events would be unreadable without the key)",
        )


class InvalidCipherKeyError(AgentError):
    """A cipher key that is not base64 of 16, 24 or 32 bytes."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the cipher key is not valid ({reason}): "
            "make one with eventsourcing.cipher.AESCipher.create_key(16)"
        )
        self.reason = reason


class ImportFileError(AgentError):
    """A file to import is malformed or breaks a chain; nothing was imported."""

    def __init__(self, line: int | None, reason: str, *, unit: str = "line") -> None:
        where = f"{unit} {line}: " if line is not None else ""
        super().__init__(f"{where}{reason} (nothing was imported)")
        self.line = line
        self.reason = reason
        self.unit = unit


class AgentExistsError(AgentError):
    """An import names an agent the store already holds, with other events: never merged."""

    def __init__(self, agent_id: UUID, reason: str) -> None:
        super().__init__(
            f"agent {agent_id} is already stored and differs from the file ({reason}); "
            "imports never merge (nothing was imported)"
        )
        self.agent_id = agent_id
        self.reason = reason


class SessionCommandError(AgentError):
    """An agentlog command was given to an SDK session, whose items only its SDK adds."""

    def __init__(self, agent_id: UUID, command: str) -> None:
        super().__init__(
            f"agent {agent_id} is an SDK session: its items are added through the SDK's "
            f"session, not by '{command}' (fork it to branch, export it to read it)"
        )
        self.agent_id = agent_id
        self.command = command


class UnreadableThreadError(AgentError):
    """A LangGraph thread's messages cannot be read without LangGraph's saver (their
    payloads are encrypted under the thread's own keys, or in a format only it reads)."""

    def __init__(self, thread_id: str, reason: str) -> None:
        super().__init__(f"thread {thread_id!r}: {reason}")
        self.thread_id = thread_id
        self.reason = reason
