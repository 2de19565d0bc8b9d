import unittest

from cache import TTLCache
from rates import RateBook


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ExpiryTest(unittest.TestCase):
    def test_entry_expires(self) -> None:
        clock = FakeClock()
        cache = TTLCache(ttl=60, clock=clock)
        cache.put("EUR", 1.1)
        clock.now += 61
        self.assertIsNone(cache.get("EUR"))
        rates = iter([1.1, 1.2])
        book = RateBook(lambda currency: next(rates), TTLCache(ttl=60, clock=clock))
        self.assertEqual(book.rate("EUR"), 1.1)
        clock.now += 3600
        self.assertEqual(book.rate("EUR"), 1.2)

    def test_fresh_entry_is_kept(self) -> None:
        clock = FakeClock()
        cache = TTLCache(ttl=60, clock=clock)
        cache.put("EUR", 1.1)
        clock.now += 59
        self.assertEqual(cache.get("EUR"), 1.1)


if __name__ == "__main__":
    unittest.main()
