"""`singularity up` in a terminal: the live status view, redrawn while the services run."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.request
import uuid

from singularity.config import load_settings
from singularity.nexus.token import ui_token
from singularity.postgres.cluster import Cluster
from singularity.postgres.connect import connection
from singularity.postgres.topology import Database

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A command on a pseudo-terminal of 30 rows and 110 columns, its output collected."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 110, 0, 0))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "singularity", *args],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env=env,
            close_fds=True,
        )
        os.close(follower)
        self._leader = leader
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._leader, 65536)
            except OSError:  # the command exited and closed the terminal
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    @property
    def text(self) -> str:
        return _ANSI.sub("", b"".join(self._chunks).decode(errors="replace"))

    def wait_for(self, pattern: str, seconds: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = list(re.finditer(pattern, self.text))
            if found:
                return found[-1]  # the latest redraw
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not seen in:\n{self.text[-3000:]}")

    def wait_for_latest(self, pattern: str, value: str, seconds: float = 90) -> None:
        """Wait until the latest match of `pattern` (the latest redraw) captures `value`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = list(re.finditer(pattern, self.text))
            if found and found[-1].group(1) == value:
                return
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} never showed {value!r}:\n{self.text[-3000:]}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self._reader.join(5)
        os.close(self._leader)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _approval(cluster: Cluster) -> str:
    ident = str(uuid.uuid4())
    body = {"id": ident, "file_path": "app.py", "diff": "-x = 1\n+x = 2\n", "agent_id": "live"}
    with connection(cluster.admin(Database.SHARED_QUEUE)) as conn:
        conn.execute("SELECT pgmq.send('approval_requests', %s::jsonb)", (json.dumps(body),))
    return ident


def test_up_in_a_terminal_shows_a_live_status_view(
    cluster: Cluster, vector_available: bool
) -> None:
    port = _free_port()
    env = {**os.environ, "PORT": str(port), "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    flags = [] if vector_available else ["--without-pgvector"]
    up = Terminal("up", *flags, env=env)
    try:
        token = ui_token(load_settings(_env_file=None))
        up.wait_for(re.escape(f"http://127.0.0.1:{port}/?token={token}"))
        pid = up.process.pid
        up.wait_for(rf"centralcloud, genesis, nexus, singularity \(this process, pid {pid}\)")
        for flow in ("llm", "approval", "question", "job", "experiment"):
            up.wait_for(rf"│\s+{flow}\s+\d+\s+\d+\s+")
        up.wait_for("nexus_started")  # log lines print above the view
        before = int(up.wait_for(r"pending\s+(\d+) approvals").group(1))

        ident = _approval(cluster)
        pending = r"pending\s+(\d+) approvals"
        up.wait_for_latest(pending, str(before + 1))  # redrawn with what Nexus holds

        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/approvals/{ident}/reject",
            data=json.dumps({"reason": "not now"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answered:
            assert answered.status == 200
        up.wait_for_latest(pending, str(before))

        up.process.send_signal(signal.SIGINT)
        assert up.process.wait(60) == 0
        up.wait_for(r"stopped\s*$", seconds=10)
        assert "Traceback" not in up.text
    finally:
        up.close()
