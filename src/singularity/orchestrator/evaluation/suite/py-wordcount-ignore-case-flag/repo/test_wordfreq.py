import contextlib
import io
import os
import tempfile
import unittest

from wordfreq import count_words, main, top


class WordfreqTest(unittest.TestCase):
    def test_count(self) -> None:
        counts = count_words(["a b a", "c a b"])
        self.assertEqual(top(counts, 2), [("a", 3), ("b", 2)])

    def test_main_prints_top_words(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "t.txt")
            with open(path, "w", encoding="utf-8") as text:
                text.write("to be or not to be\n")
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                main([path, "--top", "2"])
        self.assertEqual(out.getvalue(), "     2 be\n     2 to\n")


if __name__ == "__main__":
    unittest.main()
