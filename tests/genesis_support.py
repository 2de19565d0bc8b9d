"""Helpers of the Genesis tests: a worker in the background, the sandbox check, a repository."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from singularity.config import Settings
from singularity.genesis.service import Genesis
from singularity.postgres.cluster import Cluster
from singularity.service_context import ServiceContext

# A uid range of this test process's own: other test runs on the host (their sandboxes have
# uids of the default range, or of their own) are not mistaken for this one's leftovers.
UIDS = 2_100_000_000 + os.getpid() % 10_000 * 64
SLOTS = 64


def sandbox_processes() -> list[int]:
    """Host processes running as one of this test process's sandbox uids."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            uid = os.stat(f"/proc/{name}").st_uid
        except OSError:
            continue
        if UIDS <= uid < UIDS + SLOTS:
            found.append(int(name))
    return found


def require_bwrap() -> None:
    """Skip without bubblewrap, unless SINGULARITY_REQUIRE_SANDBOX=1 (CI), where it fails."""
    if shutil.which("bwrap") is None:
        if os.environ.get("SINGULARITY_REQUIRE_SANDBOX") == "1":
            pytest.fail("bubblewrap is required (SINGULARITY_REQUIRE_SANDBOX=1) but missing")
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")


class RunningGenesis:
    """A Genesis worker in the background for the length of an `async with` block."""

    def __init__(self, settings: Settings, cluster: Cluster, *, required: bool = True) -> None:
        self.service = Genesis(required=required)
        self.stop = asyncio.Event()
        self.context = ServiceContext(settings, cluster)

    async def __aenter__(self) -> RunningGenesis:
        self.task = asyncio.create_task(self.service.run(self.context, self.stop))
        ready = asyncio.create_task(self.service.ready.wait())
        await asyncio.wait({self.task, ready}, timeout=60, return_when="FIRST_COMPLETED")
        if self.task.done():
            self.task.result()  # raise what stopped it
        assert ready.done(), "genesis did not start"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


# A small repository with tests, and two changes to try on it.
MODULE = "def add(a, b):\n    return a + b\n"
TESTS = """import unittest
from calc import add


class AddTest(unittest.TestCase):
    def test_small(self):
        self.assertEqual(add(1, 2), 3)

    def test_negative(self):
        self.assertEqual(add(-1, -2), -3)

    def test_zero(self):
        self.assertEqual(add(0, 0), 0)
"""
GOOD_DIFF = """--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,3 @@
 def add(a, b):
+    # integers and floats alike
     return a + b
"""
BAD_DIFF = """--- a/calc.py
+++ b/calc.py
@@ -1,2 +1,2 @@
 def add(a, b):
-    return a + b
+    return a - b
"""
TEST_COMMAND = "python3 -m unittest -v"


def make_repo(root: Path) -> Path:
    repo = root / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text(MODULE)
    (repo / "test_calc.py").write_text(TESTS)
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
        "PATH": "/usr/bin:/bin",
    }
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "calc"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    return repo
