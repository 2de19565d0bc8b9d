import unittest

from slugs import slugify, unique_slug


class SlugTest(unittest.TestCase):
    def test_runs_collapse(self) -> None:
        self.assertEqual(slugify("Hello,  World!"), "hello-world")
        self.assertEqual(slugify("--a  b--"), "a-b")
        self.assertEqual(unique_slug("?!", set()), "post")

    def test_accents(self) -> None:
        self.assertEqual(slugify("  Café déjà vu "), "cafe-deja-vu")


if __name__ == "__main__":
    unittest.main()
