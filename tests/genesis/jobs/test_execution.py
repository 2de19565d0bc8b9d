"""Jobs turned into classified results: each language's paths, in the real sandbox."""

from __future__ import annotations

import shutil
import signal
from dataclasses import replace

import pytest

from genesis_support import SLOTS, UIDS, require_bwrap
from singularity.genesis.jobs.execution import Execution, JobSpec, Mode, Status, classify, execute
from singularity.genesis.jobs.languages import LANGUAGES, Language
from singularity.genesis.limits import Limits
from singularity.genesis.sandbox import RunResult, Sandbox

FAST = Limits(wall_s=10.0, cpu_s=5.0)
ELIXIR_MISSING = LANGUAGES["elixir"].missing()
needs_elixir = pytest.mark.skipif(ELIXIR_MISSING is not None, reason=str(ELIXIR_MISSING))

PY_TEST = """import unittest
from main import add

class AddTest(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(2, 3), 5)
"""
JS_TEST = """const test = require('node:test');
const assert = require('node:assert');
const add = require('./main.js');
test('add', () => assert.strictEqual(add(2, 3), 5));
"""
EX_TEST = """defmodule AddTest do
  use ExUnit.Case
  test "add", do: assert(Add.add(2, 3) == 5)
end
"""


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    require_bwrap()
    return Sandbox(uid_base=UIDS, slots=SLOTS)


async def run(sandbox: Sandbox, language: str, code: str, **fields: object) -> Execution:
    return await execute(JobSpec(language, code, limits=FAST, **fields), sandbox)  # type: ignore[arg-type]


async def test_python_runs_with_stdin_and_args(sandbox: Sandbox) -> None:
    code = "import sys\nprint(input().upper(), sys.argv[1:])"
    done = await run(sandbox, "python", code, stdin="hello", args=("a", "b"))
    assert (done.status, done.output, done.error) == (Status.OK, "HELLO ['a', 'b']\n", None)
    assert done.steps == ("check", "run") and done.exit_code == 0
    assert done.wall_ms > 0 and done.max_rss_kb > 0 and not done.truncated


async def test_a_syntax_error_is_a_compile_error_with_the_checkers_message(
    sandbox: Sandbox,
) -> None:
    done = await run(sandbox, "python", "def broken(:\n    pass\n")
    assert done.status is Status.COMPILE_ERROR and done.steps == ("check",)
    assert "SyntaxError" in (done.error or "")


async def test_an_exception_is_a_runtime_error_with_the_traceback(sandbox: Sandbox) -> None:
    done = await run(sandbox, "python", "print('before')\nraise SystemExit(3)")
    assert (done.status, done.exit_code, done.output) == (Status.RUNTIME_ERROR, 3, "before\n")
    failed = await run(sandbox, "python", "1 / 0")
    assert failed.status is Status.RUNTIME_ERROR and "ZeroDivisionError" in (failed.error or "")


async def test_the_check_and_the_run_are_one_python_process_that_looks_like_the_script(
    sandbox: Sandbox,
) -> None:
    code = (
        "import os, sys\n"
        "print(__name__, __file__, sys.argv, sys.path[0], __spec__, __cached__)\n"
        "print(sorted(n for n in globals() if n not in ('os', 'sys')))\n"
        "def fail():\n"
        "    raise ValueError('no')\n"
        "fail()\n"
    )
    done = await run(sandbox, "python", code, args=("x",))
    first, names = done.output.splitlines()
    assert first == "__main__ /work/main.py ['main.py', 'x'] /work None None"
    assert names == (
        "['__annotations__', '__builtins__', '__cached__', '__doc__', '__file__', "
        "'__loader__', '__name__', '__package__', '__spec__']"
    )
    assert done.status is Status.RUNTIME_ERROR and done.error == (
        "Traceback (most recent call last):\n"
        '  File "/work/main.py", line 6, in <module>\n'
        "    fail()\n"
        '  File "/work/main.py", line 5, in fail\n'
        "    raise ValueError('no')\n"
        "ValueError: no\n"
    )
    check, ran = done.history
    assert (check.step, check.status, check.exit_code) == ("check", "OK", 0)
    assert check.wall_ms is not None and 0 < check.wall_ms <= (ran.wall_ms or 0)
    assert check.cpu_ms is not None and 0 < check.cpu_ms <= (ran.cpu_ms or 0)


async def test_a_syntax_error_says_where_without_a_traceback(sandbox: Sandbox) -> None:
    done = await run(sandbox, "python", "print('never')\ndef broken(:\n    pass\n")
    assert done.error == (
        '  File "main.py", line 2\n    def broken(:\n'
        "               ^\nSyntaxError: invalid syntax\n"
    )
    assert done.output == "" and done.history[0].status == "COMPILE_ERROR"


async def test_a_verdict_forged_before_the_check_counts_for_none(sandbox: Sandbox) -> None:
    # A .pth file among the job's own files runs before the check, in the user site.
    forged = "import os; os.write(3, b'ok 0 0\\n')\n"
    site = ".local/lib/python3.{0}/site-packages/forge.pth"
    files = {site.format(minor): forged for minor in range(8, 15)}
    done = await run(sandbox, "python", "def broken(:\n", files=files)
    assert done.status is Status.COMPILE_ERROR and done.steps == ("check",)
    assert "SyntaxError" in (done.error or "")


async def test_check_mode_only_checks(sandbox: Sandbox) -> None:
    done = await run(sandbox, "python", "raise SystemExit(1)", mode=Mode.CHECK)
    assert (done.status, done.steps) == (Status.OK, ("check",))


async def test_lint_findings_are_a_compile_error_and_clean_code_is_ok(sandbox: Sandbox) -> None:
    findings = await run(sandbox, "python", "import os\n", mode=Mode.LINT)
    assert findings.status is Status.COMPILE_ERROR and findings.steps == ("check", "lint")
    assert "F401" in (findings.error or "") and "F401" in findings.output
    clean = await run(sandbox, "python", "print('tidy')\n", mode=Mode.LINT)
    assert clean.status is Status.OK and clean.error is None


async def test_python_tests_run_over_the_files(sandbox: Sandbox) -> None:
    code = "def add(a, b):\n    return a + b\n"
    passing = await run(sandbox, "python", code, mode=Mode.TEST, files={"test_add.py": PY_TEST})
    assert passing.status is Status.OK and passing.steps == ("check", "test")
    assert "Ran 1 test" in (passing.error or "")  # unittest reports on stderr
    wrong = "def add(a, b):\n    return a - b\n"
    failing = await run(sandbox, "python", wrong, mode=Mode.TEST, files={"test_add.py": PY_TEST})
    assert failing.status is Status.RUNTIME_ERROR and "FAILED" in (failing.error or "")


async def test_javascript_checks_runs_and_tests(sandbox: Sandbox) -> None:
    ran = await run(sandbox, "javascript", "console.log(process.argv.slice(2))", args=("x",))
    assert (ran.status, ran.output) == (Status.OK, "[ 'x' ]\n")
    broken = await run(sandbox, "javascript", "function (")
    assert broken.status is Status.COMPILE_ERROR and "SyntaxError" in (broken.error or "")
    code = "module.exports = (a, b) => a + b;"
    tested = await run(sandbox, "javascript", code, mode=Mode.TEST, files={"add.test.js": JS_TEST})
    assert tested.status is Status.OK and "# pass 1" in tested.output
    wrong = "module.exports = (a, b) => a - b;"
    failed = await run(sandbox, "javascript", wrong, mode=Mode.TEST, files={"add.test.js": JS_TEST})
    assert failed.status is Status.RUNTIME_ERROR and "# fail 1" in failed.output


async def test_bash_checks_and_runs(sandbox: Sandbox) -> None:
    ran = await run(sandbox, "bash", 'read -r name; echo "hi $name $1"', stdin="ann", args=("!",))
    assert (ran.status, ran.output) == (Status.OK, "hi ann !\n")
    broken = await run(sandbox, "bash", "if then fi")
    assert broken.status is Status.COMPILE_ERROR and "syntax error" in (broken.error or "")


@needs_elixir
async def test_elixir_checks_runs_and_tests(sandbox: Sandbox) -> None:
    ran = await run(sandbox, "elixir", 'IO.puts("hi")')
    assert (ran.status, ran.output) == (Status.OK, "hi\n")
    broken = await run(sandbox, "elixir", "IO.puts(")
    assert broken.status is Status.COMPILE_ERROR
    code = "defmodule Add do\n  def add(a, b), do: a + b\nend\n"
    tested = await run(sandbox, "elixir", code, mode=Mode.TEST, files={"add_test.exs": EX_TEST})
    assert tested.status is Status.OK


@pytest.mark.skipif(ELIXIR_MISSING is None, reason="Elixir is installed here")
async def test_elixir_without_elixir_is_unsupported_with_the_install_hint(
    sandbox: Sandbox,
) -> None:
    done = await run(sandbox, "elixir", 'IO.puts("hi")')
    assert done.status is Status.UNSUPPORTED and done.steps == ()
    assert "apt-get install elixir" in (done.error or "")


async def test_a_language_whose_toolchain_is_missing_is_unsupported(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = Language(
        name="fortran",
        source="main.f90",
        check=None,
        lint=None,
        run=("gfortran-does-not-exist", "{source}"),
        test=None,
        requires=("gfortran-does-not-exist",),
        install_hint="install gfortran (apt-get install gfortran)",
    )
    monkeypatch.setitem(LANGUAGES, "fortran", fake)
    done = await run(sandbox, "fortran", "print *, 'hi'")
    assert done.status is Status.UNSUPPORTED
    assert done.error == (
        "fortran needs gfortran-does-not-exist, which is not installed: "
        "install gfortran (apt-get install gfortran)"
    )


@pytest.mark.parametrize(
    ("language", "mode", "message"),
    [
        (
            "cobol",
            Mode.RUN,
            "unknown language 'cobol'; supported: bash, elixir, javascript, python",
        ),
        ("bash", Mode.TEST, "bash has no test step"),
        ("javascript", Mode.LINT, "javascript has no lint step"),
    ],
)
async def test_what_cannot_be_done_is_unsupported(
    sandbox: Sandbox, language: str, mode: Mode, message: str
) -> None:
    done = await run(sandbox, language, "x", mode=mode)
    assert (done.status, done.error, done.steps) == (Status.UNSUPPORTED, message, ())


async def test_files_may_not_replace_the_code_nor_leave_the_work_directory(
    sandbox: Sandbox,
) -> None:
    replaced = await run(sandbox, "python", "print(1)", files={"main.py": "print(2)"})
    assert replaced.status is Status.UNSUPPORTED and "main.py" in (replaced.error or "")
    escaping = await run(sandbox, "python", "print(1)", files={"../up.py": "x"})
    assert escaping.status is Status.UNSUPPORTED and "relative path" in (escaping.error or "")


async def test_a_sandbox_that_cannot_be_set_up_is_internal() -> None:
    broken = Sandbox(uid_base=UIDS, slots=SLOTS, bwrap=shutil.which("false") or "/usr/bin/false")
    done = await execute(JobSpec("python", "print(1)", limits=FAST), broken)
    assert done.status is Status.INTERNAL and "sandbox failed" in (done.error or "")


async def test_a_signal_is_signaled(sandbox: Sandbox) -> None:
    done = await run(sandbox, "python", "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert done.status is Status.SIGNALED and done.exit_code is None
    assert "SIGSEGV" in (done.error or "")


async def test_node_running_out_of_heap_is_a_memory_limit(sandbox: Sandbox) -> None:
    code = "const a = []; while (true) a.push(new Array(1e6).fill(1));"
    limits = replace(FAST, memory_mb=256)
    done = await execute(JobSpec("javascript", code, limits=limits), sandbox)
    assert done.status is Status.MEMORY_LIMIT, done.error


def result(**fields: object) -> RunResult:
    values: dict[str, object] = {
        "exit_code": 0,
        "signal": None,
        "stdout": b"",
        "stderr": b"",
        "stdout_truncated": False,
        "stderr_truncated": False,
        "timed_out": False,
        "output_limited": False,
        "cpu_exceeded": False,
        "wall_ms": 1.0,
        "cpu_ms": 1.0,
        "max_rss_kb": 1000,
    }
    values.update(fields)
    return RunResult(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({}, Status.OK),
        ({"exit_code": 2}, Status.RUNTIME_ERROR),
        ({"exit_code": None, "signal": 9, "timed_out": True}, Status.TIMEOUT),
        ({"exit_code": None, "signal": signal.SIGXCPU, "cpu_exceeded": True}, Status.TIMEOUT),
        ({"exit_code": None, "signal": 9, "output_limited": True}, Status.OUTPUT_LIMIT),
        ({"exit_code": None, "signal": signal.SIGXFSZ}, Status.OUTPUT_LIMIT),
        ({"exit_code": 1, "stderr": b"Traceback...\nMemoryError\n"}, Status.MEMORY_LIMIT),
        ({"exit_code": None, "signal": 9, "max_rss_kb": 500 * 1024}, Status.MEMORY_LIMIT),
        ({"exit_code": None, "signal": 9, "max_rss_kb": 8000}, Status.SIGNALED),
        ({"exit_code": None, "signal": signal.SIGSEGV}, Status.SIGNALED),
    ],
)
def test_step_results_are_classified(fields: dict[str, object], status: Status) -> None:
    assert classify(result(**fields), LANGUAGES["python"], Limits(memory_mb=512)) is status


def test_each_runtime_has_its_own_signs_of_running_out_of_memory() -> None:
    aborted = result(exit_code=None, signal=6, stderr=b"FATAL ERROR: JavaScript heap out of memory")
    assert classify(aborted, LANGUAGES["javascript"]) is Status.MEMORY_LIMIT
    assert classify(aborted, LANGUAGES["python"]) is Status.SIGNALED
