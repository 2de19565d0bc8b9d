"""Which characters are flagged as hidden, and how they are shown and named."""

from __future__ import annotations

import re
import sys
import unicodedata

from singularity.text_safety import escape_hidden, find_hidden, js_pattern, warning


def test_every_format_control_and_separator_character_is_flagged() -> None:
    for point in range(sys.maxunicode + 1):
        char = chr(point)
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") and char not in "\t\n\r":
            assert escape_hidden(char) == f"<U+{point:04X}>", hex(point)
    for char in "\u202a\u202e\u2066\u2069\u200e\u200f\u061c\u200b\u200d\u2060\ufeff\u3164":
        assert len(find_hidden(f"a{char}b")) == 1, hex(ord(char))


def test_ordinary_text_is_left_alone() -> None:
    text = "def f(x):\n\treturn x  # שלום مرحبا 你好 👍🏽 café\r\n"
    assert find_hidden(text) == [] and escape_hidden(text) == text
    assert warning({"diff": text, "file_path": "a.py"}) is None


def test_a_lone_carriage_return_is_flagged_but_not_a_line_end() -> None:
    assert escape_hidden("rm -rf ~\r# fine\r\n") == "rm -rf ~<U+000D># fine\r\n"


def test_positions_and_the_warning_name_where_they_are() -> None:
    diff = "--- a\n+++ b\n+ok\n+x\u202e = 1\n+y\u2066\u2069\n"
    found = find_hidden(diff)
    assert [(h.line, h.column, h.code) for h in found] == [
        (4, 3, "U+202E"),
        (5, 3, "U+2066"),
        (5, 4, "U+2069"),
    ]
    said = warning({"diff": diff, "file_path": "a\u200bb.py", "description": "fine"})
    assert said is not None
    assert said.startswith("This contains 4 hidden or bidirectional Unicode characters")
    assert "in diff lines 4, 5; file_path:" in said


def test_the_browser_gets_the_same_set() -> None:
    # The page compiles it with the "u" flag; written with \u{...}, it reads in Python too.
    as_python = re.compile(
        re.sub(r"\\u\{([0-9A-F]+)\}", lambda m: f"\\U{int(m[1], 16):08X}", js_pattern())
    )
    sample = "".join(chr(p) for p in range(0, 0x3000)) + "\ufeff\U000e0001\r\n\r"
    assert [m.group() for m in as_python.finditer(sample)] == [h.char for h in find_hidden(sample)]
