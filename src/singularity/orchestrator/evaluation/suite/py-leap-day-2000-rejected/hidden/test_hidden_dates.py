import unittest

from dates import InvalidDate, is_leap, parse_date


class LeapYearTest(unittest.TestCase):
    def test_year_2000(self) -> None:
        self.assertEqual(parse_date("2000-02-29"), (2000, 2, 29))
        self.assertTrue(is_leap(2400))

    def test_century_not_leap(self) -> None:
        with self.assertRaises(InvalidDate):
            parse_date("1900-02-29")
        self.assertFalse(is_leap(2100))


if __name__ == "__main__":
    unittest.main()
