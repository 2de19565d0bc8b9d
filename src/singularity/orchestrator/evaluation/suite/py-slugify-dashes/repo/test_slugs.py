import unittest

from slugs import slugify, unique_slug


class SlugsTest(unittest.TestCase):
    def test_simple(self) -> None:
        self.assertEqual(slugify("Release notes 2024"), "release-notes-2024")

    def test_unique(self) -> None:
        self.assertEqual(unique_slug("Notes", {"notes", "notes-2"}), "notes-3")


if __name__ == "__main__":
    unittest.main()
