"""list_files, read_file, write_file, create_file and delete_file, and the attacks on them."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from orchestrator.agent.agent_support import MAIN_PY, SECRET, call, small
from singularity.orchestrator.agent import WorkspaceTools


def test_list_a_directory_sorted_with_directories_marked(tools: WorkspaceTools) -> None:
    listed = call(tools, "list_files")
    assert listed.ok
    assert listed.text.splitlines() == [".git/", "README.md", "src/"]


def test_list_recursively_skips_git_unless_asked(tools: WorkspaceTools) -> None:
    listed = call(tools, "list_files", recursive=True)
    assert listed.text.splitlines() == ["README.md", "src/app/__init__.py", "src/app/main.py"]
    inside = call(tools, "list_files", path=".git", recursive=True)
    assert inside.text == ".git/config"


def test_list_with_a_glob(tools: WorkspaceTools) -> None:
    by_name = call(tools, "list_files", recursive=True, glob="m*.py")
    assert by_name.text == "src/app/main.py"
    by_path = call(tools, "list_files", path="src", recursive=True, glob="app/*")
    assert by_path.text.splitlines() == ["src/app/__init__.py", "src/app/main.py"]
    assert call(tools, "list_files", glob="*.rs").text == ".: nothing matches"


def test_list_is_capped_with_a_count_of_the_rest(workspace: Path) -> None:
    for number in range(12):
        (workspace / f"f{number:02}.txt").write_text("")
    listed = call(small(workspace, max_list_entries=5), "list_files", glob="*.txt")
    lines = listed.text.splitlines()
    assert lines[:5] == ["f00.txt", "f01.txt", "f02.txt", "f03.txt", "f04.txt"]
    assert lines[5] == "[7 more entries not shown; narrow the path or glob]"


def test_list_shows_links_without_following_them(workspace: Path, outside: Path) -> None:
    (workspace / "etc").symlink_to("/etc")
    (workspace / "elsewhere").symlink_to(outside)
    tools = WorkspaceTools(workspace)
    listed = call(tools, "list_files", recursive=True)
    assert "etc (symbolic link, not followed)" in listed.text
    assert "passwd" not in listed.text and "secret" not in listed.text
    refused = call(tools, "list_files", path="etc")
    assert not refused.ok
    assert refused.text == "Error: etc is a symbolic link; tools never follow links"


def test_read_numbers_the_lines(tools: WorkspaceTools) -> None:
    read = call(tools, "read_file", path="src/app/main.py")
    assert read.ok
    assert read.text.splitlines()[:2] == ["     1\tdef add(a, b):", "     2\t    return a + b"]
    assert "lines" not in read.text  # the whole file: no note


def test_read_a_range_says_what_was_left_out(tools: WorkspaceTools) -> None:
    read = call(tools, "read_file", path="src/app/main.py", start_line=5, end_line=5)
    assert read.text.splitlines() == [
        "     5\tdef sub(a, b):",
        "[src/app/main.py: lines 5-5 of 6 shown; read on with start_line=6]",
    ]
    past = call(tools, "read_file", path="src/app/main.py", start_line=40)
    assert past.text == "[src/app/main.py has 6 lines; start_line 40 is past the end]"


def test_read_caps_lines_and_line_length(workspace: Path) -> None:
    (workspace / "long.txt").write_text("".join(f"line {n}\n" for n in range(1, 101)))
    (workspace / "wide.txt").write_text("y" * 50 + "\n")
    tools = small(workspace, max_read_lines=10, max_line_chars=20)
    read = call(tools, "read_file", path="long.txt")
    assert (
        read.text.splitlines()[-1]
        == "[long.txt: lines 1-10 of 100 shown; read on with start_line=11]"
    )
    assert "line 11" not in read.text
    wide = call(tools, "read_file", path="wide.txt")
    assert wide.text == "     1\t" + "y" * 20 + " [line cut: 30 more characters]"


def test_read_output_stays_within_its_bound(workspace: Path) -> None:
    (workspace / "many.txt").write_text(("z" * 1000 + "\n") * 500)
    read = call(small(workspace, max_output_chars=5000), "read_file", path="many.txt")
    assert len(read.text) <= 5000
    assert "read on with start_line=" in read.text


def test_read_refuses_binary_and_marks_invalid_utf8(workspace: Path) -> None:
    (workspace / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    (workspace / "latin1.txt").write_bytes(b"caf\xe9\nok\n")
    tools = WorkspaceTools(workspace)
    binary = call(tools, "read_file", path="image.png")
    assert not binary.ok and "binary file" in binary.text
    latin = call(tools, "read_file", path="latin1.txt")
    assert latin.ok
    assert latin.text.splitlines()[0] == "     1\tcaf\ufffd"
    assert "not valid UTF-8" in latin.text


def test_read_refuses_a_huge_file(workspace: Path) -> None:
    (workspace / "huge.log").write_bytes(b"log line\n" * 500_000)  # 4.5 MB: past the default
    refused = call(WorkspaceTools(workspace), "read_file", path="huge.log")
    assert not refused.ok
    assert "huge.log is larger than 4000000 bytes; search it" in refused.text


def test_read_may_look_into_git(tools: WorkspaceTools) -> None:
    assert "bare = false" in call(tools, "read_file", path=".git/config").text


def test_write_replaces_and_creates(tools: WorkspaceTools, workspace: Path) -> None:
    wrote = call(tools, "write_file", path="README.md", content="# New\n")
    assert (wrote.ok, wrote.text, wrote.changed) == (
        True,
        "Wrote README.md (6 bytes)",
        ("README.md",),
    )
    made = call(tools, "write_file", path="docs/guide.md", content="guide\n")
    assert made.text == "Created docs/guide.md (6 bytes)"
    assert (workspace / "README.md").read_text() == "# New\n"
    assert (workspace / "docs" / "guide.md").read_text() == "guide\n"


def test_write_is_bounded(tools: WorkspaceTools, workspace: Path) -> None:
    too_big = call(
        small(workspace, max_write_bytes=10), "write_file", path="a.txt", content="x" * 11
    )
    assert not too_big.ok and "at most 10" in too_big.text
    assert not (workspace / "a.txt").exists()
    surrogate = tools.run_sync("write_file", '{"path": "a.txt", "content": "\\ud800"}')
    assert not surrogate.ok and "content" in surrogate.text  # a lone surrogate


def test_create_refuses_an_existing_file(tools: WorkspaceTools, workspace: Path) -> None:
    created = call(tools, "create_file", path="src/app/util.py", content="X = 1\n")
    assert created.ok and created.changed == ("src/app/util.py",)
    again = call(tools, "create_file", path="src/app/util.py", content="X = 2\n")
    assert not again.ok and "already exists" in again.text
    assert (workspace / "src" / "app" / "util.py").read_text() == "X = 1\n"


def test_delete_removes_one_file(tools: WorkspaceTools, workspace: Path) -> None:
    deleted = call(tools, "delete_file", path="README.md")
    assert (deleted.ok, deleted.changed) == (True, ("README.md",))
    assert not (workspace / "README.md").exists()
    assert not call(tools, "delete_file", path="src").ok
    assert (workspace / "src" / "app" / "main.py").read_text() == MAIN_PY


def test_git_is_never_written_or_deleted(tools: WorkspaceTools, workspace: Path) -> None:
    for name, extra in (
        ("write_file", {"content": "x"}),
        ("create_file", {"content": "x"}),
        ("delete_file", {}),
    ):
        for path in (".git/config", ".git/hooks/pre-commit"):
            refused = call(tools, name, path=path, **extra)
            assert not refused.ok and "inside .git" in refused.text
    assert (workspace / ".git" / "config").read_text() == "[core]\n\tbare = false\n"
    assert not (workspace / ".git" / "hooks").exists()


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "src/../../outside"])
def test_paths_out_of_the_workspace_are_refused(tools: WorkspaceTools, path: str) -> None:
    for name, extra in (
        ("read_file", {}),
        ("list_files", {}),
        ("write_file", {"content": "x"}),
        ("create_file", {"content": "x"}),
        ("delete_file", {}),
    ):
        refused = call(tools, name, path=path, **extra)
        assert not refused.ok
        assert "absolute" in refused.text or "'..'" in refused.text


def test_a_link_to_etc_reads_nothing(workspace: Path) -> None:
    (workspace / "etc").symlink_to("/etc")
    tools = WorkspaceTools(workspace)
    read = call(tools, "read_file", path="etc/passwd")
    assert not read.ok and "root:" not in read.text
    probe = f"singularity-tool-probe-{os.getpid()}"
    try:
        wrote = call(tools, "write_file", path=f"etc/{probe}", content="x")
        created = call(tools, "create_file", path=f"etc/{probe}", content="x")
        assert not wrote.ok and not created.ok
        assert not Path("/etc", probe).exists()
    finally:
        Path("/etc", probe).unlink(missing_ok=True)


def test_links_to_outside_are_refused_and_the_target_is_untouched(
    workspace: Path, outside: Path
) -> None:
    (workspace / "etc").symlink_to(outside)
    (workspace / "secret.txt").symlink_to(outside / "secret.txt")
    tools = WorkspaceTools(workspace)
    for path in ("etc/secret.txt", "secret.txt"):
        for name, extra in (
            ("read_file", {}),
            ("write_file", {"content": "changed"}),
            ("create_file", {"content": "changed"}),
            ("edit_file", {"old_text": "outside", "new_text": "inside"}),
            ("delete_file", {}),
        ):
            result = call(tools, name, path=path, **extra)
            assert not result.ok, (name, path)
            assert "symbolic link" in result.text or "already exists" in result.text
            assert SECRET not in result.text
    assert (outside / "secret.txt").read_text() == SECRET
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_a_directory_swapped_for_a_link_between_calls(workspace: Path, outside: Path) -> None:
    tools = WorkspaceTools(workspace)
    assert call(tools, "read_file", path="src/app/main.py").ok
    (workspace / "src" / "app" / "main.py").unlink()
    (workspace / "src" / "app" / "__init__.py").unlink()
    (workspace / "src" / "app").rmdir()
    (workspace / "src" / "app").symlink_to(outside)
    (outside / "main.py").write_text("outside main\n")
    read = call(tools, "read_file", path="src/app/main.py")
    wrote = call(tools, "write_file", path="src/app/main.py", content="x")
    deleted = call(tools, "delete_file", path="src/app/main.py")
    assert not (read.ok or wrote.ok or deleted.ok)
    assert "src/app is a symbolic link" in read.text
    assert (outside / "main.py").read_text() == "outside main\n"


def test_a_fifo_is_refused_promptly(workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")
    tools = WorkspaceTools(workspace)
    read = call(tools, "read_file", path="pipe")
    assert not read.ok and "pipe is a FIFO" in read.text
    wrote = call(tools, "write_file", path="pipe", content="x")
    assert not wrote.ok and "FIFO" in wrote.text


def test_a_link_swapped_in_while_the_tools_run(workspace: Path, outside: Path) -> None:
    box = workspace / "box"
    box.mkdir()
    target, spare = box / "file.txt", box / "spare"
    stop, swapped, failures = threading.Event(), threading.Event(), []

    def swap() -> None:  # the file and a link to the outside secret, turn about
        try:
            while not stop.is_set():
                spare.symlink_to(outside / "secret.txt")
                os.replace(spare, target)
                spare.write_text("outside inside\n")
                os.replace(spare, target)
                swapped.set()
        except OSError as error:
            failures.append(error)

    swapper = threading.Thread(target=swap)
    swapper.start()
    swapped.wait(timeout=10)
    tools, answers = WorkspaceTools(workspace), []
    try:
        for number in range(200):
            answers += [
                call(tools, "read_file", path="box/file.txt"),
                call(tools, "write_file", path="box/file.txt", content=f"{number}\n"),
                call(tools, "edit_file", path="box/file.txt", old_text="outside", new_text="x"),
                call(tools, "delete_file", path="box/file.txt"),
            ]
    finally:
        stop.set()
        swapper.join()
    assert (outside / "secret.txt").read_text() == SECRET
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert failures == []
    assert not any("never read" in answer.text for answer in answers)
    assert any(answer.ok for answer in answers)  # the race was run: both sides were met
    assert any("symbolic link" in answer.text for answer in answers)
