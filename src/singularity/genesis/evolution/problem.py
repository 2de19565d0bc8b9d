"""An evolution problem: a directory with the initial program, its evaluator and its limits.

`problem.toml` names them (all keys optional):

    name = "circle_packing"          # default: the directory's name
    description = "..."              # what the mutations aim at, for the model's prompt
    language = "python"              # of the evolved program
    initial = "initial.py"           # the first program of every island
    evaluate = "evaluate.py"         # a Python script; see evaluation.py for its protocol
    [limits]                         # Genesis sandbox limits of one evaluation
    wall_s = 90

Without `problem.toml`, `initial.py` and `evaluate.py` are looked for by those names.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from singularity.errors import UsageError
from singularity.genesis.limits import Limits, limits_from_request

__all__ = ["EXAMPLES", "Problem", "example_problem", "load_problem"]

EXAMPLES = ("circle_packing",)


@dataclass(frozen=True)
class Problem:
    name: str
    description: str
    language: str
    initial_code: str
    evaluator: str
    limits: Limits
    root: Path


def example_problem(name: str) -> Path:
    """The directory of a shipped example problem."""
    if name not in EXAMPLES:
        raise UsageError(f"unknown example problem {name!r}; shipped: {', '.join(EXAMPLES)}")
    return Path(str(files("singularity.genesis.evolution").joinpath("problems", name)))


def load_problem(root: Path) -> Problem:
    """Read a problem directory, or a UsageError saying what is missing or wrong."""
    if not root.is_dir():
        raise UsageError(f"problem {str(root)!r} is not a directory")
    config = _config(root)
    initial = _file(root, config.get("initial", "initial.py"), "initial program")
    evaluate = _file(root, config.get("evaluate", "evaluate.py"), "evaluation script")
    try:
        limits = limits_from_request(config.get("limits"))
    except ValueError as exc:
        raise UsageError(f"{root / 'problem.toml'}: {exc}") from None
    return Problem(
        name=str(config.get("name", root.name)),
        description=str(config.get("description", "")).strip(),
        language=str(config.get("language", "python")),
        initial_code=initial,
        evaluator=evaluate,
        limits=limits,
        root=root,
    )


def _config(root: Path) -> dict[str, Any]:
    path = root / "problem.toml"
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: {exc}") from None


def _file(root: Path, name: Any, what: str) -> str:
    path = root / str(name)
    if not path.is_file():
        raise UsageError(f"the problem has no {what}: {path} is missing")
    return path.read_text(encoding="utf-8")
