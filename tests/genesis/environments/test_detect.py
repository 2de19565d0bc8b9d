"""The setup step: declared, given, or recognised from a repository's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from environment_support import write
from singularity.genesis.environments.detect import SetupStep, input_digests, step_for

PYPROJECT = """[project]
name = "calc"
version = "1"
dependencies = ["six"]

[project.optional-dependencies]
test = ["pytest>=7"]
"""


def test_a_python_project_with_a_test_extra(tmp_path: Path) -> None:
    step = step_for(write(tmp_path, {"pyproject.toml": PYPROJECT, "requirements.txt": "six\n"}))
    assert step is not None and step.origin == "recognised"
    assert step.script == (
        "/usr/bin/python3 -m venv /env/venv\n"
        "/env/venv/bin/python -m pip install -r requirements.txt -e '.[test]'\n"
    )
    assert "[test] extra" in step.description and "pytest" not in step.description.split(", ")


def test_requirements_alone_get_pytest_unless_they_name_it(tmp_path: Path) -> None:
    step = step_for(write(tmp_path, {"requirements.txt": "six==1.16.0\n"}))
    assert step is not None and step.script.endswith("-r requirements.txt pytest\n")
    named = step_for(write(tmp_path, {"requirements-dev.txt": "pytest_cov\nPyTest==8\n"}))
    assert named is not None
    assert named.script.endswith("-r requirements-dev.txt -r requirements.txt\n")


def test_a_pyproject_that_only_configures_tools_installs_nothing(tmp_path: Path) -> None:
    assert step_for(write(tmp_path, {"pyproject.toml": "[tool.ruff]\nline-length = 99\n"})) is None


def test_npm_with_and_without_a_lockfile(tmp_path: Path) -> None:
    unlocked = step_for(write(tmp_path, {"package.json": "{}"}))
    assert unlocked is not None
    assert unlocked.script == "npm install\nmv node_modules /env/node_modules\n"
    locked = step_for(write(tmp_path, {"package-lock.json": "{}"}))
    assert locked is not None and locked.script.startswith("npm ci\n")


def test_a_declared_step_wins_and_a_given_one_wins_over_it(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "six\n", ".singularity/setup": "make deps"})
    declared = step_for(tmp_path)
    assert declared == SetupStep(
        "make deps\n",
        "as declared in .singularity/setup: `make deps`",
        "declared in .singularity/setup",
    )
    write(tmp_path, {"pyproject.toml": '[tool.singularity]\nsetup = "a\\nb"\n'})
    from_pyproject = step_for(tmp_path)
    assert from_pyproject is not None and from_pyproject.script == "a\nb\n"
    assert from_pyproject.description.endswith("`a` (and 1 more lines)")
    given = step_for(tmp_path, "echo given")
    assert given is not None and given.origin == "given"


@pytest.mark.parametrize(
    ("pyproject", "message"),
    [
        ("[tool.singularity]\nsetup = 3\n", "must be a string"),
        ('[tool.singularity]\nsetup = "  "\n', "is empty"),
        ("[tool\n", "not valid TOML"),
    ],
)
def test_a_bad_declaration_is_named(tmp_path: Path, pyproject: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        step_for(write(tmp_path, {"pyproject.toml": pyproject}))


def test_odd_tables_are_not_trouble(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": 'tool = 1\nproject = "x"\n', "setup.py": ""})
    step = step_for(tmp_path)
    assert step is not None and "-e ." in step.script


def test_a_linked_file_is_not_read(tmp_path: Path) -> None:
    outside = write(tmp_path / "outside", {"requirements.txt": "secret\n"})
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "requirements.txt").symlink_to(outside / "requirements.txt")
    (repo / ".singularity").symlink_to(outside)
    assert step_for(repo) is None
    assert input_digests(repo) == {}


def test_digests_change_with_the_files_a_step_reads(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "six\n", "README": "x"})
    first = input_digests(tmp_path)
    write(tmp_path, {"README": "y"})
    assert input_digests(tmp_path) == first
    write(tmp_path, {"requirements.txt": "six==1.16.0\n"})
    assert input_digests(tmp_path) != first
