"""Containment: paths stay relative, links are never followed, nothing outside is touched."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from orchestrator.agent.agent_support import SECRET
from singularity.orchestrator.agent.output import ToolError
from singularity.orchestrator.agent.paths import (
    PathRefused,
    create_regular,
    delete_regular,
    open_directory,
    read_regular,
    relative_parts,
    replace_regular,
    writable_parts,
)


def test_relative_parts_of_ordinary_paths() -> None:
    assert relative_parts("src/app/main.py", 100) == ("src", "app", "main.py")
    assert relative_parts("./src//app/", 100) == ("src", "app")
    assert relative_parts(".", 100) == ()
    assert relative_parts("", 100) == ()


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../../etc/passwd", "'..'"),
        ("src/../../x", "'..'"),
        ("/etc/passwd", "absolute"),
        ("src/a\0b", "NUL"),
        ("x" * 101, "limit is 100"),
    ],
)
def test_hostile_paths_are_refused(path: str, reason: str) -> None:
    with pytest.raises(PathRefused, match=reason):
        relative_parts(path, 100)


@pytest.mark.parametrize("path", [".", "", ".git/config", ".git", "sub/.git/hooks/pre-commit"])
def test_the_root_and_git_are_never_writable(path: str) -> None:
    with pytest.raises(PathRefused):
        writable_parts(path, 100)


def test_a_linked_directory_component_is_refused(workspace: Path, outside: Path) -> None:
    (workspace / "linked").symlink_to(outside)
    with pytest.raises(PathRefused, match="linked is a symbolic link"):
        read_regular(workspace, ("linked", "secret.txt"), 1000)
    with pytest.raises(PathRefused, match="symbolic link"):
        replace_regular(workspace, ("linked", "secret.txt"), b"changed")
    with pytest.raises(PathRefused, match="symbolic link"):
        create_regular(workspace, ("linked", "new.txt"), b"new")
    with pytest.raises(PathRefused, match="symbolic link"):
        delete_regular(workspace, ("linked", "secret.txt"))
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == SECRET


def test_a_link_onto_an_outside_file_is_refused(workspace: Path, outside: Path) -> None:
    (workspace / "secret.txt").symlink_to(outside / "secret.txt")
    for attempt in (
        lambda: read_regular(workspace, ("secret.txt",), 1000),
        lambda: replace_regular(workspace, ("secret.txt",), b"changed"),
        lambda: create_regular(workspace, ("secret.txt",), b"changed"),
        lambda: delete_regular(workspace, ("secret.txt",)),
    ):
        with pytest.raises(ToolError, match=r"secret\.txt"):
            attempt()
    assert (outside / "secret.txt").read_text() == SECRET
    assert (workspace / "secret.txt").is_symlink()


def test_the_workspace_root_itself_must_not_be_a_link(tmp_path: Path, outside: Path) -> None:
    root = tmp_path / "linked-root"
    root.symlink_to(outside)
    with pytest.raises(ToolError, match="workspace cannot be opened"), open_directory(root, ()):
        pass


def test_a_fifo_is_refused_without_hanging(workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")
    with pytest.raises(PathRefused, match="pipe is a FIFO"):
        read_regular(workspace, ("pipe",), 1000)
    with pytest.raises(PathRefused, match="FIFO"):
        replace_regular(workspace, ("pipe",), b"x")
    with pytest.raises(PathRefused, match="FIFO"):
        delete_regular(workspace, ("pipe",))
    assert stat.S_ISFIFO(os.lstat(workspace / "pipe").st_mode)


def test_a_device_file_is_refused(workspace: Path) -> None:
    try:
        os.mknod(workspace / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("device files cannot be made here")
    with pytest.raises(PathRefused, match="null is a device"):
        read_regular(workspace, ("null",), 1000)
    with pytest.raises(PathRefused, match="device"):
        replace_regular(workspace, ("null",), b"x")


def test_a_directory_is_not_a_file(workspace: Path) -> None:
    with pytest.raises(PathRefused, match="src is a directory"):
        read_regular(workspace, ("src",), 1000)
    with pytest.raises(PathRefused, match="directory"):
        delete_regular(workspace, ("src",))
    with pytest.raises(ToolError, match=r"README\.md is a regular file, not a directory"):
        read_regular(workspace, ("README.md", "x"), 1000)


def test_replace_is_atomic_keeps_the_mode_and_leaves_no_temporary(workspace: Path) -> None:
    script = workspace / "run.sh"
    script.write_text("echo old\n")
    script.chmod(0o755)
    assert replace_regular(workspace, ("run.sh",), b"echo new\n") is False
    assert script.read_text() == "echo new\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert sorted(os.listdir(workspace)) == [".git", "README.md", "run.sh", "src"]


def test_replace_and_create_make_missing_directories(workspace: Path) -> None:
    assert replace_regular(workspace, ("a", "b", "c.txt"), b"c") is True
    create_regular(workspace, ("a", "d", "e.txt"), b"e")
    assert (workspace / "a" / "b" / "c.txt").read_bytes() == b"c"
    assert (workspace / "a" / "d" / "e.txt").read_bytes() == b"e"


def test_create_refuses_an_existing_file(workspace: Path) -> None:
    with pytest.raises(ToolError, match="already exists"):
        create_regular(workspace, ("README.md",), b"replaced")
    assert (workspace / "README.md").read_text() == "# App\nAdds numbers.\n"


def test_read_refuses_a_file_past_the_bound(workspace: Path) -> None:
    (workspace / "big.txt").write_bytes(b"x" * 2000)
    assert read_regular(workspace, ("big.txt",), 2000) == b"x" * 2000
    with pytest.raises(ToolError, match="larger than 1999 bytes"):
        read_regular(workspace, ("big.txt",), 1999)


def test_missing_things_are_named(workspace: Path) -> None:
    with pytest.raises(ToolError, match=r"nope\.txt: no such file"):
        read_regular(workspace, ("nope.txt",), 10)
    with pytest.raises(ToolError, match="nope: no such directory"):
        read_regular(workspace, ("nope", "x.txt"), 10)
    with pytest.raises(ToolError, match=r"nope\.txt: no such file"):
        delete_regular(workspace, ("nope.txt",))
