"""What an agent is shown of a repository: its layout, the files a task names, and the
contents of the files it reads, all bounded so that a prompt stays a prompt.

Paths are repository-relative POSIX strings. Nothing outside the repository is ever read:
a path that is absolute, climbs with `..`, lies in `.git`, or resolves (through a symlink)
to a place outside the root is refused. The layout leaves out what a model has no use for:
version control and virtual environments, caches and build output, hidden directories, and
binary files (known by their extension, or by a NUL byte near their start, as git does).
"""

from __future__ import annotations

import os
import re
import stat
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from singularity.errors import UsageError

__all__ = [
    "TRUNCATION_MARKER",
    "RepoContext",
    "format_files",
    "gather_context",
    "named_files",
    "read_files",
    "repository_layout",
]

# Directories never shown (hidden ones neither): caches, dependencies, build output.
_SKIP_DIRS = frozenset(
    {"__pycache__", "node_modules", "venv", "build", "dist", "htmlcov", "site-packages"}
)
# Files by extension a model cannot read (others are told by their content).
_BINARY_SUFFIXES = frozenset(
    {
        *(".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tiff", ".pdf"),
        *(".zip", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".tar", ".rar", ".jar", ".war"),
        *(".class", ".so", ".dylib", ".dll", ".exe", ".o", ".a", ".lib", ".pyc", ".pyo"),
        *(".pyd", ".whl", ".egg", ".woff", ".woff2", ".ttf", ".otf", ".eot", ".mp3", ".mp4"),
        *(".mov", ".avi", ".mkv", ".wav", ".flac", ".ogg", ".sqlite", ".sqlite3", ".db"),
        *(".bin", ".npy", ".npz", ".pkl", ".pickle", ".parquet", ".onnx", ".pt", ".ckpt"),
    }
)
TRUNCATION_MARKER = "[... truncated: {shown} of {size} bytes shown ...]"
_SNIFF_BYTES = 8000  # git's own heuristic: a NUL in the first 8000 bytes means binary
_INDEX_LIMIT = 50_000  # files indexed to match basenames; a larger repository is cut there
_MENTION = re.compile(r"`([^`\n]+)`|([^\s`'\"()<>\[\]{},;]+)")
_LOCATION = re.compile(r"(?::\d+(?::\d+)?|#L\d+(?:-L?\d+)?)$")  # cli.py:12, cli.py#L3-L9


@dataclass(frozen=True)
class RepoContext:
    """A repository as a prompt shows it; `truncated` lists files cut short or left out."""

    root: Path
    layout: str
    files: dict[str, str]
    named: list[str]
    truncated: list[str]


def gather_context(
    root: Path,
    description: str,
    *,
    extra_paths: Iterable[str] = (),
    max_entries: int = 400,
    max_file_bytes: int = 64_000,
    max_total_bytes: int = 256_000,
) -> RepoContext:
    """The layout, the files the task names, and `extra_paths` (a plan's choice), bounded."""
    base = _repository_root(root)
    named = named_files(base, description)
    files, truncated = read_files(
        base,
        [*named, *extra_paths],
        max_file_bytes=max_file_bytes,
        max_total_bytes=max_total_bytes,
    )
    layout = repository_layout(base, max_entries=max_entries)
    return RepoContext(base, layout, files, named, truncated)


def repository_layout(root: Path, *, max_entries: int = 400) -> str:
    """A tree of the repository's files, two spaces a level, directories first.

    Directories are listed breadth first, so a deep corner cannot crowd out the top
    levels; a directory with entries beyond `max_entries` ends with a "(N more)" line (the
    count leaves out binary files known by extension, not those only their content betrays:
    files are read for that only when shown).
    """
    base = _repository_root(root)
    children: dict[str, list[str]] = {}
    more: dict[str, int] = {}
    budget = max_entries
    queue: deque[str] = deque([""])
    while queue:
        directory = queue.popleft()
        entries = _listing(base, directory)
        shown: list[str] = []
        for index, (name, is_dir) in enumerate(entries):
            if budget <= 0:
                more[directory] = len(entries) - index
                break
            path = f"{directory}{name}"
            if not is_dir and _is_binary_file(base / path):
                continue
            shown.append(name + ("/" if is_dir else ""))
            budget -= 1
            if is_dir:
                queue.append(f"{path}/")
        children[directory] = shown
    lines = list(_render(children, more, "", 0))
    return "\n".join(lines) if lines else "(no files)"


def named_files(root: Path, description: str) -> list[str]:
    """The repository's files that the task text names, by path or by a unique ending."""
    base = _repository_root(root)
    index: list[str] | None = None
    found: list[str] = []
    for mention in _mentions(description):
        path = _relative(base, mention)
        if path is not None and (base / path).is_file():
            found.append(path)
            continue
        if path is None or mention.startswith("/"):
            continue
        if index is None:
            index = _file_index(base)
        matches = [file for file in index if file == path or file.endswith(f"/{path}")]
        if len(matches) == 1:
            found.append(matches[0])
    return list(dict.fromkeys(found))


def read_files(
    root: Path,
    paths: Iterable[str],
    *,
    max_file_bytes: int = 64_000,
    max_total_bytes: int = 256_000,
) -> tuple[dict[str, str], list[str]]:
    """(contents by path, paths cut short or left out) of the files named, in order.

    A file longer than `max_file_bytes`, or than what is left of `max_total_bytes`, is cut
    at a line end and ends with a truncation marker; the files after the budget runs out,
    binary files, and paths outside the repository are left out. Both kinds are in the
    second list (a left-out path is not in the first). Missing files are skipped silently:
    a plan names the files it will create too.
    """
    base = _repository_root(root)
    files: dict[str, str] = {}
    left_out: list[str] = []
    budget = max_total_bytes
    for requested in dict.fromkeys(paths):
        path = _relative(base, requested)
        if path is None:
            left_out.append(requested)
            continue
        if path in files or path in left_out:
            continue
        limit = max(0, min(max_file_bytes, budget))
        read = _read_prefix(base / path, max(limit, _SNIFF_BYTES))
        if read is None:
            continue
        data, size = read
        if b"\0" in data[:_SNIFF_BYTES] or limit == 0:
            left_out.append(path)
            continue
        text, used = _bounded_text(data, size, limit)
        if used < size:
            left_out.append(path)
        files[path] = text
        budget -= used
    return files, left_out


def format_files(files: Mapping[str, str]) -> str:
    """File contents for a prompt: each path, then its contents in a fence of its own."""
    if not files:
        return "(no files)"
    sections = []
    for path, content in files.items():
        longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
        fence = "`" * max(3, longest + 1)
        body = content if content.endswith("\n") or not content else content + "\n"
        sections.append(f"File `{path}`:\n{fence}\n{body}{fence}")
    return "\n\n".join(sections)


def _repository_root(root: Path) -> Path:
    if not root.exists():
        raise UsageError(f"repository {str(root)!r} does not exist")
    if not root.is_dir():
        raise UsageError(f"repository {str(root)!r} is not a directory")
    return root.resolve()


def _relative(base: Path, path: str) -> str | None:
    """The normalised relative form of `path` if it stays inside `base`, else None."""
    candidate = path.strip()
    if not candidate or "\0" in candidate:
        return None
    pure = PurePosixPath(candidate)
    if pure.is_absolute():
        try:
            pure = PurePosixPath(Path(candidate).resolve().relative_to(base).as_posix())
        except (ValueError, OSError):
            return None
    parts = [part for part in pure.parts if part != "."]
    if not parts or ".." in parts or ".git" in parts:
        return None
    relative = "/".join(parts)
    try:
        (base / relative).resolve().relative_to(base)
    except (ValueError, OSError):
        return None  # a symlink that leads out of the repository
    return relative


def _mentions(description: str) -> Iterator[str]:
    """Path-like words of a text: anything in backticks, or a word with a dot or a slash."""
    for match in _MENTION.finditer(description):
        quoted, word = match.groups()
        text = (quoted or word).strip().rstrip(".,:;!?")
        text = _LOCATION.sub("", text)
        if text.startswith("./"):
            text = text[2:]
        if text and (quoted or "/" in text or "." in text.lstrip(".")):
            yield text


def _listing(base: Path, directory: str) -> list[tuple[str, bool]]:
    """(name, is a directory) of the entries a layout shows, directories first, by name."""
    try:
        with os.scandir(base / directory) as scan:
            entries = [(entry.name, _is_real_dir(entry)) for entry in scan]
    except OSError:
        return []
    kept = [(name, is_dir) for name, is_dir in entries if _shown(name, is_dir)]
    return sorted(kept, key=lambda item: (not item[1], item[0].lower(), item[0]))


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _shown(name: str, is_dir: bool) -> bool:
    if is_dir:
        return not (name.startswith(".") or name in _SKIP_DIRS or name.endswith(".egg-info"))
    return PurePosixPath(name).suffix.lower() not in _BINARY_SUFFIXES


def _is_binary_file(path: Path) -> bool:
    read = _read_prefix(path, _SNIFF_BYTES)
    return read is not None and b"\0" in read[0]


def _render(
    children: dict[str, list[str]], more: dict[str, int], directory: str, depth: int
) -> Iterator[str]:
    indent = "  " * depth
    for name in children.get(directory, []):
        yield indent + name
        if name.endswith("/"):
            yield from _render(children, more, directory + name, depth + 1)
    if more.get(directory):
        yield f"{indent}({more[directory]} more)"


def _file_index(base: Path) -> list[str]:
    """The repository's files as the layout sees them (binary sniffing aside), bounded."""
    files: list[str] = []
    queue: deque[str] = deque([""])
    while queue and len(files) < _INDEX_LIMIT:
        directory = queue.popleft()
        for name, is_dir in _listing(base, directory):
            if is_dir:
                queue.append(f"{directory}{name}/")
            else:
                files.append(f"{directory}{name}")
    return files


def _read_prefix(path: Path, limit: int) -> tuple[bytes, int] | None:
    """(up to `limit` bytes, the file's size) of a regular file; None for anything else."""
    try:
        # O_NONBLOCK: a FIFO in the repository must not hang the reader.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit), info.st_size


def _bounded_text(data: bytes, size: int, limit: int) -> tuple[str, int]:
    """(the text shown, bytes of the file it covers): all of it, or a prefix cut at a line
    end (when one is near) with the truncation marker."""
    if size <= limit and len(data) >= size:
        return data.decode("utf-8", "replace"), size
    cut = data.rfind(b"\n", 0, limit) + 1
    if cut < limit // 2:
        cut = limit
    shown = data[:cut].decode("utf-8", "replace")
    if not shown.endswith("\n"):
        shown += "\n"
    return shown + TRUNCATION_MARKER.format(shown=cut, size=size) + "\n", cut
