"""Experiments on repositories that need their dependencies: the setup step in the sandbox
through the registry proxy, its layer shared by both runs, and a failing step shown as such.

Real bubblewrap, real pip against the registries this host's pip is configured for: a
registry that does not answer fails these tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from environment_support import sandbox as new_sandbox
from environment_support import write
from singularity.genesis.environments import EnvironmentCache, Environments, step_for
from singularity.genesis.environments.provider import SetupChoice
from singularity.genesis.experiments.outcome import ExperimentOutcome, ExperimentStatus
from singularity.genesis.experiments.recommendation import Recommendation
from singularity.genesis.experiments.trial import run_experiment
from singularity.genesis.limits import Limits
from singularity.genesis.sandbox import Sandbox

LIMITS = Limits(wall_s=60.0, cpu_s=30.0, memory_mb=1024, processes=64)
TESTS = "python -m pytest -q"

FILES = {
    "requirements.txt": "six==1.16.0\n",
    "calc.py": "import six\n\n\ndef add(a, b):\n    return a - b\n\n\ndef name():\n"
    "    return six.text_type('calc')\n",
    "test_calc.py": "from calc import add, name\n\n\ndef test_add():\n"
    "    assert add(2, 3) == 5\n\n\ndef test_name():\n    assert name() == 'calc'\n",
}
# A diff's context lines of blank lines hold one space: built from lines, not typed.
FIX = "\n".join(
    [
        "--- a/calc.py",
        "+++ b/calc.py",
        "@@ -2,7 +2,7 @@",
        " ",
        " ",
        " def add(a, b):",
        "-    return a - b",
        "+    return a + b",
        " ",
        " ",
        " def name():",
        "",
    ]
)
NEW_REQUIREMENT = """--- a/requirements.txt
+++ b/requirements.txt
@@ -1 +1,2 @@
 six==1.16.0
+no-such-distribution-of-this-name==0.0.1
"""


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layer cache's directory, shared by the module's tests (one install of each step)."""
    return tmp_path_factory.mktemp("layers")


@pytest.fixture
async def environments(layers: Path) -> AsyncIterator[Environments]:
    found = Environments(EnvironmentCache(layers, 1 << 30))
    yield found
    await found.aclose()


@pytest.fixture
def sandbox() -> Sandbox:
    return new_sandbox()


async def experiment(
    tmp_path: Path,
    sandbox: Sandbox,
    environments: Environments,
    diff: str,
    *,
    setup: SetupChoice = None,
    test_command: str = TESTS,
    progress: list[str] | None = None,
) -> ExperimentOutcome:
    repo = write(tmp_path / "repo", FILES)
    return await run_experiment(
        repo,
        diff,
        test_command,
        sandbox=sandbox,
        limits=LIMITS,
        workspace_root=tmp_path / "workspaces",
        environments=environments,
        setup=setup,
        progress=None if progress is None else progress.append,
    )


async def test_a_repositorys_requirements_are_installed_and_its_tests_run(
    tmp_path: Path, sandbox: Sandbox, environments: Environments
) -> None:
    steps: list[str] = []
    outcome = await experiment(tmp_path, sandbox, environments, FIX, progress=steps)
    assert outcome.status is ExperimentStatus.COMPLETED, outcome.error
    assert outcome.baseline is not None and outcome.candidate is not None
    assert (outcome.baseline.report.passed, outcome.baseline.report.failed) == (1, 1)
    assert (outcome.candidate.report.passed, outcome.candidate.report.total) == (2, 2)
    assert outcome.recommendation is Recommendation.MERGE
    environment = outcome.environment
    assert environment is not None and environment["origin"] == "recognised"
    assert "requirements.txt" in environment["step"] and "pytest" in environment["step"]
    # The diff changes no file the step reads: the candidate ran on the baseline's layer.
    assert environment["cached"] is True
    assert "preparing the baseline's environment" in steps


async def test_without_a_setup_step_the_tests_have_no_python_tools(
    tmp_path: Path, sandbox: Sandbox, environments: Environments
) -> None:
    outcome = await experiment(tmp_path, sandbox, environments, FIX, setup=False)
    assert outcome.environment is None
    assert outcome.baseline is not None and outcome.baseline.exit_code == 127
    assert "python: not found" in outcome.baseline.stderr_tail


async def test_a_failing_setup_step_is_reported_with_its_output(
    tmp_path: Path, sandbox: Sandbox, environments: Environments
) -> None:
    outcome = await experiment(
        tmp_path, sandbox, environments, FIX, setup="echo installing; echo broken >&2; exit 3"
    )
    assert outcome.status is ExperimentStatus.SETUP_FAILED
    assert outcome.recommendation is Recommendation.ROLLBACK
    assert outcome.baseline is None and outcome.candidate is None
    assert outcome.error == "the setup step exited with 3: broken"
    assert outcome.environment is not None
    setup = outcome.environment["setup"]
    assert setup["exit_code"] == 3 and "installing" in setup["stdout_tail"]
    assert outcome.to_dict()["environment"]["origin"] == "given"


async def test_a_diff_that_changes_the_requirements_gets_an_environment_of_its_own(
    tmp_path: Path, sandbox: Sandbox, environments: Environments
) -> None:
    outcome = await experiment(tmp_path, sandbox, environments, NEW_REQUIREMENT)
    # The baseline's layer is the cached one; the candidate's step runs anew and fails there.
    assert outcome.status is ExperimentStatus.SETUP_FAILED
    assert outcome.reason.startswith("the candidate's environment could not be set up")
    assert "no-such-distribution-of-this-name" in outcome.environment["setup"]["stderr_tail"]


async def test_the_tests_run_with_no_network_even_with_an_environment(
    tmp_path: Path, sandbox: Sandbox, environments: Environments
) -> None:
    probe = (
        "python -c \"import socket; socket.create_connection(('127.0.0.1', 5432), 2)\" "
        "&& echo REACHED || echo REFUSED"
    )
    outcome = await experiment(tmp_path, sandbox, environments, FIX, test_command=probe)
    assert outcome.baseline is not None
    assert "REFUSED" in outcome.baseline.stdout_tail
    assert "REACHED" not in outcome.baseline.stdout_tail


async def test_a_repository_that_declares_a_bad_step_is_answered_not_crashed(
    tmp_path: Path, sandbox: Sandbox, environments: Environments
) -> None:
    write(tmp_path / "repo", {"pyproject.toml": "[tool.singularity]\nsetup = 42\n"})
    outcome = await experiment(tmp_path, sandbox, environments, FIX)
    assert outcome.status is ExperimentStatus.SETUP_FAILED
    assert "must be a string" in (outcome.error or "")


async def test_a_plain_folder_of_tests_gets_pytest_when_its_test_command_runs_it(
    tmp_path: Path, sandbox: Sandbox, environments: Environments
) -> None:
    repo = write(
        tmp_path / "plain",
        {
            "calc.py": "def add(a, b):\n    return a - b\n",
            "test_calc.py": "from calc import add\n\n\ndef test_add():\n"
            "    assert add(2, 3) == 5\n",
        },
    )
    fix = FIX.split(" def name():")[0].replace("@@ -2,7 +2,7 @@\n \n \n", "@@ -1,2 +1,2 @@\n")
    outcome = await run_experiment(
        repo,
        fix,
        TESTS,
        sandbox=sandbox,
        limits=LIMITS,
        workspace_root=tmp_path / "workspaces",
        environments=environments,
    )
    assert outcome.status is ExperimentStatus.COMPLETED, outcome.error
    assert outcome.environment is not None
    assert outcome.environment["step"].endswith("with pytest, for the test command")
    assert outcome.baseline is not None and outcome.baseline.report.failed == 1
    assert outcome.candidate is not None and outcome.candidate.report.passed == 1


def test_a_command_that_needs_no_python_tools_gets_no_step(tmp_path: Path) -> None:
    repo = write(tmp_path / "plain", {"test_calc.py": "import unittest\n"})
    assert step_for(repo, None, "python3 -m unittest -v") is None
    assert step_for(repo, None, "make test") is None
    for command in ("pytest -q", "python -m pytest", "cd src && py.test", "(python -m unittest)"):
        found = step_for(repo, None, command)
        assert found is not None and "pytest" in found.script, command
