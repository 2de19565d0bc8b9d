"""The bus: pgmq queues in the shared_queue database, and the one consumer runtime.

Import from here; the modules behind it are free to move.
"""

from singularity.shared_queue.bus import Bus, consumer_options, open_bus
from singularity.shared_queue.catalog import QUEUES, QueueSpec, dead_letter_queue, queue_spec
from singularity.shared_queue.consumer import Consumer
from singularity.shared_queue.deadletter import DeadLetter, list_dead_letters, redrive
from singularity.shared_queue.delivery import (
    ConsumerOptions,
    Delivery,
    Handler,
    InvalidHandler,
    PermanentFailure,
    Reply,
)
from singularity.shared_queue.install import apply_grants, ensure_queue, install_bus
from singularity.shared_queue.listener import Listener
from singularity.shared_queue.messages import (
    ApprovalRequest,
    ApprovalResponse,
    BusMessage,
    ExperimentRequest,
    ExperimentResult,
    JobRequest,
    JobResult,
    LlmRequest,
    LlmResult,
    QuestionRequest,
    QuestionResponse,
    TaskEvent,
    Tool,
    ToolCall,
    validate_queue_name,
)
from singularity.shared_queue.metrics import (
    QueueDepth,
    QueueMetrics,
    list_queues,
    queue_depths,
    queue_metrics,
)
from singularity.shared_queue.publisher import Publisher
from singularity.shared_queue.replies import ReplyTargets
from singularity.shared_queue.requester import (
    Answered,
    Draft,
    Ledger,
    Recorded,
    Requester,
    RequestTimedOut,
    Route,
)
from singularity.shared_queue.retention import prune_archives, prune_sent_once
from singularity.shared_queue.snapshots import (
    Published,
    Snapshot,
    SnapshotRefused,
    publish_snapshot,
    publish_workspace,
    snapshot_of,
)
from singularity.shared_queue.workspace_store import WorkspaceStore, prune_workspaces

__all__ = [
    "QUEUES",
    "Answered",
    "ApprovalRequest",
    "ApprovalResponse",
    "Bus",
    "BusMessage",
    "Consumer",
    "ConsumerOptions",
    "DeadLetter",
    "Delivery",
    "Draft",
    "ExperimentRequest",
    "ExperimentResult",
    "Handler",
    "InvalidHandler",
    "JobRequest",
    "JobResult",
    "Ledger",
    "Listener",
    "LlmRequest",
    "LlmResult",
    "PermanentFailure",
    "Published",
    "Publisher",
    "QuestionRequest",
    "QuestionResponse",
    "QueueDepth",
    "QueueMetrics",
    "QueueSpec",
    "Recorded",
    "Reply",
    "ReplyTargets",
    "RequestTimedOut",
    "Requester",
    "Route",
    "Snapshot",
    "SnapshotRefused",
    "TaskEvent",
    "Tool",
    "ToolCall",
    "WorkspaceStore",
    "apply_grants",
    "consumer_options",
    "dead_letter_queue",
    "ensure_queue",
    "install_bus",
    "list_dead_letters",
    "list_queues",
    "open_bus",
    "prune_archives",
    "prune_sent_once",
    "prune_workspaces",
    "publish_snapshot",
    "publish_workspace",
    "queue_depths",
    "queue_metrics",
    "queue_spec",
    "redrive",
    "snapshot_of",
    "validate_queue_name",
]
