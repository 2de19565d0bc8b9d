"""Repository context: a bounded layout, the files a task names, and bounded reading that
never leaves the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from singularity.errors import UsageError
from singularity.orchestrator.context import (
    format_files,
    gather_context,
    named_files,
    read_files,
    repository_layout,
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    files = {
        "cli.py": "import sys\n",
        "README.md": "# Demo\n",
        "src/pkg/__init__.py": "",
        "src/pkg/core.py": "def core():\n    return 1\n",
        "src/pkg/util.py": "x = 1\n",
        "tests/test_core.py": "def test_core(): ...\n",
        "docs/util.py": "# a second util.py\n",
        ".github/workflows/ci.yml": "on: push\n",
        ".env": "SECRET=1\n",
        ".git/config": "[core]\n",
        "node_modules/left/index.js": "x\n",
        "src/pkg/__pycache__/core.cpython-311.pyc": "x",
        ".venv/bin/python": "x",
        "build/lib/x.py": "x\n",
        "pkg.egg-info/PKG-INFO": "x\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "logo.png").write_bytes(b"\x89PNG\r\n")
    (root / "data.weird").write_bytes(b"abc\x00def")
    return root


def test_layout_is_a_tree_without_noise(repo: Path) -> None:
    assert repository_layout(repo) == (
        "docs/\n"
        "  util.py\n"
        "src/\n"
        "  pkg/\n"
        "    __init__.py\n"
        "    core.py\n"
        "    util.py\n"
        "tests/\n"
        "  test_core.py\n"
        ".env\n"
        "cli.py\n"
        "README.md"
    )


def test_layout_is_bounded_breadth_first_and_says_what_it_left_out(repo: Path) -> None:
    layout = repository_layout(repo, max_entries=5)
    # The top level comes first; deeper entries are counted, not shown.
    assert layout == (
        "docs/\n"
        "  (1 more)\n"
        "src/\n"
        "  (1 more)\n"
        "tests/\n"
        "  (1 more)\n"
        ".env\n"
        "cli.py\n"
        "(2 more)"  # README.md and data.weird: binary by content, which is only read when shown
    )


def test_layout_does_not_follow_symlinks(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("no\n")
    os.symlink(outside, repo / "link")
    layout = repository_layout(repo)
    assert "link" in layout.split("\n")
    assert "secret.txt" not in layout


def test_an_empty_repository(tmp_path: Path) -> None:
    assert repository_layout(tmp_path) == "(no files)"


def test_named_files_by_path_and_by_unique_ending(repo: Path) -> None:
    text = (
        "Add a --verbose flag to cli.py, call `core()` from src/pkg/core.py: and test it "
        "in test_core.py. Mention pkg/__init__.py too; see README.md."
    )
    assert named_files(repo, text) == [
        "cli.py",
        "src/pkg/core.py",
        "tests/test_core.py",
        "src/pkg/__init__.py",
        "README.md",
    ]


def test_an_ambiguous_basename_is_not_guessed(repo: Path) -> None:
    assert named_files(repo, "fix util.py") == []
    assert named_files(repo, "fix pkg/util.py") == ["src/pkg/util.py"]


def test_named_files_with_line_numbers_and_backticks(repo: Path) -> None:
    assert named_files(repo, "the bug at `src/pkg/core.py:2` and cli.py#L1") == [
        "src/pkg/core.py",
        "cli.py",
    ]


def test_named_files_never_leave_the_repository(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("no\n")
    os.symlink(tmp_path / "secret.txt", repo / "escape.txt")
    text = f"read ../secret.txt and {tmp_path}/secret.txt and escape.txt and .git/config"
    assert named_files(repo, text) == []


def test_an_absolute_path_inside_the_repository_is_named(repo: Path) -> None:
    assert named_files(repo, f"change {repo}/cli.py") == ["cli.py"]


def test_missing_files_are_not_named(repo: Path) -> None:
    assert named_files(repo, "create new_module.py and docs/guide.md") == []


def test_read_files_reads_text_and_skips_what_it_must(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("no\n")
    files, left_out = read_files(
        repo, ["cli.py", "data.weird", "missing.py", "../secret.txt", "./cli.py", "src"]
    )
    assert files == {"cli.py": "import sys\n"}
    assert left_out == ["data.weird", "../secret.txt"]


def test_a_file_beyond_its_limit_is_cut_at_a_line_with_a_marker(repo: Path) -> None:
    (repo / "big.py").write_text("".join(f"line {i}\n" for i in range(1000)))
    files, left_out = read_files(repo, ["big.py"], max_file_bytes=100)
    text = files["big.py"]
    shown, marker = text.rsplit("\n", 2)[0], text.rsplit("\n", 2)[1]
    assert shown.split("\n")[-1] == "line 12"  # whole lines only: 94 bytes
    assert marker == f"[... truncated: {len(shown) + 1} of 8890 bytes shown ...]"
    assert left_out == ["big.py"]


def test_the_total_budget_cuts_the_last_file_and_leaves_out_the_rest(repo: Path) -> None:
    for name in ("a.txt", "b.txt", "c.txt"):
        (repo / name).write_text("0123456789\n" * 10)  # 110 bytes each
    files, left_out = read_files(
        repo, ["a.txt", "b.txt", "c.txt"], max_file_bytes=1000, max_total_bytes=165
    )
    assert files["a.txt"] == "0123456789\n" * 10
    assert files["b.txt"].startswith("0123456789\n" * 5)
    assert "truncated: 55 of 110 bytes" in files["b.txt"]
    assert "c.txt" not in files
    assert left_out == ["b.txt", "c.txt"]


def test_a_fifo_is_not_read(repo: Path) -> None:
    os.mkfifo(repo / "pipe.txt")
    assert read_files(repo, ["pipe.txt"]) == ({}, [])


def test_gather_context_combines_named_and_planned_files(repo: Path) -> None:
    context = gather_context(
        repo, "add a flag to cli.py", extra_paths=["src/pkg/core.py", "cli.py", "new.py"]
    )
    assert context.root == repo.resolve()
    assert context.named == ["cli.py"]
    assert list(context.files) == ["cli.py", "src/pkg/core.py"]
    assert context.truncated == []
    assert context.layout == repository_layout(repo)


def test_gather_context_of_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        gather_context(tmp_path / "nope", "anything")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        gather_context(tmp_path / "file", "anything")


def test_format_files_fences_each_file_with_its_path() -> None:
    text = format_files({"a.py": "x = 1\n", "b.md": "```\ncode\n```"})
    assert text == ("File `a.py`:\n```\nx = 1\n```\n\nFile `b.md`:\n````\n```\ncode\n```\n````")
    assert format_files({}) == "(no files)"
