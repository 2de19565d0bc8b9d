"""The web UI's access token: NEXUS_UI_TOKEN, or one generated on first start and kept in
$SINGULARITY_HOME/nexus/ui-token (readable by its owner only)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from singularity.config import Settings
from singularity.errors import ConfigError
from singularity.private import open_private, private_dir

__all__ = ["csrf_token", "token_file", "ui_token"]

_MIN_LENGTH = 16


def token_file(settings: Settings) -> Path:
    return settings.nexus_dir / "ui-token"


def ui_token(settings: Settings, *, create: bool = True) -> str:
    """The token; generated and stored when there is none yet (unless `create` is False)."""
    if settings.nexus_ui_token is not None:
        token = settings.nexus_ui_token.get_secret_value().strip()
        if len(token) < _MIN_LENGTH:
            raise ConfigError(f"NEXUS_UI_TOKEN: must be at least {_MIN_LENGTH} characters")
        return token
    path = token_file(settings)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = ""
    except OSError as exc:
        raise ConfigError(f"cannot read the UI token at {path}: {exc.strerror}") from None
    if token:
        return token
    if not create:
        raise ConfigError(f"no UI token yet at {path}: start Nexus once, or set NEXUS_UI_TOKEN")
    return _create(path, settings.singularity_home)


def _create(path: Path, home: Path) -> str:
    token = secrets.token_urlsafe(24)
    private_dir(path.parent, within=home)
    try:
        # O_EXCL: two processes starting at once agree on whichever token was written first.
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip() or token
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token


def csrf_token(token: str) -> str:
    """The anti-forgery value a page sends back with each change: derived from the token, so
    every Nexus process of a platform accepts it, and useless to anyone without the page."""
    return hmac.new(token.encode(), b"nexus-csrf", hashlib.sha256).hexdigest()
