"""What every command shares: the consoles, settings, and running async work."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape

from singularity.config import Settings, load_settings
from singularity.logs import configure_logging
from singularity.text_safety import escape_hidden

__all__ = ["console", "err_console", "load", "run"]

T = TypeVar("T")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def load(*, service: bool = False) -> Settings:
    """The settings, with logging set up: services log at SINGULARITY_LOG_LEVEL (info);
    one-shot commands show only warnings unless the variable is set."""
    settings = load_settings()
    explicit = "SINGULARITY_LOG_LEVEL" in os.environ
    level = settings.singularity_log_level if (service or explicit) else "warning"
    configure_logging(level, settings.singularity_log_format)
    if not service:
        # The pool warns on every failed connection attempt; the command's one error line
        # already says why it could not connect.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    return settings


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def shown(text: str) -> str:
    """A stranger's text (a model's, an agent's, a repository's, git's) for the terminal: no
    Rich markup of it obeyed, and every character that hides or reorders text, or that the
    terminal would obey (escape sequences), shown as <U+....>."""
    return escape(escape_hidden(text))
