"""search_files: regular expressions over the workspace, bounded in time and output."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from orchestrator.agent.agent_support import call, small
from singularity.orchestrator.agent import WorkspaceTools


def test_matching_lines_as_path_line_text(tools: WorkspaceTools) -> None:
    found = call(tools, "search_files", pattern=r"return a \+ b")
    assert found.ok
    assert found.text.splitlines() == [
        "src/app/main.py:2:     return a + b",
        "src/app/main.py:6:     return a + b",
    ]


def test_search_below_a_path_and_by_glob(tools: WorkspaceTools) -> None:
    assert call(tools, "search_files", pattern="App", path="src").text == "No matches."
    assert call(tools, "search_files", pattern="^#", glob="*.md").text == "README.md:1: # App"
    assert call(tools, "search_files", pattern="def", glob="*.md").text == "No matches."


def test_search_skips_git_binary_and_huge_files(workspace: Path) -> None:
    (workspace / "blob.bin").write_bytes(b"needle\0")
    (workspace / "huge.txt").write_text("needle\n" * 200)
    (workspace / "small.txt").write_text("a needle\n")
    (workspace / ".git" / "needle").write_text("needle\n")
    found = call(small(workspace, max_file_bytes=1000), "search_files", pattern="needle")
    assert found.text.splitlines() == [
        "small.txt:1: a needle",
        "[2 binary, huge or unreadable files skipped]",
    ]


def test_search_never_follows_links_nor_opens_fifos(workspace: Path, outside: Path) -> None:
    (workspace / "etc").symlink_to("/etc")
    (workspace / "elsewhere").symlink_to(outside)
    (workspace / "secret.txt").symlink_to(outside / "secret.txt")
    os.mkfifo(workspace / "pipe")
    found = call(WorkspaceTools(workspace), "search_files", pattern="root:|outside")
    assert found.text == "No matches."
    refused = call(WorkspaceTools(workspace), "search_files", pattern="root:", path="etc")
    assert not refused.ok and "etc is a symbolic link" in refused.text


def test_a_catastrophic_pattern_times_out_promptly(workspace: Path) -> None:
    (workspace / "aaa.txt").write_text("a" * 5000 + "!\n")
    tools = small(workspace, search_seconds=0.5)
    started = time.monotonic()
    stopped = call(tools, "search_files", pattern="(a+)+$")
    assert time.monotonic() - started < 5
    assert not stopped.ok
    assert "took longer than 0.5 seconds and was stopped (in aaa.txt, line 1)" in stopped.text


@pytest.mark.parametrize("pattern", ["a{1000000000}", "(?:a{1000}){1000}", "(?:x{400}y{400})"])
def test_patterns_that_would_unroll_huge_are_refused(tools: WorkspaceTools, pattern: str) -> None:
    refused = call(tools, "search_files", pattern=pattern)
    assert not refused.ok and "repeats too much" in refused.text


def test_escaped_braces_and_small_counts_pass(tools: WorkspaceTools) -> None:
    assert call(tools, "search_files", pattern=r"\{1000000\}").text == "No matches."
    assert call(tools, "search_files", pattern=r"[a-z]{3}\(a, b\)").ok


def test_invalid_and_empty_patterns_get_clear_errors(tools: WorkspaceTools) -> None:
    broken = call(tools, "search_files", pattern="(")
    assert not broken.ok and "not a valid regular expression" in broken.text
    assert "pattern is empty" in call(tools, "search_files", pattern="").text


def test_matches_and_lines_are_capped(workspace: Path) -> None:
    (workspace / "many.txt").write_text("hit " + "x" * 50 + "\n" + "hit\n" * 20)
    tools = small(workspace, max_search_matches=5, max_line_chars=10)
    found = call(tools, "search_files", pattern="hit").text.splitlines()
    assert found[0] == "many.txt:1: hit xxxxxx [line cut: 44 more characters]"
    assert len(found) == 6
    assert found[-1] == "[stopped at 5 matches; narrow the search]"


def test_non_utf8_text_is_searched(workspace: Path) -> None:
    (workspace / "latin1.txt").write_bytes(b"caf\xe9 needle\n")
    found = call(WorkspaceTools(workspace), "search_files", pattern="needle")
    assert found.text == "latin1.txt:1: caf\ufffd needle"


def test_reading_many_files_is_bounded_by_the_same_deadline(workspace: Path) -> None:
    for number in range(50):
        (workspace / f"f{number:02}.txt").write_text("text\n")
    stopped = call(small(workspace, search_seconds=0.0), "search_files", pattern="never")
    assert not stopped.ok and "took longer than 0.0 seconds" in stopped.text
