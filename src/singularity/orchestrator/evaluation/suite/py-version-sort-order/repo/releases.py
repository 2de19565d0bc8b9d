"""The project's releases, in version order."""

import re

VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.]+))?")


def check_version(text: str) -> str:
    if VERSION.fullmatch(text) is None:
        raise ValueError(f"not a version: {text!r}")
    return text


def sort_key(version: str) -> str:
    return check_version(version)


def sorted_releases(versions: list[str]) -> list[str]:
    """Oldest first."""
    return sorted(versions, key=sort_key)


def latest(versions: list[str]) -> str:
    if not versions:
        raise ValueError("no releases")
    return sorted_releases(versions)[-1]
