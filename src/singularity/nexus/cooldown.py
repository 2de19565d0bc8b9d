"""Deployments that keep failing are skipped for a while, so requests stop paying for them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Cooldowns"]


@dataclass(slots=True)
class _Health:
    failures: int = 0
    cool_until: float = 0.0


class Cooldowns:
    """Counts failures in a row per deployment; after `failures` of them, it cools down."""

    def __init__(
        self, failures: int, seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures = failures
        self.seconds = seconds
        self._clock = clock
        self._health: dict[str, _Health] = {}

    def cooling(self, name: str) -> bool:
        health = self._health.get(name)
        return health is not None and health.cool_until > self._clock()

    def remaining_s(self, name: str) -> float:
        health = self._health.get(name)
        return max(0.0, health.cool_until - self._clock()) if health else 0.0

    def failed(self, name: str) -> bool:
        """Count a failure; True when this one started a cooldown."""
        health = self._health.setdefault(name, _Health())
        health.failures += 1
        if health.failures >= self.failures and self.seconds > 0:
            health.failures = 0
            health.cool_until = self._clock() + self.seconds
            return True
        return False

    def succeeded(self, name: str) -> None:
        self._health.pop(name, None)

    def snapshot(self) -> dict[str, float]:
        """Deployments cooling down now, with the seconds left."""
        now = self._clock()
        return {n: h.cool_until - now for n, h in self._health.items() if h.cool_until > now}
