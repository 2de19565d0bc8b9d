"""Fixtures of the workspace tool tests: a small workspace, and a directory beside it that
stands for everything outside (what no tool may touch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.agent.agent_support import MAIN_PY, SECRET
from singularity.orchestrator.agent import WorkspaceTools


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the workspace holding one file, `secret.txt`."""
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text(SECRET)
    return directory


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace: a package, a README, and a `.git` directory."""
    root = tmp_path / "workspace"
    (root / "src" / "app").mkdir(parents=True)
    (root / "src" / "app" / "main.py").write_text(MAIN_PY)
    (root / "src" / "app" / "__init__.py").write_text("")
    (root / "README.md").write_text("# App\nAdds numbers.\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n\tbare = false\n")
    return root


@pytest.fixture
def tools(workspace: Path) -> WorkspaceTools:
    return WorkspaceTools(workspace)
