"""Exchange rates, fetched from the bank at most once per ttl."""

from collections.abc import Callable

from cache import TTLCache


class RateBook:
    def __init__(self, fetch: Callable[[str], float], cache: TTLCache) -> None:
        self._fetch = fetch
        self._cache = cache

    def rate(self, currency: str) -> float:
        return self._cache.get_or_load(currency.upper(), self._fetch)
