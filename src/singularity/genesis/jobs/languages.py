"""The languages Genesis runs: how each is checked, linted, run and tested in the sandbox.

A command is a tuple of words; `{source}` stands for the code's file name and `{memory_mb}`
for the job's memory limit (words are `str.format` templates: a literal brace is doubled).
Commands run in /work, which holds the code (as `source`) and the job's other files. The
checker checks `source` only; the test command finds the tests among the files. Adding a
language is one entry in LANGUAGES.

Executables in `requires` must be visible inside the sandbox: they are looked up on the
sandbox's PATH and must resolve under /usr (a tool linked from /opt or /root is not mounted).
A `Tool` is the exception: a host binary (ruff, from the worker's own environment) bound
read-only into the sandbox for the one step that needs it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from singularity.genesis.sandbox import PYTHON, SANDBOX_PATH

__all__ = ["LANGUAGES", "Language", "Tool", "find_ruff", "language"]

_VISIBLE = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/")
_GENERIC_MEMORY_SIGNS = ("Cannot allocate memory", "cannot allocate memory", "std::bad_alloc")


@dataclass(frozen=True)
class Tool:
    """A host executable bound read-only into the sandbox at `target` for one step."""

    name: str
    target: str
    locate: Callable[[], Path | None]
    install_hint: str


@dataclass(frozen=True)
class Language:
    """How to check, lint, run and test one language's code."""

    name: str
    source: str  # the file the code is written to
    check: tuple[str, ...] | None
    lint: tuple[str, ...] | None
    run: tuple[str, ...]
    test: tuple[str, ...] | None
    requires: tuple[str, ...]  # executables the sandbox must have
    install_hint: str
    lint_tool: Tool | None = None  # bound for the lint step
    # Steps whose program checks the source itself, in its own start, before it runs anything
    # else (the check costs no process of its own): (step, argv template) pairs. The program
    # says its verdict on its descriptor 3 (see `Step.channel`): "ok MONOTONIC_S CPU_S" once
    # the source compiled, "error" (its message on stderr, exit 1) when it did not.
    checked: tuple[tuple[str, tuple[str, ...]], ...] = ()
    address_space_mb: int = 0  # added to memory_mb for RLIMIT_AS (runtimes reserving a lot)
    memory_signs: tuple[str, ...] = ()  # on stderr: the runtime ran out of memory

    def missing(self, mode: str | None = None) -> str | None:
        """None when this language (and the tool of `mode`, if any) can run; else why not."""
        for name in self.requires:
            if not _visible(name):
                return f"{self.name} needs {name}, which is not installed: {self.install_hint}"
        tool = self.lint_tool
        if mode == "lint" and tool is not None and tool.locate() is None:
            return f"linting {self.name} needs {tool.name}, which is not found: {tool.install_hint}"
        return None

    def command(
        self, step: str, *, memory_mb: int, args: Sequence[str] = ()
    ) -> tuple[str, ...] | None:
        """The argv of `step` (check, lint, run or test), or None when there is no such step."""
        template: tuple[str, ...] | None = getattr(self, step)
        if template is None:
            return None
        words = tuple(word.format(source=self.source, memory_mb=memory_mb) for word in template)
        return (*words, *args) if step == "run" else words

    def checked_command(
        self, step: str, *, memory_mb: int, args: Sequence[str] = ()
    ) -> tuple[str, ...] | None:
        """The argv of `step` with the check folded in (see `checked`), or None."""
        template = dict(self.checked).get(step)
        if template is None:
            return None
        words = tuple(word.format(source=self.source, memory_mb=memory_mb) for word in template)
        return (*words, *args) if step == "run" else words

    def binds(self, step: str) -> dict[str, Path]:
        """What `step` needs bound into the sandbox: sandbox path to host path."""
        tool = self.lint_tool
        found = tool.locate() if tool is not None and step == "lint" else None
        return {tool.target: found} if tool is not None and found is not None else {}

    @property
    def all_signs(self) -> tuple[str, ...]:
        """Everything on stderr that says this runtime ran out of memory."""
        return (*self.memory_signs, *_GENERIC_MEMORY_SIGNS)


def _visible(name: str) -> bool:
    found = name if os.path.isabs(name) else shutil.which(name, path=SANDBOX_PATH)
    if found is None or not os.access(found, os.X_OK):
        return False
    return os.path.realpath(found).startswith(_VISIBLE)


def find_ruff() -> Path | None:
    """The ruff binary of the running environment: beside the interpreter, on PATH, or ruff's."""
    candidates = [Path(sys.executable).parent / "ruff"]
    if found := shutil.which("ruff"):
        candidates.append(Path(found))
    try:
        from ruff.__main__ import find_ruff_bin

        candidates.append(Path(find_ruff_bin()))
    except (ImportError, FileNotFoundError):
        pass
    return next((path.resolve() for path in candidates if _is_binary(path)), None)


def _is_binary(path: Path) -> bool:
    """An executable ELF file (not a shim script that would need the host to run)."""
    try:
        with path.open("rb") as file:
            return file.read(4) == b"\x7fELF" and os.access(path, os.X_OK)
    except OSError:
        return False


RUFF = Tool("ruff", "/opt/ruff/ruff", find_ruff, "install ruff in Genesis's environment (pip)")

# Compiled, not run, and no bytecode written (the steps of a job share /work): Python's start
# without `site` takes about 10 ms where `-m py_compile` takes 30. The message is the one
# py_compile prints: the error without a traceback.
_PYTHON_CHECK = (
    "import sys\n"
    "path = sys.argv[1]\n"
    "try:\n"
    "    with open(path, 'rb') as source:\n"
    "        compile(source.read(), path, 'exec', dont_inherit=True)\n"
    "except Exception as exc:\n"
    "    sys.__excepthook__(type(exc), exc, None)\n"
    "    sys.exit(1)\n"
)

# The check folded into the program's own start: `python3 -c _PYTHON_CHECKED script FILE ARGS`
# compiles FILE (the checker's message on a failure, as above), says so on descriptor 3 and
# closes it, then runs the code as `python3 FILE ARGS` would (`__main__` with its `__file__`,
# `sys.argv`, `sys.path[0]`; tracebacks without this wrapper's frame); `module FILE NAME ARGS`
# checks FILE, then runs `python3 -m NAME ARGS`. Nothing of the job's is imported before the
# verdict is written and the descriptor closed. (Only a `.pth` file among the job's own files,
# in the user site under /work/.local, runs earlier, as it does for `python3 main.py`: it could
# write there too, and so mislead about its own job only; a verdict of more than one line is
# taken for none.)
_PYTHON_CHECKED = """def _main():
    import os, sys, time
    kind, source = sys.argv[1], sys.argv[2]
    path = os.path.abspath(source)
    try:
        with open(source, "rb") as file:
            code = compile(file.read(), path, "exec", dont_inherit=True)
    except Exception as exc:
        if isinstance(exc, SyntaxError) and exc.filename == path:
            exc.filename = source
        _say(os, b"error\\n")
        sys.__excepthook__(type(exc), exc.with_traceback(None), None)
        sys.exit(1)
    _say(os, ("ok %.6f %.6f\\n" % (time.monotonic(), time.process_time())).encode())
    names = sys.modules["__main__"].__dict__
    builtins = names["__builtins__"]
    names.clear()
    names.update(__name__="__main__", __doc__=None, __package__=None, __spec__=None)
    names.update(__annotations__=dict(), __builtins__=builtins)
    if kind == "script":
        loader = sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", path)
        names.update(__loader__=loader, __file__=path, __cached__=None)
        sys.argv[:] = sys.argv[2:]
        sys.path[0] = os.path.dirname(os.path.realpath(source))
    else:
        module = sys.argv[3]
        sys.argv[:] = ["-m", *sys.argv[4:]]
        sys.path[0] = os.getcwd()
        code = None
        import runpy
    try:
        if code is not None:
            exec(code, names)
        else:
            runpy._run_module_as_main(module)
    except SystemExit:
        raise
    except BaseException as exc:
        # As an uncaught exception would end `python3 FILE`, this frame left out.
        exc = exc.with_traceback(exc.__traceback__.tb_next)
        sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
        sys.excepthook(type(exc), exc, exc.__traceback__)
        if isinstance(exc, KeyboardInterrupt):
            import atexit, signal
            atexit._run_exitfuncs()
            sys.stdout.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        sys.exit(1)


def _say(os, line):
    try:
        os.write(3, line)
        os.close(3)
    except OSError as exc:
        os.write(2, ("sandbox: the check cannot say its verdict: %s\\n" % exc).encode())
        os._exit(126)


_main()
"""

_PYTHON_TEST = (PYTHON, "-m", "unittest", "discover", "-s", ".", "-p", "*test*.py")

_ELIXIR_TEST = (
    'ExUnit.start(); Code.require_file("{source}"); '
    'Enum.each(Path.wildcard("**/*_test.exs"), &Code.require_file/1)'
)

LANGUAGES: dict[str, Language] = {
    "python": Language(
        name="python",
        source="main.py",
        check=(PYTHON, "-I", "-S", "-c", _PYTHON_CHECK, "{source}"),
        lint=(RUFF.target, "check", "--no-cache", "--output-format", "concise", "."),
        run=(PYTHON, "{source}"),
        test=_PYTHON_TEST,
        requires=(PYTHON,),
        install_hint="install Python 3 (apt-get install python3)",
        lint_tool=RUFF,
        memory_signs=("MemoryError",),
        checked=(
            ("run", (PYTHON, "-c", _PYTHON_CHECKED, "script", "{source}")),
            ("test", (PYTHON, "-c", _PYTHON_CHECKED, "module", "{source}", *_PYTHON_TEST[2:])),
        ),
    ),
    "javascript": Language(
        name="javascript",
        source="main.js",
        check=("node", "--check", "{source}"),
        lint=None,
        run=("node", "--max-old-space-size={memory_mb}", "{source}"),
        test=("node", "--max-old-space-size={memory_mb}", "--test"),
        requires=("node",),
        install_hint="install Node.js (apt-get install nodejs)",
        # V8 reserves about 700 MB of address space (code range, heap cage) before it starts;
        # the heap itself is held to memory_mb by --max-old-space-size.
        address_space_mb=1024,
        memory_signs=("JavaScript heap out of memory", "Fatal process OOM"),
    ),
    "bash": Language(
        name="bash",
        source="main.sh",
        check=("bash", "-n", "{source}"),
        lint=None,
        run=("bash", "{source}"),
        test=None,
        requires=("bash",),
        install_hint="install bash (apt-get install bash)",
        memory_signs=("xmalloc",),
    ),
    "elixir": Language(
        name="elixir",
        source="main.exs",
        # Parsed, not compiled: compiling a script runs its top-level code.
        check=("elixir", "-e", 'Code.string_to_quoted!(File.read!("{source}"), file: "{source}")'),
        lint=None,
        run=("elixir", "{source}"),
        test=("elixir", "-e", _ELIXIR_TEST),
        requires=("elixir",),
        install_hint="install Elixir (apt-get install elixir)",
        # The BEAM maps a 1 GB super carrier and more at start (it fails below about 2 GB).
        address_space_mb=2048,
        memory_signs=("eheap_alloc", "Cannot allocate", "enomem"),
    ),
}

_ALIASES = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "node": "javascript",
    "sh": "bash",
    "shell": "bash",
    "ex": "elixir",
    "exs": "elixir",
}


def language(name: str) -> Language | None:
    """The language called `name` (or a usual short name of it), None when unknown."""
    key = name.strip().lower()
    return LANGUAGES.get(_ALIASES.get(key, key))
