"""Call a flaky operation again, with exponential backoff, a bounded number of times."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class RetriesExhausted(Exception):
    """Every attempt failed; the last error is the cause."""


def backoff(attempt: int, base: float, cap: float) -> float:
    return min(cap, base * 2 ** (attempt - 1))


def retry(
    operation: Callable[[], T],
    max_attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = print,
) -> T:
    """The result of the first successful call of `operation`."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    attempt = 1
    while True:
        try:
            return operation()
        except Exception as exc:
            log(f"attempt {attempt} failed: {exc}")
            if attempt > max_attempts:
                raise RetriesExhausted(f"gave up after {attempt} attempts") from exc
            sleep(backoff(attempt, base_delay, max_delay))
