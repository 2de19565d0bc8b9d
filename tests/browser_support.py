"""A real Chromium for the tests: Debian's package, driven by Playwright, headless."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from singularity.testing.browser import LAUNCH_ARGS, MISSING, find_chromium

CHROMIUM = find_chromium()
if CHROMIUM is None and os.environ.get("SINGULARITY_REQUIRE_BROWSER"):
    raise RuntimeError("the browser tests need Chromium: apt-get install chromium")

# A module's `pytestmark`: its tests skip on a machine without Chromium (CI requires it).
needs_browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason=MISSING,
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
