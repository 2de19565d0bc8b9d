"""The command lines that start a sandbox: bubblewrap's mounts, the uid switch, the reaper.

What the sandbox sees: /usr read-only (with the merged-/usr links, or read-only binds where /bin
and /lib are directories), an /etc of its own (`etc`: a few entries of the host's, never passwd,
shadow or anything secret; passwd, group and hosts written for the sandbox), /proc of its own
PID namespace, a minimal /dev, tmpfs at /work (unless a host directory is bound there), /tmp and
/dev/shm, and the read-only binds a run asks for. The root
and /dev are remounted read-only, so nothing can be written outside those tmpfs mounts.
Everything else of the host (/root, /home, /var, /run, the project, SINGULARITY_HOME) is absent.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from singularity.genesis.limits import MIB, Limits
from singularity.genesis.sandbox.identity import Identity
from singularity.genesis.sandbox.result import SandboxUnavailable
from singularity.genesis.sandbox.staging import Bind, reachable

__all__ = [
    "PYTHON",
    "SANDBOX_PATH",
    "WORK",
    "Bind",
    "Command",
    "environment",
    "forget_made",
    "host_tool",
    "inode_budget",
    "launcher",
    "process_cap",
    "python_reaper",
    "reaper_argv",
    "sandbox_args",
    "scratch_sizes",
    "shm_mb",
    "stage_of",
    "stage_prefix",
    "staged",
]

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
WORK = "/work"
PYTHON = "/usr/bin/python3"  # the system's Python runs the reaper (and Python jobs)
SHM_MB = 16
_ROOT_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Runs as root in a private mount namespace: mounts each sized tmpfs ("-t OPTIONS ENTRY") and
# binds each unreachable source ("SOURCE ENTRY", SOURCE absolute) on its stage entry, then hands
# over to the uid switch; bubblewrap then binds the stage entries as usual. The portable twin of
# the native helper's `stage` (reaper.c), which takes the same words.
_STAGE_SCRIPT = (
    'while [ "$1" != -- ]; do if [ "$1" = -t ]; then '
    'mount -t tmpfs -o "$2,nosuid,nodev" tmpfs "$3" '
    '|| exit 125; shift 3; else mount --bind "$1" "$2" || exit 125; shift 2; fi; done; '
    'shift; exec "$@"'
)
_PAGE = 4096
# Root's (only a root worker stages), beside the uid locks: the sandbox's uid may enter it, not
# list it; nothing of it is left in the shared temporary directory.
STAGE_DIR = Path("/run/singularity-stage")


@dataclass
class Command:
    """A process to start: its argv, the descriptors it inherits, who it runs as, and where."""

    argv: list[str]
    env: dict[str, str]
    pass_fds: list[int] = field(default_factory=list)
    user: int | None = None  # switch to this uid (and gid) before exec
    cwd: str | None = None
    stderr: int | None = None  # its stderr (None: the worker's)


def host_tool(name: str) -> str | None:
    """The path of a system executable, looked up in the system directories only."""
    return shutil.which(name, path=_HOST_PATH)


def environment(home: str, tmp: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a sandboxed program: nothing of the host's."""
    return {"PATH": SANDBOX_PATH, "HOME": home, "LANG": "C.UTF-8", "TMPDIR": tmp, **extra}


@functools.cache
def _reaper_source() -> str:
    return (Path(__file__).parent / "reaper.py").read_text()


def python_reaper() -> list[str]:
    """The start of the portable reaper's command line (see `reaper.py`)."""
    return [PYTHON, "-I", "-S", "-c", _reaper_source()]


# A step's descriptors: stdin (-1: none), stdout, stderr, and optionally one more that the
# program gets as its descriptor 3 (absent or -1: none); its argv.
Step = tuple[tuple[int, ...], Sequence[str]]


def reaper_argv(
    head: Sequence[str],
    steps: Sequence[Step],
    limits: Limits,
    *,
    report: int,
    control: int,
    scope: str,
    nproc: bool,
) -> list[str]:
    """The reaper (PID 1 of the sandbox, started by `head`) running `steps` under `limits`."""
    numbers = (
        max(1, math.ceil(limits.cpu_s)),
        limits.memory_mb * MIB,
        limits.processes + 1 if nproc else 0,  # the reaper counts as one
        limits.file_size_mb * MIB,
        limits.open_files,
    )
    words = [*head, scope, str(report), str(control), *map(str, numbers)]
    for fds, argv in steps:
        padded = (*fds, -1)[:4]
        words += ["--step", *map(str, padded), str(len(argv)), *argv]
    return words


def sandbox_args(
    bwrap: str,
    identity: Identity,
    limits: Limits,
    *,
    status_fd: int,
    etc: str,
    work: Bind | None,
    inputs: Sequence[tuple[int, str]],
    binds: Sequence[Bind],
    scratch: Mapping[str, Bind] | None = None,
) -> list[str]:
    """bubblewrap's options: namespaces, mounts, and the files written into the sandbox.

    `etc` is the host directory bound read-only at /etc (see `etc.prepare`). `scratch` holds
    the tmpfs mounts already made (by `staged`, with an inode limit) by target; without it
    bubblewrap makes them, sized but with the kernel's default inode limit.
    """
    made = scratch or {}

    def tmpfs(target: str, size_mb: int) -> list[str]:
        return _bind(made[target]) if target in made else _tmpfs(target, size_mb)

    args = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent"]
    args += ["--new-session", "--as-pid-1", "--hostname", "sandbox"]
    args += ["--uid", str(identity.uid), "--gid", str(identity.gid)]
    args += ["--json-status-fd", str(status_fd), *_system(), "--ro-bind", etc, "/etc"]
    args += ["--proc", "/proc", "--dev", "/dev", *tmpfs("/dev/shm", shm_mb(limits))]
    args += tmpfs("/tmp", limits.disk_mb)
    args += tmpfs(WORK, limits.disk_mb) if work is None else _bind(work)
    for fd, target in inputs:
        args += ["--perms", "0644", "--file", str(fd), target]
    for bind in binds:
        args += _bind(bind)
    return [*args, "--remount-ro", "/", "--remount-ro", "/dev", "--chdir", WORK]


@functools.cache
def _system() -> tuple[str, ...]:
    # Once per worker: the host's layout of / does not change under it.
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _ROOT_DIRS:
        host = Path("/", name)
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    return tuple(args)


def shm_mb(limits: Limits) -> int:
    """The size of the sandbox's /dev/shm."""
    return min(SHM_MB, limits.disk_mb)


def scratch_sizes(limits: Limits, work: Bind | None) -> dict[str, int]:
    """The sandbox's tmpfs mounts and their sizes in MB: /work unless a host directory is bound."""
    sizes = {"/dev/shm": shm_mb(limits), "/tmp": limits.disk_mb}
    return sizes if work is not None else {**sizes, WORK: limits.disk_mb}


def inode_budget(size_mb: int) -> int:
    """Files and directories a tmpfs of `size_mb` may hold: one per page of its size.

    A file takes at least a page of the size limit only once it holds a byte; empty files,
    directories and links take none, only kernel memory (about 1 KB each). This caps that
    memory at about a quarter of the tmpfs's size.
    """
    return size_mb * MIB // _PAGE


def _tmpfs(target: str, size_mb: int) -> list[str]:
    return ["--perms", "0755", "--size", str(size_mb * MIB), "--tmpfs", target]


def _bind(bind: Bind) -> list[str]:
    return ["--bind" if bind.writable else "--ro-bind", str(bind.source), bind.target]


def staged(
    binds: Sequence[Bind],
    stage: Path,
    identity: Identity,
    scratch: Mapping[str, int] | None = None,
    scratch_stage: Path | None = None,
) -> tuple[list[str], list[Bind], dict[str, Bind]]:
    """The words that stage mounts (as root), and the binds to use instead.

    bubblewrap mounts as the sandbox's uid, by name, so it cannot bind a path under a directory
    only root may enter (a workspace under a private directory, a tool under /root), nor give
    a tmpfs an inode limit (it has no option for it). A root worker, in a mount namespace of
    this run only, binds each such path onto an entry of `stage` (a directory the uid may
    enter), and mounts each tmpfs of `scratch` (target: size in MB) sized, with an inode limit
    and owned by the uid, on one; bubblewrap binds those entries. Returns the words ("-t
    OPTIONS ENTRY" per tmpfs, "SOURCE ENTRY" per bind), the replaced binds, and the tmpfs
    binds by target; `stage_prefix` turns the words into a command line. The tmpfs entries are
    made in `scratch_stage` when given (they may exist already: they are only mount points).
    """
    words = []
    made = {}
    for index, (target, size_mb) in enumerate((scratch or {}).items()):
        entry = (scratch_stage or stage) / f"tmpfs{index}"
        if scratch_stage is not None:
            _made_once(entry, 0o755)  # only a mount point: kept
        else:
            entry.mkdir(mode=0o755)
        words += ["-t", _tmpfs_options(size_mb, identity), str(entry)]
        made[target] = Bind(entry, target, writable=True)
    replaced = []
    for index, bind in enumerate(binds):
        entry = stage / str(index)
        if bind.source.is_dir():
            entry.mkdir(mode=0o755)
        else:
            entry.touch(mode=0o644)
        words += [str(bind.source.absolute()), str(entry)]
        replaced.append(Bind(entry, bind.target, bind.writable))
    return words, replaced, made


def stage_prefix(
    words: Sequence[str], identity: Identity, limits: Limits, helper: str | None
) -> list[str]:
    """What runs before bubblewrap on a root worker: the mounts of `words`, the uid's process
    cap, the switch to the uid. One program with the native `helper`, else util-linux's."""
    if helper is not None:
        numbers = (identity.uid, identity.gid, _host_processes(limits))
        return [helper, "stage", *map(str, numbers), *words, "--"]
    prefix = [_need("unshare"), "--mount", "--propagation", "private", "--"]
    prefix += ["/bin/sh", "-c", _STAGE_SCRIPT, "stage", *words]
    prefix += ["--", _need("setpriv"), "--reuid", str(identity.uid), "--regid", str(identity.gid)]
    return [*prefix, "--clear-groups", "--", *process_cap(limits)]


def _tmpfs_options(size_mb: int, identity: Identity) -> str:
    # nosuid and nodev are added by the mounter (flags for the helper, options for mount(8)).
    size = f"size={size_mb * MIB},nr_inodes={inode_budget(size_mb)}"
    return f"{size},mode=0755,uid={identity.uid},gid={identity.gid}"


def _host_processes(limits: Limits) -> int:
    # The tree's processes, its reaper, and bubblewrap itself.
    return limits.processes + 2


def process_cap(limits: Limits) -> list[str]:
    """prlimit as a prefix: the dedicated uid's processes on the host, bubblewrap's included.

    The tree's own limit is set by the reaper inside the user namespace; this one, set before
    bubblewrap creates the namespace, also bounds the namespace from outside.
    """
    return [_need("prlimit"), f"--nproc={_host_processes(limits)}", "--"]


def _need(name: str) -> str:
    found = host_tool(name)
    if found is None:
        raise SandboxUnavailable(
            f"{name} is missing: install util-linux (apt-get install util-linux)"
        )
    return found


def launcher(
    stack: contextlib.ExitStack,
    identity: Identity,
    limits: Limits,
    work: Bind | None,
    mounts: list[Bind],
    helper: str | None = None,
) -> tuple[list[str], int | None, Bind | None, list[Bind], dict[str, Bind]]:
    """The prefix before bubblewrap, the uid to switch to, the (maybe staged) binds, and the
    tmpfs mounts already made (a root worker stages them all; see `staged`); `helper` is the
    native helper's path, when there is one."""
    if not identity.dedicated:
        return [], None, work, mounts, {}
    binds = [work, *mounts] if work is not None else list(mounts)
    hidden = [bind for bind in binds if not reachable(bind.source, identity)]
    # The uid's own stage, kept: only one run holds the uid at a time, and its tmpfs entries
    # are empty mount points on the host (the mounts live in the run's mount namespace only).
    stage = stage_of(identity)
    entries = stage
    if hidden:  # a file or a directory each: made for this run, removed after it
        entries = Path(tempfile.mkdtemp(prefix="run-", dir=stage))
        stack.callback(shutil.rmtree, entries, ignore_errors=True)
        os.chmod(entries, 0o711)
    scratch = scratch_sizes(limits, work)
    words, replaced, made = staged(hidden, entries, identity, scratch, scratch_stage=stage)
    swap = {id(old): new for old, new in zip(hidden, replaced, strict=True)}
    binds = [swap.get(id(bind), bind) for bind in binds]
    if work is not None:
        work, binds = binds[0], binds[1:]
    return stage_prefix(words, identity, limits, helper), None, work, binds, made


def stage_of(identity: Identity) -> Path:
    """The stage of a dedicated uid (root's): kept from run to run of that uid."""
    stage = STAGE_DIR / f"uid-{identity.uid}"
    _made_once(STAGE_DIR, 0o711)
    _made_once(stage, 0o711)
    return stage


_made: set[Path] = set()  # directories this process made (or found) already


def _made_once(path: Path, mode: int) -> None:
    if path not in _made:
        path.mkdir(mode=mode, exist_ok=True)
        _made.add(path)


def forget_made() -> None:
    """Make the stage directories again at the next run (a run failed to set up: one may be
    gone)."""
    _made.clear()
