"""Finding a Chromium to drive with Playwright, for the web UI's tests and benchmarks.

Playwright's own browser download is not needed: Debian's `chromium` package (or any
Chromium named by SINGULARITY_CHROMIUM) does, headless, with these flags.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["LAUNCH_ARGS", "MISSING", "find_chromium"]

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

MISSING = "no Chromium: apt-get install chromium (or set SINGULARITY_CHROMIUM)"


def find_chromium() -> str | None:
    """SINGULARITY_CHROMIUM, Debian's /usr/bin/chromium, or one on PATH; None when none."""
    for candidate in (
        os.environ.get("SINGULARITY_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None
