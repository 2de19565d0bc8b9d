"""A real Chromium for the tests: Debian's package, driven by Playwright, headless."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> str | None:
    """Debian's Chromium (or SINGULARITY_CHROMIUM); None when the machine has none."""
    for candidate in (
        os.environ.get("SINGULARITY_CHROMIUM"),
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


CHROMIUM = chromium()
if CHROMIUM is None and os.environ.get("SINGULARITY_REQUIRE_BROWSER"):
    raise RuntimeError("the browser tests need Chromium: apt-get install chromium")

# A module's `pytestmark`: its tests skip on a machine without Chromium (CI requires it).
needs_browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium: apt-get install chromium (or set SINGULARITY_CHROMIUM)",
)


@contextlib.asynccontextmanager
async def launch_browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()
