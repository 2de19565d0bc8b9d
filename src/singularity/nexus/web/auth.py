"""Who may use the UI and the API: holders of the token.

- A browser signs in by opening any page with `?token=...`: the token goes into an HttpOnly,
  SameSite=Strict cookie and the address is replaced by one without it.
- API clients send `Authorization: Bearer <token>`.
- A change made with the cookie must carry the page's anti-forgery value in `X-CSRF-Token`
  (a bearer token cannot be sent by another site, so it needs none).
- The WebSocket takes the cookie only from a page of the same origin.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, WebSocket, status

from singularity.nexus.token import csrf_token

__all__ = ["COOKIE", "Access"]

COOKIE = "nexus_session"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Access:
    def __init__(self, token: str) -> None:
        self.token = token
        self.csrf = csrf_token(token)

    def valid(self, candidate: str | None) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    def bearer(self, request: Request | WebSocket) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None

    def signed_in(self, request: Request | WebSocket) -> bool:
        return self.valid(request.cookies.get(COOKIE))

    def check_api(self, request: Request) -> None:
        """Raise 401/403 unless the request may use the API."""
        if self.valid(self.bearer(request)):
            return
        if not self.signed_in(request):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong token: send Authorization: Bearer <token> "
                "(`singularity nexus token` prints it)",
            )
        if request.method not in _SAFE_METHODS:
            sent = request.headers.get("x-csrf-token", "")
            if not hmac.compare_digest(sent.encode(), self.csrf.encode()):
                raise HTTPException(
                    status.HTTP_403_FORBIDDEN, "missing or wrong X-CSRF-Token header"
                )

    def websocket_allowed(self, websocket: WebSocket) -> bool:
        if self.valid(self.bearer(websocket)):
            return True
        if not self.signed_in(websocket):
            return False
        origin = websocket.headers.get("origin")
        # A page of another site could open a socket with our cookie if it were not checked.
        return origin is None or urlsplit(origin).netloc == websocket.headers.get("host")
