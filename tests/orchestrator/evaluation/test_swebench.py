"""SWE-bench-format instances, against a local clone: read, checked out, worked, judged."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from genesis_support import RunningGenesis
from nexus_support import RunningNexus
from singularity.config import Settings
from singularity.orchestrator.evaluation.run import evaluate
from singularity.orchestrator.evaluation.suite import SuiteError
from singularity.orchestrator.evaluation.swebench import load_instances
from singularity.orchestrator.platform import Connected
from singularity.orchestrator.service import task_runner
from singularity.testing.openai_server import MockOpenAI, Reply, ScriptedToolCall

BUGGY = "def clamp(value, low, high):\n    return max(low, value)\n"
FIXED = "def clamp(value, low, high):\n    return max(low, min(value, high))\n"
VISIBLE = """import unittest
from calc import clamp


class ClampTest(unittest.TestCase):
    def test_low(self):
        self.assertEqual(clamp(-5, 0, 10), 0)
"""
TEST_PATCH = """diff --git a/test_hidden.py b/test_hidden.py
new file mode 100644
--- /dev/null
+++ b/test_hidden.py
@@ -0,0 +1,7 @@
+import unittest
+from calc import clamp
+
+
+class HiddenTest(unittest.TestCase):
+    def test_high(self):
+        self.assertEqual(clamp(50, 0, 10), 10)
"""
TEMPLATE = "python3 -m unittest -q {tests}"


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x",
           "GIT_CONFIG_GLOBAL": os.devnull}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return done.stdout.decode().strip()


@pytest.fixture
def clone(tmp_path: Path) -> tuple[Path, str]:
    """repos/acme__calc: the buggy commit (the instance's base), then a later one."""
    repo = tmp_path / "repos" / "acme__calc"
    repo.mkdir(parents=True)
    (repo / "calc.py").write_text(BUGGY)
    (repo / "test_calc.py").write_text(VISIBLE)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    base = _git(repo, "rev-parse", "HEAD")
    (repo / "LATER.txt").write_text("a later commit\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "later")
    return repo.parent, base


def _instance(base: str, **changes: Any) -> dict[str, Any]:
    return {
        "instance_id": "acme__calc-1",
        "repo": "acme/calc",
        "base_commit": base,
        "problem_statement": "clamp() lets values above `high` through.",
        "test_patch": TEST_PATCH,
        "FAIL_TO_PASS": json.dumps(["test_hidden.HiddenTest.test_high"]),  # as datasets hold it
        "PASS_TO_PASS": ["test_calc.ClampTest.test_low"],
        **changes,
    }


def _jsonl(tmp_path: Path, *instances: dict[str, Any]) -> Path:
    path = tmp_path / "instances.jsonl"
    path.write_text("".join(json.dumps(instance) + "\n" for instance in instances))
    return path


def test_an_instance_becomes_a_task_at_its_base_commit(
    clone: tuple[Path, str], tmp_path: Path
) -> None:
    repos, base = clone
    [task] = load_instances(
        _jsonl(tmp_path, _instance(base)), repos, tmp_path / "checkouts", template=TEMPLATE,
        setup=False,
    )  # fmt: skip
    assert task.id == "acme__calc-1" and task.description.startswith("clamp()")
    assert (task.repo / "calc.py").read_text() == BUGGY
    assert not (task.repo / "LATER.txt").exists() and not (task.repo / ".git").exists()
    assert task.fail_to_pass == ("python3 -m unittest -q test_hidden.HiddenTest.test_high",)
    assert task.pass_to_pass == ("python3 -m unittest -q test_calc.ClampTest.test_low",)
    assert task.hidden_patch == TEST_PATCH and task.setup is False


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"base_commit": "not-a-commit"}, "`base_commit` is not a commit id"),
        ({"instance_id": "../../etc"}, "`instance_id` may hold"),
        ({"repo": "acme/nowhere"}, "no clone of 'acme/nowhere'"),
        ({"FAIL_TO_PASS": "[]"}, "`FAIL_TO_PASS` names no test"),
        ({"PASS_TO_PASS": "not json"}, "`PASS_TO_PASS` is not a list of test ids"),
        ({"test_patch": ""}, "`test_patch` is missing"),
        ({"base_commit": "0" * 40}, "cannot take"),
    ],
)
def test_an_instance_that_cannot_run_here_is_refused_with_its_line(
    clone: tuple[Path, str], tmp_path: Path, changes: dict[str, Any], reason: str
) -> None:
    repos, base = clone
    path = _jsonl(tmp_path, _instance(base, **changes))
    with pytest.raises(SuiteError, match=r"instances\.jsonl, line 1: ") as caught:
        load_instances(path, repos, tmp_path / "checkouts", template=TEMPLATE)
    assert reason in str(caught.value)


async def test_an_instance_is_worked_and_judged_with_its_test_patch(
    nexus: RunningNexus,
    genesis: RunningGenesis,
    llm: MockOpenAI,
    connected: Connected,
    nexus_settings: Settings,
    clone: tuple[Path, str],
    tmp_path: Path,
) -> None:
    repos, base = clone
    tasks = load_instances(
        _jsonl(tmp_path, _instance(base)), repos, tmp_path / "checkouts", template=TEMPLATE,
        setup=False,
    )  # fmt: skip
    write = ScriptedToolCall("write_file", {"path": "calc.py", "content": FIXED})
    llm.script(
        "alpha",
        Reply("", tool_calls=[write]),
        Reply("", tool_calls=[ScriptedToolCall("finish", {"summary": "clamp() caps at high."})]),
    )
    runner = task_runner(connected, nexus_settings)
    [result] = await evaluate(tasks, runner, tmp_path / "eval", concurrency=1)
    assert result.resolved, result
    assert list(result.judged.values()) == [True, True]
    assert "HiddenTest" not in json.dumps([c.body for c in llm.calls_for("alpha")])
