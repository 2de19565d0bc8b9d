"""The architecture's layers hold, and public APIs name only what exists."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from singularity.errors import UsageError
from singularity.services import SERVICES, resolve_services

ROOT = Path(__file__).parents[1]


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"  # import-linter, a test extra
    result = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module", ["singularity.shared_queue"])
def test_public_api_names_exist(module: str) -> None:
    package = importlib.import_module(module)
    for name in package.__all__:
        assert hasattr(package, name), name


def test_unknown_services_are_named_with_the_choices() -> None:
    with pytest.raises(
        UsageError,
        match="unknown service 'x'; choose one of: centralcloud, genesis, nexus, singularity",
    ):
        resolve_services(["x"])
    assert [s.name for s in resolve_services(list(SERVICES))] == [
        "centralcloud",
        "singularity",
        "genesis",
        "nexus",
    ]
