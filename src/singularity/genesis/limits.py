"""Resource limits of one sandboxed run: the defaults, the maxima, and reading them from a request.

`memory_mb` bounds the address space (RLIMIT_AS), not the resident memory. Runtimes that reserve
large virtual ranges up front (V8 reserves about 700 MB before it runs a line) get a per-language
allowance on top of it (see `Language.address_space_mb`); their heap is still capped at
`memory_mb` by the runtime's own flag.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["DEFAULT_LIMITS", "HARD_LIMITS", "Limits", "limits_from_request"]

MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one sandboxed process tree may use; every value applies to each step of a job."""

    cpu_s: float = 10.0  # RLIMIT_CPU of each process, rounded up to whole seconds
    memory_mb: int = 512  # RLIMIT_AS of each process (plus a per-language allowance)
    wall_s: float = 30.0  # wall clock; the whole tree is killed when it runs out
    processes: int = 64  # processes and threads of the tree (RLIMIT_NPROC)
    file_size_mb: int = 16  # largest file a process may write (RLIMIT_FSIZE)
    open_files: int = 256  # RLIMIT_NOFILE
    output_bytes: int = 1_048_576  # per stream; more kills the run (OUTPUT_LIMIT)
    disk_mb: int = 64  # size of the tmpfs at /work, and of the one at /tmp
    stdin_bytes: int = 8 * MIB  # more is refused before the run (UNSUPPORTED)


DEFAULT_LIMITS = Limits()
HARD_LIMITS = Limits(
    cpu_s=300.0,
    memory_mb=4096,
    wall_s=600.0,
    processes=512,
    file_size_mb=512,
    open_files=4096,
    output_bytes=16 * MIB,
    disk_mb=1024,
    stdin_bytes=16 * MIB,
)

_FIELDS = {f.name: f.type for f in fields(Limits)}


def limits_from_request(
    values: Mapping[str, Any] | None,
    *,
    defaults: Limits = DEFAULT_LIMITS,
    maximum: Limits = HARD_LIMITS,
) -> Limits:
    """`defaults` with the request's values; ValueError (one line) for a value it may not have.

    A key set to None keeps its default.
    """
    if values is None:
        return defaults
    if not isinstance(values, Mapping):
        raise ValueError(f"limits must be an object of {', '.join(_FIELDS)}")
    changes = {
        key: _checked(key, value, getattr(maximum, key) if key in _FIELDS else None)
        for key, value in values.items()
        if value is not None
    }
    return replace(defaults, **changes)


def _checked(key: str, value: Any, ceiling: float | None) -> float | int:
    if ceiling is None:
        raise ValueError(f"unknown limit {key!r}; known: {', '.join(_FIELDS)}")
    whole = _FIELDS[key] == "int"
    allowed = (
        f"an integer from 1 to {ceiling}" if whole else f"a number above 0 and at most {ceiling:g}"
    )
    if not _is_number(value, whole) or not 0 < value <= ceiling:
        raise ValueError(f"limits.{key} must be {allowed}; got {value!r}")
    return value if whole else float(value)


def _is_number(value: Any, whole: bool) -> bool:
    if isinstance(value, bool):
        return False
    if whole:
        return isinstance(value, int)
    try:
        return isinstance(value, int | float) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float (JSON numbers have no bound)
        return False
