"""Approvals and questions as the API, the WebSocket and the CLI show them.

Everything an agent wrote is data: the browser puts it in the page as text. The one piece of
HTML sent is the diff's highlighting, which Pygments produces from escaped text.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

__all__ = ["approval_view", "diff_html", "iso", "question_view"]

# Beyond this much diff, the page shows the start and says so (the API has the whole diff).
_DIFF_HTML_LIMIT = 200_000
_FORMATTER = HtmlFormatter(nowrap=True)
_LEXER = DiffLexer()
_cache: OrderedDict[tuple[str, int], str] = OrderedDict()
_CACHE_SIZE = 512


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC; the design's zone-less timestamps are UTC (Nexus writes them so)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def diff_html(key: str, diff: str) -> str:
    """The diff highlighted, inside <pre class="diff">; cached, as every page load asks."""
    cache_key = (key, len(diff))
    cached = _cache.get(cache_key)
    if cached is not None:
        _cache.move_to_end(cache_key)
        return cached
    shown = diff[:_DIFF_HTML_LIMIT]
    html = highlight(shown, _LEXER, _FORMATTER)
    if len(diff) > len(shown):
        html += f'<span class="gs">… {len(diff) - len(shown)} more characters not shown</span>'
    html = f'<pre class="diff">{html}</pre>'
    _cache[cache_key] = html
    if len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return html


def approval_view(row: dict[str, Any], *, with_html: bool = True) -> dict[str, Any]:
    ident = str(row["id"])
    view = {
        "id": ident,
        "request_id": row["request_id"] or ident,
        "file_path": row["file_path"],
        "description": row["description"],
        "agent_id": row["agent_id"],
        "diff": row["diff"],
        "created_at": iso(row["created_at"]),
        "deadline": iso(row["deadline"]),
        "status": row["status"],
        "approved": row["approved"],
        "reason": row["reason"],
        "decided_at": iso(row["approved_at"]),
        "decided_by": row["decided_by"],
        "reply_to": row["reply_to"],
    }
    if with_html:
        view["diff_html"] = diff_html(ident, row["diff"])
    return view


def question_view(row: dict[str, Any]) -> dict[str, Any]:
    ident = str(row["id"])
    context = row["context"]
    return {
        "id": ident,
        "request_id": row["request_id"] or ident,
        "question": row["question"],
        "context": context,
        "context_text": ""
        if context is None
        else json.dumps(context, indent=2, ensure_ascii=False),
        "agent_id": row["agent_id"],
        "created_at": iso(row["created_at"]),
        "deadline": iso(row["deadline"]),
        "status": row["status"],
        "response": row["response"],
        "response_at": iso(row["response_at"]),
        "decided_by": row["decided_by"],
        "reply_to": row["reply_to"],
    }
