"""Who may use the UI and the API: holders of the token.

- A browser signs in by opening any page with `?token=...`: the token goes into an HttpOnly,
  SameSite=Strict cookie and the address is replaced by one without it.
- API clients send `Authorization: Bearer <token>`.
- A change made with the cookie must carry the page's anti-forgery value in `X-CSRF-Token`
  (a bearer token cannot be sent by another site, so it needs none).
- The WebSocket takes the cookie only from a page of the very same origin (scheme, host and
  port).

Every decision here reads headers only, so that it can be made before a body is read (see
`guard.py`).
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from singularity.nexus.token import csrf_token

__all__ = ["COOKIE", "Access"]

COOKIE = "nexus_session"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Open to anyone: the health check and the API's description (no data in either).
_PUBLIC_API = frozenset({"/api/openapi.json"})
_NO_TOKEN = (
    "missing or wrong token: send Authorization: Bearer <token> "
    "(`singularity nexus token` prints it)"
)


class Access:
    def __init__(self, token: str) -> None:
        self.token = token
        self.csrf = csrf_token(token)

    def valid(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    def bearer(self, headers: Headers) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.valid(value.strip())

    def signed_in(self, headers: Headers) -> bool:
        return self.valid(cookie_parser(headers.get("cookie", "")).get(COOKIE))

    def refusal(self, method: str, path: str, headers: Headers) -> tuple[int, str] | None:
        """Why an HTTP request may not go on (status and words), or None if it may.

        The API needs the token; a change made with the cookie needs the anti-forgery header.
        Pages check the cookie themselves (they show a sign-in page), but no page takes a body,
        so a request that carries one needs the token too.
        """
        if self.bearer(headers):
            return None
        needs_token = path.startswith("/api/") and path not in _PUBLIC_API
        if not self.signed_in(headers):
            return (401, _NO_TOKEN) if needs_token or _has_body(headers) else None
        if needs_token and method not in _SAFE_METHODS:
            sent = headers.get("x-csrf-token", "")
            if not hmac.compare_digest(sent.encode(), self.csrf.encode()):
                return 403, "missing or wrong X-CSRF-Token header"
        return None

    def websocket_refusal(self, scheme: str, headers: Headers) -> str | None:
        """Why a WebSocket may not open, or None if it may."""
        if self.bearer(headers):
            return None
        if not self.signed_in(headers):
            return "token required"
        # A page of another origin could open a socket with our cookie if it were not checked:
        # SameSite ignores ports and, for http vs https, may not apply at all. A browser always
        # sends Origin here; "null" (a sandboxed frame, a file) or none is not our page.
        web_scheme = "https" if scheme in ("wss", "https") else "http"
        expected = f"{web_scheme}://{headers.get('host', '')}".lower()
        if headers.get("origin", "").lower() != expected:
            return "the page's origin is not this server's"
        return None


def _has_body(headers: Headers) -> bool:
    return headers.get("content-length", "0").strip() not in ("", "0") or (
        "transfer-encoding" in headers
    )
