import unittest

from cache import TTLCache
from rates import RateBook


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CacheTest(unittest.TestCase):
    def test_get_after_put(self) -> None:
        cache = TTLCache(ttl=60, clock=FakeClock())
        cache.put("EUR", 1.1)
        self.assertEqual(cache.get("EUR"), 1.1)

    def test_missing_key(self) -> None:
        self.assertIsNone(TTLCache(ttl=60).get("USD"))

    def test_rate_book_fetches_once(self) -> None:
        calls: list[str] = []

        def fetch(currency: str) -> float:
            calls.append(currency)
            return 0.9

        book = RateBook(fetch, TTLCache(ttl=60, clock=FakeClock()))
        self.assertEqual(book.rate("chf"), 0.9)
        self.assertEqual(book.rate("CHF"), 0.9)
        self.assertEqual(calls, ["CHF"])


if __name__ == "__main__":
    unittest.main()
