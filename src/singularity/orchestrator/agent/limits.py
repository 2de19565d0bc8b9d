"""The bounds every workspace tool keeps: what it reads, writes, scans and returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Limits"]


@dataclass(frozen=True)
class Limits:
    """Sizes and counts past which a tool refuses, skips or cuts its output short."""

    max_path_chars: int = 1024
    max_pattern_chars: int = 1000
    max_text_chars: int = 1_000_000  # one argument string (content, search or replacement)
    max_arguments_chars: int = 2_100_000  # a whole arguments JSON, refused before parsing
    max_file_bytes: int = 4_000_000  # larger files are refused by read/edit, skipped by search
    max_write_bytes: int = 1_000_000  # a file written, created or edited may not grow past this
    max_output_chars: int = 40_000  # every tool's text for the model
    max_read_lines: int = 2000
    max_line_chars: int = 2000  # a longer line is shown cut, with a note
    max_list_entries: int = 500
    max_search_matches: int = 200
    max_search_files: int = 20_000
    search_seconds: float = 3.0  # the whole search; a pattern that takes longer is stopped
