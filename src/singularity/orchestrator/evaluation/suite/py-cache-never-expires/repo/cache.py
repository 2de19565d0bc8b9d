"""A small time-limited cache in front of slow lookups."""

import time
from collections.abc import Callable
from typing import Any


class TTLCache:
    """Keeps each value for `ttl` seconds after it was stored."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, Any]] = {}

    def put(self, key: str, value: Any) -> None:
        self._entries[key] = (self._clock(), value)

    def get(self, key: str, default: Any = None) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return default
        stored_at, value = entry
        if self._clock() - stored_at > self.ttl * 1000:
            del self._entries[key]
            return default
        return value

    def get_or_load(self, key: str, load: Callable[[str], Any]) -> Any:
        missing = object()
        value = self.get(key, missing)
        if value is missing:
            value = load(key)
            self.put(key, value)
        return value
