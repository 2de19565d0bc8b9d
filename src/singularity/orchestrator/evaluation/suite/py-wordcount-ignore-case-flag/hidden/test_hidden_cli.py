import contextlib
import io
import os
import tempfile
import unittest

from wordfreq import main


def run(text: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.txt")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            try:
                main([path, *args])
            except SystemExit as exc:
                return f"exit {exc.code}"
    return out.getvalue()


class IgnoreCaseTest(unittest.TestCase):
    def test_long_flag(self) -> None:
        self.assertEqual(
            run("The cat saw the dog\n", "--ignore-case", "--top", "1"), "     2 the\n"
        )

    def test_short_flag_with_top(self) -> None:
        self.assertEqual(run("B b A a a\n", "-i", "-n", "2"), "     3 a\n     2 b\n")

    def test_default_is_case_sensitive(self) -> None:
        self.assertEqual(run("The the\n", "-n", "5"), "     1 The\n     1 the\n")


if __name__ == "__main__":
    unittest.main()
