import unittest

from releases import latest, sorted_releases


class OrderTest(unittest.TestCase):
    def test_numeric_order(self) -> None:
        versions = ["1.10.0", "1.2.0", "1.9.2", "1.1.0", "10.0.0", "9.0.0"]
        self.assertEqual(
            sorted_releases(versions), ["1.1.0", "1.2.0", "1.9.2", "1.10.0", "9.0.0", "10.0.0"]
        )
        self.assertEqual(latest(["1.9.2", "1.10.0"]), "1.10.0")

    def test_prerelease_before_final(self) -> None:
        self.assertEqual(
            sorted_releases(["2.0.0", "2.0.0-rc1", "1.9.0"]), ["1.9.0", "2.0.0-rc1", "2.0.0"]
        )


if __name__ == "__main__":
    unittest.main()
