"""SWE-bench instances as evaluation tasks, against repositories on this host.

A JSONL file of SWE-bench-format instances (`instance_id`, `repo`, `base_commit`,
`problem_statement`, `test_patch`, `FAIL_TO_PASS`, `PASS_TO_PASS`; the two lists may be JSON
text, as the published datasets hold them) becomes tasks that `evaluate` runs as it runs a
suite's: the repository is the local clone `REPOS/owner__name` (SWE-bench's own naming) or
`REPOS/name`, taken at `base_commit` (`git archive` on a sealed git directory: nothing the
repository configures runs); the description is the problem statement; the judge applies
`test_patch` over the agent's change, then runs the FAIL_TO_PASS tests and the PASS_TO_PASS
tests, each list as one command made from `template` (`{tests}`: the test ids, quoted for the
shell). The environment is the one the repository declares or its layout suggests (see
Genesis's environments), unless `setup` says otherwise.
"""

from __future__ import annotations

import io
import json
import re
import shlex
import subprocess
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from singularity.orchestrator.evaluation.suite import EvalTask, SuiteError
from singularity.safegit import sealed_env, shadow_git_dir

__all__ = ["DEFAULT_TEMPLATE", "load_instances"]

DEFAULT_TEMPLATE = "python -m pytest -q -p no:cacheprovider {tests}"
_REQUIRED = ("instance_id", "repo", "base_commit", "problem_statement", "test_patch")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_COMMIT = re.compile(r"[0-9a-f]{7,64}")
_GIT_TIMEOUT_S = 300


def load_instances(
    path: Path,
    repos: Path,
    checkouts: Path,
    *,
    template: str = DEFAULT_TEMPLATE,
    setup: str | bool | None = None,
) -> list[EvalTask]:
    """The tasks of a SWE-bench JSONL file; each repository checked out under `checkouts`.
    SuiteError (one line, naming the line) for an instance that cannot be run here."""
    if "{tests}" not in template:
        raise SuiteError("the test command template must hold {tests}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SuiteError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    tasks = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            where = f"{path.name}, line {number}"
            instance = _instance(line, where)
            tasks.append(_task(instance, where, repos, checkouts, template, setup))
    if not tasks:
        raise SuiteError(f"{str(path)!r} holds no instance")
    return tasks


def _instance(line: str, where: str) -> dict[str, Any]:
    try:
        instance = json.loads(line)
    except (ValueError, RecursionError):
        raise SuiteError(f"{where}: not a JSON object") from None
    if not isinstance(instance, dict):
        raise SuiteError(f"{where}: not a JSON object")
    for key in _REQUIRED:
        if not isinstance(instance.get(key), str) or not instance[key].strip():
            raise SuiteError(f"{where}: `{key}` is missing or not text")
    if not _ID.fullmatch(instance["instance_id"]):
        raise SuiteError(f"{where}: `instance_id` may hold letters, digits, _ . and - only")
    if not _COMMIT.fullmatch(instance["base_commit"]):
        raise SuiteError(f"{where}: `base_commit` is not a commit id")
    for key in ("FAIL_TO_PASS", "PASS_TO_PASS"):
        instance[key] = _tests(instance.get(key, []), key, where)
    if not instance["FAIL_TO_PASS"]:
        raise SuiteError(f"{where}: `FAIL_TO_PASS` names no test")
    return instance


def _tests(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str):  # the published datasets hold the lists as JSON text
        try:
            value = json.loads(value)
        except ValueError:
            raise SuiteError(f"{where}: `{key}` is not a list of test ids") from None
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise SuiteError(f"{where}: `{key}` is not a list of test ids")
    return value


def _task(
    instance: dict[str, Any],
    where: str,
    repos: Path,
    checkouts: Path,
    template: str,
    setup: str | bool | None,
) -> EvalTask:
    clone = _clone(instance["repo"], repos, where)
    target = checkouts / instance["instance_id"]
    if not target.exists():
        _archive(clone, instance["base_commit"], target, where)
    fail, keep = instance["FAIL_TO_PASS"], instance["PASS_TO_PASS"]
    judge_keep = (_command(template, keep),) if keep else ()
    task = EvalTask(
        id=instance["instance_id"],
        description=instance["problem_statement"],
        language="python",
        test_command=_command(template, keep) if keep else _command(template, fail),
        fail_to_pass=(_command(template, fail),),
        pass_to_pass=judge_keep,
        repo=target,
        hidden=target,  # unused: the hidden tests are the test patch
        solution=None,
    )
    return replace(task, hidden_patch=instance["test_patch"], setup=setup)


def _command(template: str, tests: list[str]) -> str:
    return template.replace("{tests}", " ".join(shlex.quote(test) for test in tests))


def _clone(name: str, repos: Path, where: str) -> Path:
    owner, _, short = name.partition("/")
    for candidate in (repos / f"{owner}__{short}", repos / (short or owner)):
        if short and (candidate / ".git").is_dir():
            return candidate
    raise SuiteError(
        f"{where}: no clone of {name!r} in {str(repos)!r} (as {owner}__{short} or {short})"
    )


def _archive(clone: Path, commit: str, target: Path, where: str) -> None:
    """The tree of `commit`, written to `target` (read from a sealed git directory)."""
    with tempfile.TemporaryDirectory(prefix="singularity-swe-") as scratch:
        git_dir = shadow_git_dir(clone, Path(scratch))
        env = sealed_env(Path(scratch), git_dir, clone)
        done = subprocess.run(
            ["git", "archive", "--format=tar", commit],
            env=env,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        raise SuiteError(f"{where}: cannot take {commit} from {str(clone)!r}: {reason[0]}")
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        archive.extractall(target, filter="data")  # nothing outside target, no device
