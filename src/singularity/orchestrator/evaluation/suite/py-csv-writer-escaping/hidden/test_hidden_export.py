import csv
import io
import unittest

from export import export_contacts, format_field


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


class EscapingTest(unittest.TestCase):
    def test_comma(self) -> None:
        rows = parse(export_contacts([{"name": "Bo", "company": "Smith, Jones & Co"}]))
        self.assertEqual(rows[1], ["Bo", "Smith, Jones & Co", "", ""])

    def test_quote_and_newline(self) -> None:
        note = 'said "call me"\nafter 5'
        rows = parse(export_contacts([{"name": "Cy", "note": note}, {"name": "Di"}]))
        self.assertEqual(rows[1], ["Cy", "", "", note])
        self.assertEqual(rows[2], ["Di", "", "", ""])
        self.assertEqual(format_field('a"b'), '"a""b"')

    def test_plain_fields_unquoted(self) -> None:
        self.assertEqual(format_field("Acme"), "Acme")
        self.assertEqual(format_field(None), "")


if __name__ == "__main__":
    unittest.main()
