"""The language registry: its entries, their commands, and what they say is missing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from singularity.genesis.jobs.languages import LANGUAGES, Language, Tool, find_ruff, language

PYTHON = LANGUAGES["python"]


def test_the_registry_holds_the_four_languages_with_their_steps() -> None:
    assert sorted(LANGUAGES) == ["bash", "elixir", "javascript", "python"]
    for name, entry in LANGUAGES.items():
        assert entry.name == name and entry.run and entry.requires and entry.install_hint
        assert entry.check is not None  # every language is checked before it runs
    assert LANGUAGES["python"].test and LANGUAGES["javascript"].test and LANGUAGES["elixir"].test
    assert LANGUAGES["bash"].test is None and LANGUAGES["python"].lint is not None


@pytest.mark.parametrize(
    ("name", "found"),
    [
        ("python", "python"),
        ("Py", "python"),
        ("js", "javascript"),
        ("node", "javascript"),
        ("sh", "bash"),
        ("exs", "elixir"),
        (" bash ", "bash"),
    ],
)
def test_languages_are_found_by_name_or_usual_short_name(name: str, found: str) -> None:
    entry = language(name)
    assert entry is not None and entry.name == found


def test_an_unknown_language_is_none() -> None:
    assert language("cobol") is None


def test_commands_name_the_source_and_take_the_args_only_when_running() -> None:
    node = LANGUAGES["javascript"]
    assert node.command("run", memory_mb=256, args=("a", "b")) == (
        "node",
        "--max-old-space-size=256",
        "main.js",
        "a",
        "b",
    )
    assert node.command("check", memory_mb=256, args=("a",)) == ("node", "--check", "main.js")
    assert node.command("lint", memory_mb=256) is None


def test_python_is_available_here() -> None:
    assert PYTHON.missing() is None
    assert PYTHON.missing("lint") is None  # ruff of this environment


def test_a_missing_toolchain_says_what_to_install() -> None:
    cobol = Language(
        name="cobol",
        source="main.cob",
        check=None,
        lint=None,
        run=("cobc", "-x", "{source}"),
        test=None,
        requires=("cobc-does-not-exist",),
        install_hint="install GnuCOBOL (apt-get install gnucobol)",
    )
    assert cobol.missing() == (
        "cobol needs cobc-does-not-exist, which is not installed: "
        "install GnuCOBOL (apt-get install gnucobol)"
    )
    absolute = replace(cobol, requires=("/usr/bin/cobc-does-not-exist",))
    assert absolute.missing() is not None and "/usr/bin/cobc-does-not-exist" in absolute.missing()


def test_a_tool_outside_the_sandboxs_system_counts_as_missing(tmp_path: Path) -> None:
    # An executable that is not under /usr is not mounted into the sandbox.
    elsewhere = tmp_path / "tool"
    elsewhere.write_text("#!/bin/sh\n")
    elsewhere.chmod(0o755)
    assert replace(PYTHON, requires=(str(elsewhere),)).missing() is not None


def test_a_missing_lint_tool_only_stops_linting() -> None:
    nowhere = Tool("ruff", "/opt/ruff/ruff", lambda: None, "install ruff (pip install ruff)")
    lintless = replace(PYTHON, lint_tool=nowhere)
    assert lintless.missing("run") is None
    assert lintless.missing("lint") == (
        "linting python needs ruff, which is not found: install ruff (pip install ruff)"
    )
    assert lintless.binds("lint") == {}


def test_ruff_is_found_as_a_binary_and_bound_for_linting_only() -> None:
    ruff = find_ruff()
    assert ruff is not None and ruff.read_bytes()[:4] == b"\x7fELF"
    assert PYTHON.binds("lint") == {"/opt/ruff/ruff": ruff}
    assert PYTHON.binds("run") == {}


def test_runtimes_that_reserve_address_space_get_an_allowance() -> None:
    assert LANGUAGES["javascript"].address_space_mb >= 768
    assert LANGUAGES["python"].address_space_mb == 0
    assert "MemoryError" in PYTHON.all_signs
