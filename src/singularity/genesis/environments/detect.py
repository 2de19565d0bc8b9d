"""The setup step of a repository: declared by it, given by a caller, or recognised from its
layout; and the files whose contents decide what the step installs.

A repository declares its step as text, never run on the host: `setup = "..."` under
`[tool.singularity]` in pyproject.toml, else the file `.singularity/setup`. The text is run by
`/bin/sh -e` in the sandbox, in /work (the repository), with /env (the layer) writable.

Recognised layouts, when nothing is declared:
- a test command that runs pytest or a bare `python`, on a repository that names no Python
  dependency: a virtualenv at /env/venv with pytest (the sandbox's /usr has python3 only).
- Python (pyproject.toml with a [project] or [build-system] table, setup.py, requirements*.txt):
  a virtualenv at /env/venv made with the system Python, then one `pip install` of the
  requirement files, the project itself in editable mode (with its test extra if it has one),
  and pytest when nothing names it. Editable installs record /work paths: test runs have the
  repository at /work too, so they import the code under test, not a copy.
- npm (package.json): `npm ci` (a lockfile is present) or `npm install` in /work, then
  node_modules moved to /env/node_modules: node_modules belongs to the working directory,
  so it is built there (lifecycle scripts that read the repository work) and moved into the
  layer; test runs find it by NODE_PATH and PATH (see `Prepared`).

Every file is read without following a link and bounded in size: the repository is a stranger's.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from singularity.genesis.paths import read_regular
from singularity.genesis.sandbox.command import PYTHON

__all__ = [
    "LAYER",
    "SetupStep",
    "declared_step",
    "detect_step",
    "input_digests",
    "step_for",
]

LAYER = "/env"
VENV = f"{LAYER}/venv"
_MAX_FILE = 1 << 20
_MAX_SCRIPT = 64 * 1024
_TEST_EXTRAS = ("test", "tests", "testing")
# Files whose contents decide what a step installs: the layer's key holds their digests.
_INPUTS = (
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    ".singularity/setup",
)
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


@dataclass(frozen=True)
class SetupStep:
    """Shell text that installs a repository's dependencies into /env, and what it does."""

    script: str
    description: str  # for the user: what the step installs, in words
    origin: str  # "given", "declared in ...", or "recognised"


def step_for(
    source: Path, given: str | SetupStep | None = None, test_command: str | None = None
) -> SetupStep | None:
    """The step for the repository at `source`: given, else declared, else recognised; None
    when the repository needs nothing installed. `test_command`, when known, is looked at too:
    one that runs pytest or `python` needs them even where the repository names no dependency.
    ValueError (one line) for a bad declaration."""
    if isinstance(given, SetupStep):
        return given
    if given is not None:
        return SetupStep(_checked_script(given), f"the given step: {_first_line(given)}", "given")
    return declared_step(source) or detect_step(source, test_command)


def declared_step(source: Path) -> SetupStep | None:
    """The step the repository declares; None when it declares none."""
    pyproject = _toml(source, "pyproject.toml")
    declared = _table(pyproject, "tool", "singularity").get("setup")
    where = "pyproject.toml ([tool.singularity] setup)"
    if declared is None:
        declared = _text(source, ".singularity/setup")
        where = ".singularity/setup"
    if declared is None:
        return None
    if not isinstance(declared, str):
        raise ValueError(f"{where} must be a string of shell commands")
    script = _checked_script(declared)
    described = f"as declared in {where}: {_first_line(script)}"
    return SetupStep(script, described, f"declared in {where}")


def detect_step(source: Path, test_command: str | None = None) -> SetupStep | None:
    """The step recognised from the repository's layout (and the test command); None when
    nothing is recognised."""
    scripts, words = [], []
    python = _python_step(source) or _pytest_step(test_command)
    if python is not None:
        scripts.append(python[0])
        words.append(python[1])
    if _text(source, "package.json") is not None:
        locked = any(_text(source, name) is not None for name in _LOCKS)
        command = "npm ci" if locked else "npm install"
        scripts.append(f"{command}\nmv node_modules {LAYER}/node_modules")
        words.append(f"`{command}` into {LAYER}/node_modules")
    if not scripts:
        return None
    return SetupStep("\n".join(scripts) + "\n", "; ".join(words), "recognised")


_LOCKS = ("package-lock.json", "npm-shrinkwrap.json")


def _python_step(source: Path) -> tuple[str, str] | None:
    requirements = _requirement_files(source)
    pyproject = _toml(source, "pyproject.toml")
    installable = _text(source, "setup.py") is not None or bool(
        {"project", "build-system"} & set(pyproject)
    )
    if not requirements and not installable:
        return None
    args, words = [], []
    for name in requirements:
        args += ["-r", name]
        words.append(name)
    extra = _test_extra(pyproject) if installable else None
    if installable:
        args += ["-e", f"'.[{extra}]'" if extra else "."]
        words.append(f"the project (editable{f', [{extra}] extra' if extra else ''})")
    if "pytest" not in _named(source, requirements, pyproject, extra):
        args.append("pytest")
        words.append("pytest")
    script = f"{PYTHON} -m venv {VENV}\n{VENV}/bin/python -m pip install {' '.join(args)}"
    return script, f"a virtualenv at {VENV} (system Python) with {', '.join(words)}"


# `pytest`, `py.test`, or a bare `python` (the system has only python3): what a test command
# runs that the sandbox's /usr does not have.
_NEEDS_PYTEST = re.compile(r"(^|[\s;&|(`])(py\.?test|python)(?=$|[\s;&|)`])")


def _pytest_step(test_command: str | None) -> tuple[str, str] | None:
    """A virtualenv with pytest, for a test command that needs it and a repository that names
    no Python dependency of its own (a plain folder of modules and tests)."""
    if test_command is None or not _NEEDS_PYTEST.search(test_command):
        return None
    script = f"{PYTHON} -m venv {VENV}\n{VENV}/bin/python -m pip install pytest"
    return script, f"a virtualenv at {VENV} (system Python) with pytest, for the test command"


def _requirement_files(source: Path) -> list[str]:
    try:
        names = sorted(p.name for p in source.glob("requirements*.txt"))
    except OSError:
        return []
    return [name for name in names if _text(source, name) is not None]


def _test_extra(pyproject: dict[str, Any]) -> str | None:
    extras = _table(pyproject, "project", "optional-dependencies")
    return next((name for name in _TEST_EXTRAS if name in extras), None)


def _named(
    source: Path, requirements: list[str], pyproject: dict[str, Any], extra: str | None
) -> set[str]:
    """The distribution names the step's inputs require (normalised)."""
    lines: list[str] = []
    for name in requirements:
        lines += (_text(source, name) or "").splitlines()
    lines += _strings(_table(pyproject, "project").get("dependencies"))
    if extra is not None:
        lines += _strings(_table(pyproject, "project", "optional-dependencies").get(extra))
    found = set()
    for line in lines:
        match = _NAME.match(line)
        if match:
            found.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return found


def input_digests(source: Path) -> dict[str, str]:
    """sha256 of each file that decides what a step installs (present ones only)."""
    names = [*_INPUTS, *_requirement_files(source)]
    found = {}
    for name in sorted(set(names)):
        data = _bytes(source, name)
        if data is not None:
            found[name] = hashlib.sha256(data).hexdigest()
    return found


def _checked_script(text: str) -> str:
    if not text.strip():
        raise ValueError("the setup step is empty")
    if "\0" in text or len(text.encode()) > _MAX_SCRIPT:
        raise ValueError(f"the setup step must be text of at most {_MAX_SCRIPT} bytes")
    return text if text.endswith("\n") else text + "\n"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    more = f" (and {len(lines) - 1} more lines)" if len(lines) > 1 else ""
    return f"`{lines[0][:120]}`{more}" if lines else "``"


def _bytes(source: Path, name: str) -> bytes | None:
    try:
        return read_regular(source, name, _MAX_FILE)
    except OSError:
        return None


def _text(source: Path, name: str) -> str | None:
    data = _bytes(source, name)
    return None if data is None else data.decode(errors="replace")


def _toml(source: Path, name: str) -> dict[str, Any]:
    text = _text(source, name)
    if text is None:
        return {}
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{name} is not valid TOML: {exc}") from None


def _table(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The table at `keys`, or an empty one where a key is missing or not a table."""
    for key in keys:
        value = data.get(key)
        data = value if isinstance(value, dict) else {}
    return data


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
