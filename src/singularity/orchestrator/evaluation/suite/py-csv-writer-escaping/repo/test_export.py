import unittest

from export import export_contacts


class ExportTest(unittest.TestCase):
    def test_header_and_rows(self) -> None:
        text = export_contacts([{"name": "Ann", "company": "Acme", "email": "ann@acme.test"}])
        self.assertEqual(text, "name,company,email,note\r\nAnn,Acme,ann@acme.test,\r\n")

    def test_no_contacts(self) -> None:
        self.assertEqual(export_contacts([]), "name,company,email,note\r\n")


if __name__ == "__main__":
    unittest.main()
