import unittest

from invoice import Line, total


class RoundingTest(unittest.TestCase):
    def test_sum_of_cents(self) -> None:
        self.assertEqual(total([Line("pen", "0.10", 3)]), "0.30")
        self.assertEqual(total([Line("a", "0.10"), Line("b", "0.20")]), "0.30")
        self.assertEqual(total([Line("x", "1.15")]), "1.15")

    def test_vat_half_up(self) -> None:
        self.assertEqual(total([Line("book", "19.99")], vat_percent=10), "21.99")
        self.assertEqual(total([Line("tea", "0.05")], vat_percent=10), "0.06")


if __name__ == "__main__":
    unittest.main()
