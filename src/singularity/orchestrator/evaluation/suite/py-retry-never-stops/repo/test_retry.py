import unittest

from retry import retry


class RetryTest(unittest.TestCase):
    def test_first_call_succeeds(self) -> None:
        self.assertEqual(retry(lambda: 42, sleep=lambda _: None, log=lambda _: None), 42)

    def test_recovers_after_failures(self) -> None:
        outcomes = iter([ConnectionError("down"), ConnectionError("down"), "paid"])

        def charge() -> str:
            outcome = next(outcomes)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        slept: list[float] = []
        self.assertEqual(retry(charge, sleep=slept.append, log=lambda _: None), "paid")
        self.assertEqual(len(slept), 2)


if __name__ == "__main__":
    unittest.main()
