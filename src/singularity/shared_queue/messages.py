"""The message types of the bus: the design's eight, and the experiments' two.

Each model requires the fields of the design documents that carry a value, so that a message
sent by any pgmq client with only those fields is valid; the design's nullable fields
(description, reason, context, error) may also be left out. Everything we add is optional.
Unknown fields are kept (extra="allow"): a newer sender never loses data through an older reader.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_TOOLS",
    "MAX_TOOL_ARGUMENTS_CHARS",
    "MAX_TOOL_CALLS",
    "MAX_TOOL_SCHEMA_CHARS",
    "TOOL_NAME",
    "ApprovalRequest",
    "ApprovalResponse",
    "BusMessage",
    "ChatMessage",
    "ErrorInfo",
    "ExperimentRequest",
    "ExperimentResult",
    "FunctionCall",
    "FunctionSpec",
    "JobRequest",
    "JobResult",
    "LlmRequest",
    "LlmResult",
    "NamedToolChoice",
    "QuestionRequest",
    "QuestionResponse",
    "QueueName",
    "TaskEvent",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "Usage",
    "json_depth",
    "validate_queue_name",
]

SCHEMA_VERSION = 1
_QUEUE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,46}$")


def validate_queue_name(name: str) -> str:
    """A pgmq queue name we accept: lowercase letters, digits and _, at most 47 characters."""
    if not _QUEUE_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a valid queue name "
            "(lowercase letters, digits and _, starting with a letter, at most 47 characters)"
        )
    return name


QueueName = Annotated[str, AfterValidator(validate_queue_name)]
NonEmpty = Annotated[str, Field(min_length=1)]
# A workspace snapshot's id: the sha256 of its manifest (see shared_queue/manifest.py).
SnapshotId = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

# Request keys and agent ids are indexed (the bus's archives, the services' tables), and
# PostgreSQL cannot index a value of more than about 2.7 kB: they are bounded well below that,
# so that such a message is refused at once instead of failing its handler on every delivery.
MAX_KEY_LENGTH = 500
Key = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]
AgentId = Annotated[str, Field(max_length=MAX_KEY_LENGTH)]

# A deadline is stored as a timestamptz and read back into a Python datetime in the session's
# time zone: one that could fall outside the years 1 to 9999 there would make every list of
# pending requests unreadable. A year's margin at each end covers every time zone.
_EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
_LATEST = datetime(9998, 12, 31, tzinfo=UTC)


def _storable(value: datetime) -> datetime:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        inside = _EARLIEST <= aware.astimezone(UTC) <= _LATEST
    except OverflowError:
        inside = False
    if not inside:
        raise ValueError("must be between the years 2 and 9998 (UTC)")
    return value


Deadline = Annotated[datetime, AfterValidator(_storable)]


def _known_version(value: int) -> int:
    # A version this reader does not know may mean what it cannot tell: the message waits
    # in the dead-letter queue (with the reason) until a reader that knows it redrives it.
    if value < 1:
        raise ValueError("must be at least 1")
    if value > SCHEMA_VERSION:
        raise ValueError(f"version {value} is newer than this reader knows ({SCHEMA_VERSION})")
    return value


class BusMessage(BaseModel):
    """Fields every message may carry."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Annotated[int, AfterValidator(_known_version)] = SCHEMA_VERSION

    @model_validator(mode="after")
    def _finite_numbers(self) -> BusMessage:
        # JSON numbers have no bound, and jsonb keeps them exactly; one beyond a float's range
        # reads as infinity, which no JSON can hold again: such a message could be neither
        # recorded nor answered. Every field counts, nested and extra ones too.
        where = _infinite(self)
        if where is not None:
            raise ValueError(f"{where}: the number is beyond a float's range")
        return self

    def idempotency_key(self) -> str | None:
        """The request this message belongs to; two messages with one key have one effect."""
        return None

    def to_json(self) -> str:
        """The JSON body to send (fields left at None are omitted)."""
        return self.model_dump_json(exclude_none=True)


class Request(BusMessage):
    """A message that asks for a result."""

    request_id: Key | None = None
    reply_to: QueueName | None = None
    agent_id: AgentId | None = None

    def idempotency_key(self) -> str | None:
        return self.request_id or _design_id(self)


class Result(BusMessage):
    """A message that answers a request."""

    request_id: Key

    def idempotency_key(self) -> str | None:
        return self.request_id


def _infinite(value: Any, path: str = "") -> str | None:
    """Where the first number that is not finite is, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path or "a number"
    if isinstance(value, BaseModel):
        items: Any = {**value.__dict__, **(value.__pydantic_extra__ or {})}.items()
    elif isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, inner in items:
        found = _infinite(inner, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _design_id(message: BaseModel) -> str | None:
    value = getattr(message, "id", None)
    return str(value) if value is not None else None


# Tools, in OpenAI's tool-calling shape. A request carries its tools to a provider on every
# call, so they are bounded here, where a request enters Nexus: a hostile one is refused (and
# dead-lettered with the reason) instead of reaching a provider or a model's context.
MAX_TOOLS = 128  # OpenAI's own limit
TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"  # OpenAI's pattern for function names
MAX_TOOL_DESCRIPTION_CHARS = 8192
MAX_TOOL_SCHEMA_CHARS = 65536  # a function's parameters (or a response_format), as JSON text
MAX_TOOL_SCHEMA_DEPTH = 32  # nesting of objects and arrays in a schema or in arguments
MAX_TOOL_ARGUMENTS_CHARS = 262144  # a call's arguments, as the JSON text a model wrote
MAX_TOOL_CALLS = 128  # calls in one message
ToolName = Annotated[str, Field(pattern=TOOL_NAME)]
ToolCallId = Annotated[str, Field(min_length=1, max_length=256)]


def json_depth(value: Any) -> int:
    """How deeply objects and arrays nest in a JSON value (0 for a scalar), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, depth + 1)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _bounded_schema(value: dict[str, Any]) -> dict[str, Any]:
    if json_depth(value) > MAX_TOOL_SCHEMA_DEPTH:
        raise ValueError(f"nests deeper than {MAX_TOOL_SCHEMA_DEPTH} levels")
    size = len(json.dumps(value, separators=(",", ":")))
    if size > MAX_TOOL_SCHEMA_CHARS:
        raise ValueError(f"is {size} characters of JSON, more than {MAX_TOOL_SCHEMA_CHARS}")
    return value


Schema = Annotated[dict[str, Any], AfterValidator(_bounded_schema)]


class FunctionSpec(BaseModel):
    """A function a model may call: its name, what it does, its JSON Schema parameters."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: ToolName
    description: str | None = Field(None, max_length=MAX_TOOL_DESCRIPTION_CHARS)
    parameters: Schema | None = None


class Tool(BaseModel):
    """One tool of a request: `{"type": "function", "function": {...}}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["function"] = "function"
    function: FunctionSpec


class _FunctionName(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ToolName


class NamedToolChoice(BaseModel):
    """`tool_choice` naming the one function the model must call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["function"] = "function"
    function: _FunctionName


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class FunctionCall(BaseModel):
    """What a model asked to run: a function's name, its arguments as the JSON text it wrote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ToolName
    arguments: str = Field(max_length=MAX_TOOL_ARGUMENTS_CHARS)


class ToolCall(BaseModel):
    """One tool call of an assistant message or a result, as OpenAI sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: ToolCallId
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message of a chat conversation, as LLM providers take it.

    An assistant message may carry the `tool_calls` it made; a `tool` message answers one of
    them by its `tool_call_id` (and may repeat the function's `name`).
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[Any] | None = None
    tool_calls: list[ToolCall] | None = Field(None, max_length=MAX_TOOL_CALLS)
    tool_call_id: ToolCallId | None = None
    name: Annotated[str, Field(max_length=256)] | None = None


# Token counts are kept in PostgreSQL integer columns (the services' LLM call logs).
_MAX_TOKENS = 2**31 - 1


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = Field(ge=0, le=_MAX_TOKENS)
    completion_tokens: int = Field(ge=0, le=_MAX_TOKENS)


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: NonEmpty
    message: str


class LlmRequest(Request):
    """`llm_requests`: Singularity asks Nexus for a model call."""

    agent_id: Key
    task_type: NonEmpty
    messages: list[ChatMessage] = Field(min_length=1)
    complexity: Literal["simple", "medium", "complex"] | None = None
    tools: list[Tool] | None = Field(None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None
    response_format: Schema | None = None

    @model_validator(mode="after")
    def _tools_agree(self) -> LlmRequest:
        names = [tool.function.name for tool in self.tools or ()]
        if len(set(names)) != len(names):
            twice = next(name for name in names if names.count(name) > 1)
            raise ValueError(f"tools: {twice!r} is named twice")
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(
                f"tool_choice names {choice.function.name!r}, which is not among the tools"
            )
        if choice == "required" and not names:
            raise ValueError("tool_choice is 'required' but the request has no tools")
        return self


class LlmResult(Result):
    """`llm_results`: the model's answer, or an error."""

    # The assistant's text: "" when it only called tools, never None without an error.
    result: str | None = None
    model: str | None = None
    tool_calls: list[ToolCall] | None = Field(None, max_length=MAX_TOOL_CALLS)
    # Why the model stopped: "stop", "tool_calls", "length", "content_filter", ...
    finish_reason: Annotated[str, Field(max_length=64)] | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    # True when neither the registry nor LiteLLM's price list knows the model's price.
    cost_unknown: bool | None = None
    error: ErrorInfo | None = None
    # Nexus adds what routing did as extra fields, read as extras: tier, attempts,
    # overhead_ms, provider_ms.

    @model_validator(mode="after")
    def _answer_or_error(self) -> LlmResult:
        if self.error is None and (self.result is None or self.model is None):
            raise ValueError("an llm result needs `result` and `model`, or an `error`")
        return self

    def to_json(self) -> str:
        if not self.cost_unknown or self.cost_usd is not None:
            return super().to_json()
        # An unknown cost is said as null, never left out (a reader could take it for 0).
        unset = {name for name, value in self if value is None and name != "cost_usd"}
        return self.model_dump_json(exclude=unset)


class ApprovalRequest(Request):
    """`approval_requests`: a code change for a human to approve."""

    id: UUID
    file_path: NonEmpty
    diff: str
    description: str | None = None
    deadline: Deadline | None = None


class ApprovalResponse(Result):
    """`approval_responses`: the human's decision."""

    approved: bool
    reason: str | None = None


class QuestionRequest(Request):
    """`question_requests`: a question for a human."""

    id: UUID
    question: NonEmpty
    context: Any = None
    deadline: Deadline | None = None


class QuestionResponse(Result):
    """`question_responses`: the human's answer."""

    response: str


class JobRequest(Request):
    """`job_requests`: code for Genesis to run, or a command to run in a workspace.

    Code: `code` in `language`; `mode` is check, lint, run (the default: check first) or test;
    `files` are extra files beside the code, by relative path.

    A command in a workspace: `command` (shell text) run in /work holding a checkout of
    `workspace` (a snapshot id in the bus, see `shared_queue.snapshots`), with the environment
    of `setup` installed as for an experiment (absent or null: the step the workspace declares
    or its layout suggests; shell text: that step; false: nothing installed). This is how an
    agent runs a repository's tests, or any command, on its current work.

    `limits` may lower or raise Genesis's defaults up to its hard maxima (cpu_s, memory_mb,
    wall_s, processes, file_size_mb, open_files, output_bytes, disk_mb).
    """

    id: Key
    code: str | None = None
    language: NonEmpty | None = None
    mode: Literal["check", "lint", "run", "test"] | None = None
    stdin: str | None = None
    args: list[str] | None = None
    files: dict[str, str] | None = None
    limits: dict[str, Any] | None = None
    workspace: SnapshotId | None = None
    command: Annotated[str, Field(min_length=1, max_length=65536)] | None = None
    setup: Annotated[str, Field(min_length=1, max_length=65536)] | Literal[False] | None = None

    @model_validator(mode="after")
    def _code_or_command(self) -> JobRequest:
        code = self.code is not None or self.language is not None
        command = self.workspace is not None or self.command is not None
        if code == command:
            raise ValueError(
                "a job is either `code` in a `language`, or a `command` in a `workspace`"
            )
        if code and (self.code is None or self.language is None):
            raise ValueError("a job of code names both `code` and `language`")
        if command and (self.workspace is None or self.command is None):
            raise ValueError("a job in a workspace names both `workspace` and `command`")
        if command and (self.mode is not None or self.args or self.files):
            raise ValueError("`mode`, `args` and `files` are for code, not for a command")
        if code and self.setup is not None:
            raise ValueError("`setup` is for a command in a workspace")
        return self


class JobResult(Result):
    """`job_results`: what the code did."""

    output: str
    error: str | None = None
    status: str | None = None
    exit_code: int | None = None
    wall_ms: float | None = None
    cpu_ms: float | None = None
    max_rss_kb: int | None = None
    truncated: bool | None = None
    # A command in a workspace: the setup step its run had, or the one that failed.
    environment: dict[str, Any] | None = None


class ExperimentRequest(Request):
    """`experiment_requests`: try a diff on a copy of a repository, against its tests.

    The repository is either `repo`, a path on the Genesis host (a shared checkout), or
    `workspace`, the id of a snapshot stored in the bus (`shared_queue.snapshots`), which any
    worker on any host can fetch; exactly one of them. The repository itself is never changed
    by an experiment.

    `setup` is the step that installs the repository's dependencies before its tests run, in
    the sandbox, with network to the package registries only: absent or null, the step the
    repository declares or its layout suggests (none for a repository with nothing to
    install); shell text, that step instead; false, nothing installed.
    """

    id: Key
    repo: NonEmpty | None = None
    workspace: SnapshotId | None = None
    diff: str
    test_command: NonEmpty
    llm_reduction: float | None = Field(None, ge=0, le=1)
    junit_path: str | None = None
    limits: dict[str, Any] | None = None
    setup: Annotated[str, Field(min_length=1, max_length=65536)] | Literal[False] | None = None

    @model_validator(mode="after")
    def _one_repository(self) -> ExperimentRequest:
        if (self.repo is None) == (self.workspace is None):
            raise ValueError(
                "an experiment names its repository once: `repo` (a path on the worker) or "
                "`workspace` (a snapshot id)"
            )
        return self


class ExperimentResult(Result):
    """`experiment_results`: the measurements and the recommendation, or an error."""

    status: NonEmpty
    recommendation: Literal["merge", "merge_with_adaptations", "rollback"] | None = None
    success_rate: float | None = None
    regression: float | None = None
    experiment_id: str | None = None
    error: str | None = None
    # The setup step the runs had, or the one that failed with the end of its output.
    environment: dict[str, Any] | None = None


class TaskEvent(BusMessage):
    """`task_events`: one step of a Singularity instance's task (a state reached, a step of
    its agent loop), for Nexus's views of the fleet. Sent from the instance's outbox (its
    `task_events` table), in order; a copy sent twice has the same key and one effect."""

    instance: int = Field(ge=1, le=999)
    task_id: int = Field(ge=1, le=2**62)
    event_id: int = Field(ge=1, le=2**62)
    at: Deadline
    state: Annotated[str, Field(min_length=1, max_length=64)]
    message: Annotated[str, Field(max_length=8192)]
    agent_id: AgentId | None = None
    description: Annotated[str, Field(max_length=8192)] | None = None
    repo: Annotated[str, Field(max_length=4096)] | None = None
    outcome: Annotated[str, Field(max_length=64)] | None = None

    def idempotency_key(self) -> str | None:
        return f"{self.instance}:{self.task_id}:{self.event_id}"
