"""The first process of a sandbox: starts the program under its limits, reaps it, reports.

In the sandbox it is PID 1 of the job's PID namespace (bubblewrap `--as-pid-1`), run by
`/usr/bin/python3 -I -S -c`, so it uses the standard library only and must stay compatible with
the system's Python. Being PID 1 matters three ways: the program cannot signal it (the kernel
drops signals to a namespace's init that it has no handler for), every orphan is reparented to
it, so the rusage it reports covers the whole tree, and when it exits the kernel kills whatever
is left in the namespace. The kernel delivers a signal from inside the namespace to its init only
when init has a handler for it, and Python installs one for SIGINT: so the reaper ignores every
signal it does not use (SIGCHLD, its wake-up, is harmless to receive), and gives the program
every default back.

Arguments: SCOPE REPORT_FD CONTROL_FD CPU_S AS_BYTES NPROC FSIZE NOFILE, then per step
`--step IN OUT ERR EXTRA COUNT WORD...` (IN -1: /dev/null; EXTRA, unless -1, becomes the
program's descriptor 3). SCOPE is "namespace" (kill everything
else in the PID namespace after each step) or "group" (the unsafe mode, where there is no
namespace: kill the step's process group only).

For step K it writes to REPORT_FD "pid K N" once the step's program is started, then "end K
exit CODE|signal NUMBER USER_S SYS_S MAX_RSS_KB STOPPED" once its whole tree is gone (the
rusage of that step's processes only). A step that does not exit 0 is the last. A byte on
CONTROL_FD (or its EOF, when the host is gone) stops the run: the tree is killed and the
report still written. The native helper (`reaper.c`) does the same, faster to start: the two
must stay alike.
"""

from __future__ import annotations

import os
import resource
import select
import signal
import sys
import time

_LIMITS = (
    resource.RLIMIT_AS,
    resource.RLIMIT_NPROC,
    resource.RLIMIT_FSIZE,
    resource.RLIMIT_NOFILE,
)


class _Usage:
    """The rusage of one step's processes, summed as they are reaped."""

    def __init__(self) -> None:
        self.user = self.system = 0.0
        self.max_rss = 0

    def add(self, usage: resource.struct_rusage) -> None:
        self.user += usage.ru_utime
        self.system += usage.ru_stime
        self.max_rss = max(self.max_rss, usage.ru_maxrss)


def main(args: list[str]) -> int:
    """Run the steps; returns the last one's exit code (128 + N for signal N)."""
    scope = args[0] if args else ""
    if scope != "group" and os.getpid() != 1:
        # Its last act kills every process it may signal: only a namespace's init may do that.
        os.write(2, b"sandbox: the reaper must be PID 1 of its own PID namespace\n")
        return 125
    report, control = int(args[1]), int(args[2])
    numbers = [int(value) for value in args[3:8]]
    steps = _steps(args[8:])
    _undumpable()
    _ignore_signals()
    if numbers[2]:
        # The tree's process limit holds here too: this process forks once per step, and a
        # program that found a way to run code here could not fork past the limit either.
        resource.setrlimit(resource.RLIMIT_NPROC, (numbers[2], numbers[2]))
    wake = _wakeup_pipe()
    code = 0
    for index, (fds, command) in enumerate(steps):
        usage = _Usage()
        pid = _spawn(command, fds, numbers, scope)
        os.write(report, f"pid {index} {pid}\n".encode())
        status, stopped = _watch(pid, wake, control, usage)
        status = _kill_tree(scope, pid, status, usage)
        for fd in fds:
            if fd > 2:  # the step's streams end with it: the host reads them to their EOF
                os.close(fd)
        kind, code = _status(status)
        figures = f"{usage.user:.6f} {usage.system:.6f} {usage.max_rss} {stopped:d}"
        os.write(report, f"end {index} {kind} {code} {figures}\n".encode())
        if stopped or kind != "exit" or code != 0:
            return code if kind == "exit" else 128 + code
    return code


def _steps(words: list[str]) -> list[tuple[list[int], list[str]]]:
    steps = []
    while words:
        if words[0] != "--step":
            raise SystemExit(125)
        fds = [int(word) for word in words[1:5]]
        count = int(words[5])
        steps.append((fds, words[6 : 6 + count]))
        words = words[6 + count :]
    return steps


def _undumpable() -> None:
    # Not dumpable: the program (same uid) can neither ptrace this process nor open its
    # /proc/1/fd, so it cannot forge the report or fork from here.
    import ctypes

    pr_set_dumpable = 4
    ctypes.CDLL(None).prctl(pr_set_dumpable, 0, 0, 0, 0)


def _catchable() -> list[signal.Signals | int]:
    return [n for n in signal.valid_signals() if n not in (signal.SIGKILL, signal.SIGSTOP)]


def _ignore_signals() -> None:
    # Ignored, not merely left at their defaults: a signal the program sends cannot end this
    # process (for the unsafe mode, where this is not an init, as much as for the sandbox).
    for signum in _catchable():
        if signum != signal.SIGCHLD:
            signal.signal(signum, signal.SIG_IGN)


def _wakeup_pipe() -> int:
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    return read


def _spawn(command: list[str], fds: list[int], numbers: list[int], scope: str) -> int:
    pid = os.fork()
    if pid:
        return pid
    try:
        _become_program(command, fds, numbers, scope)
    except OSError as exc:
        os.write(2, f"sandbox: cannot execute {command[0]}: {exc.strerror}\n".encode())
        os._exit(127 if isinstance(exc, FileNotFoundError) else 126)
    except BaseException:
        os._exit(126)
    return 0  # not reached: _become_program execs or raises


def _become_program(command: list[str], fds: list[int], numbers: list[int], scope: str) -> None:
    if scope == "group":
        os.setpgid(0, 0)
    # What the reaper ignores (and Python's SIGPIPE and SIGXFSZ) would stay ignored across exec:
    # the program gets every default action back.
    for signum in _catchable():
        signal.signal(signum, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    stdin = fds[0] if fds[0] >= 0 else os.open("/dev/null", os.O_RDONLY)
    for target, fd in enumerate((stdin, fds[1], fds[2], fds[3])):
        if fd >= 0:
            os.dup2(fd, target)
    os.closerange(3 if fds[3] < 0 else 4, 1 << 20)  # the step's own descriptor 3 stays
    cpu = numbers[0]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU first, SIGKILL a second on
    for index, which in enumerate(_LIMITS):
        value = numbers[index + 1]
        if value:  # 0: not limited (the unsafe mode's process count, shared with the user)
            resource.setrlimit(which, (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.execvp(command[0], command)


def _watch(pid: int, wake: int, control: int, usage: _Usage) -> tuple[int | None, bool]:
    """Reap children until the step's program exits or the host asks to stop."""
    while True:
        ready, _, _ = select.select([wake, control], [], [])
        if control in ready:
            return _reap_ready(pid, None, usage), True
        _drain(wake)
        status = _reap_ready(pid, None, usage)
        if status is not None:
            return status, False


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _reap_ready(pid: int, status: int | None, usage: _Usage) -> int | None:
    """Reap every child that has exited; the program's status once it is among them."""
    while True:
        try:
            child, found, rusage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if child == 0:
            return status
        usage.add(rusage)
        if child == pid:
            status = found


def _kill_tree(scope: str, pid: int, status: int | None, usage: _Usage) -> int:
    """Kill what is left of the step's tree, reap it all; returns the program's wait status."""
    for _ in range(1000):
        try:
            if scope == "namespace":
                os.kill(-1, signal.SIGKILL)  # everything in the namespace but this process
            else:
                os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            break
        status = _reap_ready(pid, status, usage)
        time.sleep(0.001)
    while status is None:
        try:
            child, found, rusage = os.wait4(-1, 0)
        except ChildProcessError:
            break
        usage.add(rusage)
        if child == pid:
            status = found
    _reap_ready(pid, status, usage)
    return status if status is not None else signal.SIGKILL


def _status(status: int) -> tuple[str, int]:
    if os.WIFSIGNALED(status):
        return "signal", os.WTERMSIG(status)
    return "exit", os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
