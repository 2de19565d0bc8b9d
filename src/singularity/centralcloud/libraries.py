"""Which libraries a piece of code uses, per language (standard libraries left out).

Python is parsed with `ast` (a regex stands in for code that does not parse); JavaScript,
Elixir and shell are read with patterns, which is enough to count what is commonly used.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath

__all__ = ["LANGUAGE_ALIASES", "canonical_language", "libraries_in_job", "libraries_of"]

# The usual short names of the languages Genesis runs (as its own language table accepts them).
LANGUAGE_ALIASES: dict[str, str] = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "node": "javascript",
    "mjs": "javascript",
    "sh": "bash",
    "shell": "bash",
    "ex": "elixir",
    "exs": "elixir",
}

_EXTENSIONS = {
    ".py": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ex": "elixir",
    ".exs": "elixir",
    ".sh": "bash",
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def canonical_language(name: str) -> str:
    """A language's name as the analytics and patterns show it."""
    lowered = name.strip().lower()
    return LANGUAGE_ALIASES.get(lowered, lowered)


# -- Python ---------------------------------------------------------------------------------

_PY_STDLIB = frozenset(sys.stdlib_module_names) | {"__future__", "__main__"}
_PY_IMPORT = re.compile(r"^\s*(?:from\s+([A-Za-z_][\w.]*)\s+import|import\s+([\w., ]+))", re.M)


def _python(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return _python_by_pattern(code)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return _top_level(names, _PY_STDLIB)


def _python_by_pattern(code: str) -> set[str]:
    names: set[str] = set()
    for match in _PY_IMPORT.finditer(code):
        if match.group(1):
            names.add(match.group(1))
        else:
            names.update(part.split(" as ")[0].strip() for part in match.group(2).split(","))
    return _top_level({n for n in names if n}, _PY_STDLIB)


def _top_level(names: set[str], stdlib: frozenset[str]) -> set[str]:
    tops = {name.split(".")[0] for name in names}
    return {top for top in tops if top and top not in stdlib}


def _requirements(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match and not line.lstrip().startswith(("#", "-")):
            names.add(match.group(1).lower())
    return names


# -- JavaScript -----------------------------------------------------------------------------

_JS_MODULE = re.compile(
    r"""(?:\bimport\s+(?:[\w*{}\s,$]+\s+from\s+)?|\bexport\s+[\w*{}\s,$]+\s+from\s+|"""
    r"""\brequire\s*\(\s*|\bimport\s*\(\s*)['"]([^'"\n]+)['"]"""
)
_NODE_BUILTINS = _words(
    "assert async_hooks buffer child_process cluster console constants crypto dgram "
    "diagnostics_channel dns domain events fs http http2 https inspector module net os path "
    "perf_hooks process punycode querystring readline repl stream string_decoder timers tls "
    "trace_events tty url util v8 vm wasi worker_threads zlib"
)


def _javascript(code: str) -> set[str]:
    names = set()
    for specifier in _JS_MODULE.findall(code):
        package = _js_package(specifier)
        if package:
            names.add(package)
    return names


def _js_package(specifier: str) -> str | None:
    if specifier.startswith((".", "/", "node:")) or ":" in specifier:
        return None  # a relative file, a built-in, or a URL
    parts = specifier.split("/")
    package = "/".join(parts[:2]) if specifier.startswith("@") and len(parts) > 1 else parts[0]
    return None if package in _NODE_BUILTINS else package


def _package_json(text: str) -> set[str]:
    try:
        manifest = json.loads(text)
    except ValueError:
        return set()
    if not isinstance(manifest, dict):
        return set()
    names: set[str] = set()
    for section in ("dependencies", "devDependencies", "peerDependencies"):
        deps = manifest.get(section)
        if isinstance(deps, dict):
            names.update(str(name) for name in deps)
    return names


# -- Elixir ---------------------------------------------------------------------------------

_EX_DIRECTIVE = re.compile(r"^\s*(?:alias|import|use|require)\s+([A-Z][\w]*)", re.M)
_EX_MIX_DEP = re.compile(r"\{\s*:([a-z_][a-z0-9_]*)\s*,\s*(?:\"|'|~|github:|path:|git:)")
_EX_STDLIB = _words(
    "Access Agent Application Atom Base Bitwise Calendar Code Config Date DateTime "
    "DynamicSupervisor EEx Enum ExUnit Exception File Float Function GenServer IEx IO Inspect "
    "Integer Kernel Keyword List Logger Macro Map MapSet Mix Module NaiveDateTime Node "
    "OptionParser PartitionSupervisor Path Port Process Protocol Range Record Regex Registry "
    "Stream String StringIO Supervisor System Task Time Tuple URI Version"
)


def _elixir(code: str) -> set[str]:
    modules = {name for name in _EX_DIRECTIVE.findall(code) if name not in _EX_STDLIB}
    if "defp deps" in code or "def deps" in code:
        modules.update(_EX_MIX_DEP.findall(code))
    return modules


# -- shell ----------------------------------------------------------------------------------

_SH_SPLIT = re.compile(r"\|\||&&|[|;&`]|\$\(")
_SH_SKIP = _words(
    ". : [ [[ ] ]] { } ( ) ! alias bg break case cd command continue declare do done echo elif "
    "else esac eval exec exit export false fg fi for function getopts hash if in jobs kill let "
    "local printf pwd read readonly return select set shift source test then time trap true "
    "type typeset ulimit umask unalias unset until wait while"
)


_SH_PREFIXES = _words("! { ( do elif else if then time until while")
_SH_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
_SH_COMMAND = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def _bash(code: str) -> set[str]:
    """The commands a script runs (the first word of each simple command), builtins left out."""
    commands = set()
    for line in code.splitlines():
        line = "" if line.lstrip().startswith("#") else line.split(" #", 1)[0]
        for part in _SH_SPLIT.split(line):
            words = part.split()
            # `FOO=bar cmd`, `then cmd`, `! cmd`: the command is what follows
            while words and (_SH_ASSIGNMENT.match(words[0]) or words[0] in _SH_PREFIXES):
                words.pop(0)
            if words and _SH_COMMAND.match(words[0]) and words[0] not in _SH_SKIP:
                commands.add(words[0])
    return commands


_DETECTORS: dict[str, Callable[[str], set[str]]] = {
    "python": _python,
    "javascript": _javascript,
    "elixir": _elixir,
    "bash": _bash,
}

_MANIFESTS: dict[str, tuple[str, Callable[[str], set[str]]]] = {
    "requirements.txt": ("python", _requirements),
    "package.json": ("javascript", _package_json),
    "mix.exs": ("elixir", _elixir),
}


def libraries_of(language: str, code: str) -> set[str]:
    """The libraries `code` in `language` uses (an unknown language: none)."""
    detector = _DETECTORS.get(canonical_language(language))
    return detector(code) if detector else set()


def libraries_in_job(
    language: str, code: str, files: Mapping[str, str] | None = None
) -> dict[str, set[str]]:
    """Libraries per language in a job's code and its extra files (source files by extension,
    and requirements.txt, package.json and mix.exs manifests)."""
    found: dict[str, set[str]] = {}
    primary = canonical_language(language)
    found.setdefault(primary, set()).update(libraries_of(primary, code))
    for path, text in (files or {}).items():
        if not isinstance(text, str):
            continue
        name = PurePosixPath(path).name
        if name in _MANIFESTS:
            manifest_language, read = _MANIFESTS[name]
            found.setdefault(manifest_language, set()).update(read(text))
        elif (by_extension := _EXTENSIONS.get(PurePosixPath(path).suffix)) is not None:
            found.setdefault(by_extension, set()).update(libraries_of(by_extension, text))
    return {lang: names for lang, names in found.items() if names}
