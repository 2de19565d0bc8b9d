import unittest

from retry import RetriesExhausted, backoff, retry


class GiveUpTest(unittest.TestCase):
    def test_gives_up(self) -> None:
        calls: list[int] = []

        def down() -> None:
            calls.append(1)
            if len(calls) > 50:
                raise KeyboardInterrupt("retry never stops")
            raise ConnectionError("gateway down")

        with self.assertRaises(RetriesExhausted) as caught:
            retry(down, max_attempts=3, sleep=lambda _: None, log=lambda _: None)
        self.assertEqual(len(calls), 3)
        self.assertIsInstance(caught.exception.__cause__, ConnectionError)

    def test_backoff_doubles(self) -> None:
        self.assertEqual([backoff(n, 0.5, 3.0) for n in (1, 2, 3, 4)], [0.5, 1.0, 2.0, 3.0])


if __name__ == "__main__":
    unittest.main()
