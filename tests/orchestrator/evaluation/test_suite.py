"""The evaluation suite: the loader, its one-line errors, and the built-in suite judged on
the host (the visible tests pass, each fail_to_pass command fails before the reference
change, and every judge command passes after it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from singularity.errors import ConfigError
from singularity.orchestrator.evaluation.suite import (
    LANGUAGES,
    EvalTask,
    SuiteError,
    builtin_suite_path,
    copy_hidden_tests,
    copy_repo,
    load_suite,
)

BUILTIN = load_suite()
PREFIXES = {"python": "py-", "javascript": "js-", "bash": "sh-"}
COMMAND_TIMEOUT = 30

TASK_TOML = """\
description = "The page count is wrong."
language = "python"
test_command = "python3 -m unittest -q"

[judge]
fail_to_pass = ["python3 -m unittest -q test_hidden"]
pass_to_pass = ["python3 -m unittest -q test_visible"]
"""


def write_task(suite: Path, task_id: str = "py-task", toml: str = TASK_TOML) -> Path:
    """A minimal valid task in a user suite."""
    task = suite / task_id
    (task / "repo").mkdir(parents=True)
    (task / "hidden").mkdir()
    (task / "task.toml").write_text(toml, encoding="utf-8")
    (task / "repo" / "pages.py").write_text("PAGES = 1\n", encoding="utf-8")
    (task / "repo" / "test_visible.py").write_text("", encoding="utf-8")
    (task / "hidden" / "test_hidden.py").write_text("", encoding="utf-8")
    return task


def edited(old: str, new: str) -> str:
    assert old in TASK_TOML
    return TASK_TOML.replace(old, new)


# --- the loader


def test_a_user_suite_loads(tmp_path: Path) -> None:
    task_dir = write_task(tmp_path)
    [task] = load_suite(tmp_path)
    assert task == EvalTask(
        id="py-task",
        description="The page count is wrong.",
        language="python",
        test_command="python3 -m unittest -q",
        fail_to_pass=("python3 -m unittest -q test_hidden",),
        pass_to_pass=("python3 -m unittest -q test_visible",),
        repo=task_dir / "repo",
        hidden=task_dir / "hidden",
        solution=None,
    )


def test_tasks_are_sorted_and_loose_files_ignored(tmp_path: Path) -> None:
    write_task(tmp_path, "sh-b", edited('"python"', '"bash"'))
    write_task(tmp_path, "js-a", edited('"python"', '"javascript"'))
    (tmp_path / "README.md").write_text("notes", encoding="utf-8")
    assert [task.id for task in load_suite(tmp_path)] == ["js-a", "sh-b"]


def test_the_solution_is_found_when_present(tmp_path: Path) -> None:
    task_dir = write_task(tmp_path)
    (task_dir / "solution.diff").write_text("", encoding="utf-8")
    assert load_suite(tmp_path)[0].solution == task_dir / "solution.diff"


def test_a_missing_suite_directory(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"suite directory .*nowhere.* does not exist"):
        load_suite(tmp_path / "nowhere")


def test_an_empty_suite(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="holds no task directory"):
        load_suite(tmp_path)


def test_a_suite_error_is_a_config_error() -> None:
    assert issubclass(SuiteError, ConfigError)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('description = "x\nlanguage = 1', r"task\.toml' is not valid TOML"),
        (edited('description = "The page count is wrong."\n', ""), "'description' is missing"),
        (edited('"python3 -m unittest -q"\n', "3\n"), "'test_command' must be a non-empty string"),
        (edited('description = "The page count is wrong."', 'description = "  "'), "non-empty"),
        (edited('"python"', '"ruby"'), "unknown language 'ruby' \\(known: bash, javascript"),
        (
            edited('["python3 -m unittest -q test_hidden"]', "[]"),
            "'judge.fail_to_pass' is empty",
        ),
        (
            edited('["python3 -m unittest -q test_visible"]', "[]"),
            "'judge.pass_to_pass' is empty",
        ),
        (edited('["python3 -m unittest -q test_hidden"]', "[1]"), "list of non-empty strings"),
        (edited('["python3 -m unittest -q test_hidden"]', '[" "]'), "list of non-empty strings"),
        (edited('["python3 -m unittest -q test_hidden"]', '"make"'), "list of non-empty"),
        (edited("pass_to_pass = ", "# "), "'judge.pass_to_pass' is missing"),
        (edited("[judge]", "[referee]"), "unknown key 'referee'"),
        (TASK_TOML.split("[judge]")[0], r"the \[judge\] table is missing"),
        (TASK_TOML.split("[judge]")[0] + 'judge = "yes"\n', r"the \[judge\] table is missing"),
        (TASK_TOML + "timeout = 5\n", r"unknown key 'timeout' in \[judge\]"),
        ('langauge = "python"\n' + TASK_TOML, "unknown key 'langauge'"),
    ],
)
def test_task_toml_errors_name_the_file(tmp_path: Path, toml: str, message: str) -> None:
    write_task(tmp_path, toml=toml)
    with pytest.raises(SuiteError, match=message) as caught:
        load_suite(tmp_path)
    error = str(caught.value)
    assert "\n" not in error
    assert str(tmp_path / "py-task" / "task.toml") in error


def test_a_missing_task_toml(tmp_path: Path) -> None:
    (write_task(tmp_path) / "task.toml").unlink()
    with pytest.raises(SuiteError, match=r"task\.toml' is missing"):
        load_suite(tmp_path)


def test_task_toml_that_is_not_text(tmp_path: Path) -> None:
    (write_task(tmp_path) / "task.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SuiteError, match="cannot be read"):
        load_suite(tmp_path)


@pytest.mark.parametrize("folder", ["repo", "hidden"])
def test_a_missing_repo_or_hidden_directory(tmp_path: Path, folder: str) -> None:
    shutil.rmtree(write_task(tmp_path) / folder)
    with pytest.raises(SuiteError, match=f"directory .*{folder}' is missing"):
        load_suite(tmp_path)


def test_an_empty_hidden_directory(tmp_path: Path) -> None:
    (write_task(tmp_path) / "hidden" / "test_hidden.py").unlink()
    with pytest.raises(SuiteError, match="hidden' holds no file"):
        load_suite(tmp_path)


@pytest.mark.parametrize("name", ["Py_Task", "-task", "task.d", "tâche"])
def test_a_task_directory_name_must_be_an_id(tmp_path: Path, name: str) -> None:
    write_task(tmp_path, name)
    with pytest.raises(SuiteError, match="lower-case letters, digits and dashes"):
        load_suite(tmp_path)


def test_hidden_tests_may_replace_test_files(tmp_path: Path) -> None:
    task_dir = write_task(tmp_path)
    tests = ("test_visible.py", "pages_test.py", "run-test.sh", "cart.test.js", "tests/run.sh")
    for relative in tests:
        for root in ("repo", "hidden"):
            (task_dir / root / relative).parent.mkdir(parents=True, exist_ok=True)
            (task_dir / root / relative).write_text("", encoding="utf-8")
    assert load_suite(tmp_path)[0].id == "py-task"


@pytest.mark.parametrize("relative", ["pages.py", "lib/pages.js", "contest.py", "latest.sh"])
def test_hidden_files_may_not_replace_source_files(tmp_path: Path, relative: str) -> None:
    task_dir = write_task(tmp_path)
    for root in ("repo", "hidden"):
        (task_dir / root / relative).parent.mkdir(parents=True, exist_ok=True)
        (task_dir / root / relative).write_text("", encoding="utf-8")
    with pytest.raises(SuiteError, match=f"would overwrite .*{relative}', which is not a test"):
        load_suite(tmp_path)


def test_a_hidden_file_may_not_replace_a_directory(tmp_path: Path) -> None:
    task_dir = write_task(tmp_path)
    (task_dir / "repo" / "tests").mkdir()
    (task_dir / "repo" / "tests" / "a.sh").write_text("", encoding="utf-8")
    (task_dir / "hidden" / "tests").write_text("", encoding="utf-8")
    with pytest.raises(SuiteError, match="would replace the directory"):
        load_suite(tmp_path)


@pytest.mark.parametrize("folder", ["repo", "hidden"])
def test_a_symbolic_link_out_of_the_task_is_refused(tmp_path: Path, folder: str) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("key", encoding="utf-8")
    suite = tmp_path / "suite"
    link = write_task(suite) / folder / "test_link.py"
    link.symlink_to(secret)
    with pytest.raises(SuiteError, match="is a symbolic link"):
        load_suite(suite)


def test_a_linked_repo_directory_is_refused(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    task_dir = write_task(suite)
    shutil.rmtree(task_dir / "repo")
    (task_dir / "repo").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(SuiteError, match="repo' is missing"):
        load_suite(suite)


def test_copies_leave_byte_code_caches_behind(tmp_path: Path) -> None:
    task_dir = write_task(tmp_path / "suite")
    (task_dir / "repo" / "__pycache__").mkdir()
    (task_dir / "repo" / "__pycache__" / "pages.cpython-311.pyc").write_bytes(b"")
    [task] = load_suite(tmp_path / "suite")
    work = copy_repo(task, tmp_path / "work")
    copy_hidden_tests(task, work)
    assert sorted(p.name for p in work.iterdir()) == [
        "pages.py",
        "test_hidden.py",
        "test_visible.py",
    ]


# --- the built-in suite


def test_the_builtin_suite_is_found_as_package_data() -> None:
    assert builtin_suite_path().is_dir()
    assert BUILTIN[0].repo.is_relative_to(builtin_suite_path())


def test_the_builtin_suite_is_large_and_varied() -> None:
    assert len(BUILTIN) >= 20
    assert {task.language for task in BUILTIN} == LANGUAGES
    assert len({task.id for task in BUILTIN}) == len(BUILTIN)
    for task in BUILTIN:
        assert task.repo.parent.name == task.id
        assert task.id.startswith(PREFIXES[task.language]), task.id
        assert task.solution is not None, f"{task.id} has no solution.diff"


def test_builtin_tasks_are_small() -> None:
    for task in BUILTIN:
        sources = [path for path in task.repo.rglob("*") if path.is_file()]
        assert 1 <= len(sources) <= 8, task.id
        for path in sources:
            lines = path.read_text(encoding="utf-8").count("\n")
            assert lines < 150, f"{path} has {lines} lines"


def run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        shell=True,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def explain(what: str, result: subprocess.CompletedProcess[str]) -> str:
    output = (result.stdout + result.stderr)[-1500:]
    return f"{what} (exit {result.returncode}):\n{output}"


@pytest.mark.parametrize("task", BUILTIN, ids=[task.id for task in BUILTIN])
def test_a_builtin_task_is_judged_correctly(tmp_path: Path, task: EvalTask) -> None:
    work = copy_repo(task, tmp_path / "repo")
    visible = run(task.test_command, work)
    assert visible.returncode == 0, explain("the visible tests fail on repo/", visible)

    copy_hidden_tests(task, work)
    for command in task.fail_to_pass:
        before = run(command, work)
        assert before.returncode != 0, explain(f"{command!r} passes before the fix", before)
    for command in task.pass_to_pass:
        before = run(command, work)
        assert before.returncode == 0, explain(f"{command!r} fails before the fix", before)

    assert task.solution is not None
    # A repository of its own: git apply then resolves paths from `work` even when the
    # temporary directory lies inside another working tree.
    initialised = run("git init -q", work)
    assert initialised.returncode == 0, explain("git init", initialised)
    applied = run(f"git apply --whitespace=nowarn {task.solution}", work)
    assert applied.returncode == 0, explain("git apply solution.diff", applied)
    for command in (*task.fail_to_pass, *task.pass_to_pass, task.test_command):
        after = run(command, work)
        assert after.returncode == 0, explain(f"{command!r} fails after the fix", after)


def test_the_judge_tells_a_wrong_fix_apart(tmp_path: Path) -> None:
    """A change that only silences the visible tests does not pass the hidden ones."""
    [task] = [task for task in BUILTIN if task.id == "py-pagination-off-by-one"]
    work = copy_repo(task, tmp_path / "repo")
    source = work / "pages.py"
    source.write_text(
        source.read_text(encoding="utf-8").replace(
            "return total // per_page", "return total // per_page + 1"
        ),
        encoding="utf-8",
    )
    copy_hidden_tests(task, work)
    results = [run(command, work).returncode for command in task.fail_to_pass]
    assert any(code != 0 for code in results)
