"""Bytes as text for the model: binary sniffing, decoding that keeps bytes, line numbers."""

from __future__ import annotations

import pytest

from singularity.orchestrator.agent.output import ToolError
from singularity.orchestrator.agent.text import (
    decode,
    encode,
    is_binary,
    numbered,
    shown_line,
    split_lines,
)


def test_binary_is_a_nul_near_the_start() -> None:
    assert is_binary(b"PK\x03\x04\0")
    assert not is_binary(b"plain text\n")
    assert not is_binary(b"x" * 9000 + b"\0")  # past the sniffed prefix: treated as text


def test_decoding_round_trips_invalid_utf8() -> None:
    text, valid = decode(b"caf\xe9\n")
    assert not valid
    assert encode(text, "content") == b"caf\xe9\n"
    assert decode("café".encode()) == ("café", True)


def test_encoding_refuses_lone_surrogates_that_are_not_bytes() -> None:
    with pytest.raises(ToolError, match="content is not valid Unicode"):
        encode("\ud800", "content")


def test_lines_split_on_newline_only() -> None:
    assert split_lines("a\nb\n") == ["a", "b"]
    assert split_lines("a\x0cb\u2028c") == ["a\x0cb\u2028c"]
    assert split_lines("") == []
    assert split_lines("a\n\n") == ["a", ""]


def test_lines_are_shown_cut_and_numbered() -> None:
    assert numbered(7, "x = 1\r", 100) == "     7\tx = 1"
    assert shown_line("abcdef", 3) == "abc [line cut: 3 more characters]"
    assert shown_line("caf\udce9", 10) == "caf\ufffd"
