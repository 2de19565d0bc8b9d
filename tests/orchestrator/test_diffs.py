"""Diffs from model answers: found in fences or bare, repaired so plain `git apply` takes
them, their files named, and unsafe ones refused before git sees them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from singularity.orchestrator.diffs import (
    diff_problem,
    extract_diff,
    normalise_diff,
    touched_files,
)

# A blank context line is a single space, written \x20 here.
CHANGE = """\
--- a/cli.py
+++ b/cli.py
@@ -1,3 +1,4 @@
 import sys
+import argparse
\x20
 def main():
"""


def git_applies(tree: Path, diff: str) -> bool:
    """Whether plain `git apply --check` (as the sandbox runs it) accepts the diff in `tree`."""
    env = {"PATH": os.environ["PATH"], "HOME": "/nonexistent", "GIT_CEILING_DIRECTORIES": "/"}
    done = subprocess.run(
        ["git", "apply", "--check", "-"], cwd=tree, input=diff, text=True, capture_output=True,
        env=env, check=False,
    )  # fmt: skip
    return done.returncode == 0


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "cli.py").write_text("import sys\n\ndef main():\n    pass\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "util.py").write_text("x = 1\ny = 2\n")
    return tmp_path


def test_a_diff_fenced_block_is_the_diff() -> None:
    answer = f"Here is the change.\n\n```diff\n{CHANGE}```\n\nIt imports argparse."
    assert extract_diff(answer) == CHANGE


def test_a_patch_fence_and_a_longer_fence_count_too() -> None:
    assert extract_diff(f"````patch\n{CHANGE}````") == CHANGE
    assert extract_diff(f"~~~diff\n{CHANGE}~~~\n") == CHANGE


def test_several_diff_blocks_are_joined_in_order() -> None:
    second = "--- a/b.py\n+++ b/b.py\n@@ -1,1 +1,1 @@\n-x\n+y\n"
    answer = f"First:\n```diff\n{CHANGE}```\nThen:\n```diff\n{second}```\n"
    assert extract_diff(answer) == CHANGE + second
    assert touched_files(extract_diff(answer) or "") == ["cli.py", "b.py"]


def test_a_context_line_of_backticks_does_not_close_the_fence() -> None:
    diff = "--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n ```\n-old\n+new\n ```\n"
    assert extract_diff(f"```diff\n{diff}```") == diff


def test_an_untagged_fence_holding_a_diff_is_taken() -> None:
    answer = f"```python\nprint('no')\n```\n\n```\n{CHANGE}```"
    assert extract_diff(answer) == CHANGE


def test_a_bare_diff_runs_from_its_header_to_the_prose_after_it() -> None:
    answer = f"Sure, here it is:\ndiff --git a/cli.py b/cli.py\n{CHANGE}\nThis adds an import.\n"
    assert extract_diff(answer) == f"diff --git a/cli.py b/cli.py\n{CHANGE}"


def test_an_answer_without_a_diff_gives_none() -> None:
    assert extract_diff("I cannot do that without the file's contents.") is None
    assert extract_diff("```python\nprint(1)\n```") is None
    assert extract_diff("") is None


def test_the_diff_always_ends_with_one_newline() -> None:
    diff = extract_diff(f"```diff\n{CHANGE.rstrip()}\n\n\n```")
    assert diff == CHANGE


def test_wrong_hunk_counts_are_recounted_so_git_applies_the_diff(tree: Path) -> None:
    wrong = CHANGE.replace("@@ -1,3 +1,4 @@", "@@ -1,7 +1,2 @@")
    assert not git_applies(tree, wrong)
    fixed = normalise_diff(wrong)
    assert "@@ -1,3 +1,4 @@" in fixed
    assert git_applies(tree, fixed)


def test_an_empty_line_in_a_hunk_counts_as_blank_context(tree: Path) -> None:
    stripped = CHANGE.replace("\n \n", "\n\n")  # models often drop the blank line's space
    assert git_applies(tree, normalise_diff(stripped))


def test_blank_lines_between_files_are_not_counted_as_context(tree: Path) -> None:
    second = "--- a/pkg/util.py\n+++ b/pkg/util.py\n@@ -1,2 +1,2 @@\n-x = 1\n+x = 3\n y = 2\n"
    diff = normalise_diff(CHANGE + "\n\n" + second)
    assert "\n\n" not in diff
    assert git_applies(tree, diff)


def test_headers_without_prefixes_get_git_prefixes(tree: Path) -> None:
    bare = "--- pkg/util.py\n+++ pkg/util.py\n@@ -1,2 +1,2 @@\n-x = 1\n+x = 3\n y = 2\n"
    assert not git_applies(tree, bare)  # git's -p1 would look for util.py
    fixed = normalise_diff(bare)
    assert fixed.startswith("--- a/pkg/util.py\n+++ b/pkg/util.py\n")
    assert git_applies(tree, fixed)


def test_a_new_file_without_prefix_gets_one(tree: Path) -> None:
    diff = normalise_diff("--- /dev/null\n+++ pkg/new.py\n@@ -0,0 +1 @@\n+hello = 1\n")
    assert diff == "--- /dev/null\n+++ b/pkg/new.py\n@@ -0,0 +1,1 @@\n+hello = 1\n"
    assert git_applies(tree, diff)


def test_timestamps_after_names_are_kept() -> None:
    diff = normalise_diff("--- x.py\t2024-01-01\n+++ x.py\t2024-01-02\n@@ -1 +1 @@\n-a\n+b\n")
    assert diff.startswith("--- a/x.py\t2024-01-01\n+++ b/x.py\t2024-01-02\n")


def test_a_removed_line_starting_with_dashes_is_not_a_header() -> None:
    diff = "--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1,1 @@\n--- old comment\n select 1;\n"
    assert normalise_diff(diff) == diff
    assert touched_files(diff) == ["q.sql"]


def test_touched_files_strip_prefixes_and_dev_null() -> None:
    diff = (
        "--- a/src/old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
        "--- /dev/null\n+++ b/src/new.py\n@@ -0,0 +1 @@\n+x\n"
        "--- a/src/old.py\n+++ b/src/old.py\n@@ -1 +1 @@\n-x\n+y\n"
    )
    assert touched_files(diff) == ["src/old.py", "src/new.py"]


def test_touched_files_of_a_git_rename_name_both_sides() -> None:
    diff = (
        "diff --git a/old name.py b/new name.py\nsimilarity index 100%\n"
        "rename from old name.py\nrename to new name.py\n"
    )
    assert touched_files(diff) == ["old name.py", "new name.py"]


def test_touched_files_unquote_git_names() -> None:
    diff = '--- "a/caf\\303\\251.txt"\n+++ "b/caf\\303\\251.txt"\n@@ -1 +1 @@\n-a\n+b\n'
    assert touched_files(diff) == ["café.txt"]
    assert normalise_diff(diff).startswith(diff.split("@@")[0])  # quoted names kept as they are


def test_a_good_diff_has_no_problem() -> None:
    assert diff_problem(CHANGE) is None


@pytest.mark.parametrize(
    ("diff", "expected"),
    [
        ("", "empty"),
        ("@@ -1 +1 @@\n-a\n+b\n", "names no file"),
        ("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "'/etc/passwd'"),
        ("--- a//etc/passwd\n+++ b//etc/passwd\n@@ -1 +1 @@\n-a\n+b\n", "'/etc/passwd'"),
        ("--- a/../x.py\n+++ b/../x.py\n@@ -1 +1 @@\n-a\n+b\n", "climbs out"),
        ("--- a/src/../../x\n+++ b/src/../../x\n@@ -1 +1 @@\n-a\n+b\n", "climbs out"),
        ("--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-a\n+b\n", ".git"),
        ("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\nrename from x\nrename to ../y\n", "climbs"),
        (
            "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n"
            "@@ -0,0 +1 @@\n+/etc/passwd\n",
            "symbolic link",
        ),
    ],
)
def test_unsafe_or_empty_diffs_are_refused(diff: str, expected: str) -> None:
    problem = diff_problem(diff)
    assert problem is not None
    assert expected in problem
