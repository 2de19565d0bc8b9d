import unittest

from dates import InvalidDate, parse_date


class DatesTest(unittest.TestCase):
    def test_plain_date(self) -> None:
        self.assertEqual(parse_date("2023-07-14"), (2023, 7, 14))

    def test_leap_day(self) -> None:
        self.assertEqual(parse_date("2024-02-29"), (2024, 2, 29))

    def test_not_a_leap_year(self) -> None:
        with self.assertRaises(InvalidDate):
            parse_date("2023-02-29")

    def test_garbage(self) -> None:
        with self.assertRaises(InvalidDate):
            parse_date("14/07/2023")


if __name__ == "__main__":
    unittest.main()
