import unittest

from releases import latest, sorted_releases


class ReleasesTest(unittest.TestCase):
    def test_sorted(self) -> None:
        self.assertEqual(sorted_releases(["1.2.0", "1.0.1", "1.1.0"]), ["1.0.1", "1.1.0", "1.2.0"])

    def test_latest(self) -> None:
        self.assertEqual(latest(["0.9.0", "1.0.0"]), "1.0.0")

    def test_bad_version(self) -> None:
        with self.assertRaises(ValueError):
            latest(["1.0"])


if __name__ == "__main__":
    unittest.main()
