"""The sandbox that runs untrusted code: bubblewrap, an unprivileged uid, rlimits, a reaper."""

from singularity.genesis.sandbox.command import PYTHON, SANDBOX_PATH, WORK
from singularity.genesis.sandbox.identity import Identity
from singularity.genesis.sandbox.result import RunResult, SandboxUnavailable
from singularity.genesis.sandbox.runner import Sandbox, Step

__all__ = [
    "PYTHON",
    "SANDBOX_PATH",
    "WORK",
    "Identity",
    "RunResult",
    "Sandbox",
    "SandboxUnavailable",
    "Step",
]
