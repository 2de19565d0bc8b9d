import unittest

from invoice import Line, format_cents, total


class InvoiceTest(unittest.TestCase):
    def test_whole_amounts(self) -> None:
        self.assertEqual(total([Line("desk", "100.00"), Line("chair", "50.00", 2)]), "200.00")

    def test_vat_on_whole_amount(self) -> None:
        self.assertEqual(total([Line("desk", "100")], vat_percent=20), "120.00")

    def test_format(self) -> None:
        self.assertEqual(format_cents(705), "7.05")


if __name__ == "__main__":
    unittest.main()
