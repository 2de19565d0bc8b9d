"""edit_file: exact search/replace that happens once or not at all."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from orchestrator.agent.agent_support import MAIN_PY, call, small
from singularity.orchestrator.agent import WorkspaceTools

MAIN = "src/app/main.py"


def test_a_unique_search_text_is_replaced(tools: WorkspaceTools, workspace: Path) -> None:
    edited = call(
        tools,
        "edit_file",
        path=MAIN,
        old_text="def sub(a, b):\n    return a + b",
        new_text="def sub(a, b):\n    return a - b",
    )
    assert (edited.ok, edited.changed) == (True, (MAIN,))
    assert edited.text.splitlines()[0] == f"Edited {MAIN} at line 5:"
    assert "     6\t    return a - b" in edited.text
    assert (workspace / MAIN).read_text() == MAIN_PY.replace("a + b\n", "a - b\n").replace(
        "a - b", "a + b", 1
    )


def test_a_search_text_found_twice_is_refused(tools: WorkspaceTools, workspace: Path) -> None:
    refused = call(tools, "edit_file", path=MAIN, old_text="return a + b", new_text="return 0")
    assert not refused.ok
    assert "occurs 2 times" in refused.text and "exactly once" in refused.text
    assert (workspace / MAIN).read_text() == MAIN_PY


def test_a_missing_search_text_offers_the_closest_lines(tools: WorkspaceTools) -> None:
    refused = call(tools, "edit_file", path=MAIN, old_text="def sub(a,b):", new_text="x")
    assert not refused.ok
    assert "not found in src/app/main.py (0 occurrences)" in refused.text
    closest = refused.text.split("The closest lines are:\n")[1].splitlines()
    assert closest[0] == "     5\tdef sub(a, b):"
    nothing_alike = call(tools, "edit_file", path=MAIN, old_text="zzzzqqqq", new_text="x")
    assert "Read the file" in nothing_alike.text


def test_empty_or_unchanging_edits_are_refused(tools: WorkspaceTools, workspace: Path) -> None:
    empty = call(tools, "edit_file", path=MAIN, old_text="", new_text="x")
    same = call(tools, "edit_file", path=MAIN, old_text="def add", new_text="def add")
    assert "old_text is empty" in empty.text and "the same" in same.text
    assert (workspace / MAIN).read_text() == MAIN_PY


def test_deleting_text_by_an_empty_replacement(tools: WorkspaceTools, workspace: Path) -> None:
    edited = call(tools, "edit_file", path="README.md", old_text="Adds numbers.\n", new_text="")
    assert edited.ok
    assert (workspace / "README.md").read_text() == "# App\n"


def test_invalid_utf8_bytes_survive_an_edit(workspace: Path) -> None:
    (workspace / "legacy.txt").write_bytes(b"caf\xe9 au lait\nprice: 3\n")
    edited = call(
        WorkspaceTools(workspace), "edit_file", path="legacy.txt", old_text="3", new_text="4"
    )
    assert edited.ok
    assert (workspace / "legacy.txt").read_bytes() == b"caf\xe9 au lait\nprice: 4\n"


def test_an_edit_keeps_the_file_mode(workspace: Path) -> None:
    script = workspace / "run.sh"
    script.write_text("#!/bin/sh\necho old\n")
    script.chmod(0o750)
    assert call(
        WorkspaceTools(workspace), "edit_file", path="run.sh", old_text="old", new_text="new"
    ).ok
    assert stat.S_IMODE(os.stat(script).st_mode) == 0o750


def test_binary_files_and_git_are_not_edited(workspace: Path) -> None:
    (workspace / "blob.bin").write_bytes(b"ab\0cd")
    tools = WorkspaceTools(workspace)
    binary = call(tools, "edit_file", path="blob.bin", old_text="ab", new_text="xy")
    git = call(tools, "edit_file", path=".git/config", old_text="false", new_text="true")
    assert "binary file" in binary.text and "inside .git" in git.text
    assert (workspace / "blob.bin").read_bytes() == b"ab\0cd"
    assert (workspace / ".git" / "config").read_text() == "[core]\n\tbare = false\n"


def test_an_edit_may_not_grow_the_file_past_the_bound(workspace: Path) -> None:
    tools = small(workspace, max_write_bytes=100)
    grown = call(tools, "edit_file", path=MAIN, old_text="def add", new_text="x" * 100)
    assert not grown.ok and "the limit is 100" in grown.text
    assert (workspace / MAIN).read_text() == MAIN_PY


def test_a_crlf_file_is_edited_as_it_was_shown(workspace: Path) -> None:
    (workspace / "win.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    tools = WorkspaceTools(workspace)
    assert call(tools, "read_file", path="win.txt").text.splitlines()[1] == "     2\ttwo"
    edited = call(tools, "edit_file", path="win.txt", old_text="one\ntwo\n", new_text="1\n2\n")
    assert edited.ok
    assert (workspace / "win.txt").read_bytes() == b"1\r\n2\r\nthree\r\n"
