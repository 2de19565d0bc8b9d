"""What every request meets first: the token, the body limit and the security headers.

A plain ASGI middleware rather than a FastAPI dependency: FastAPI reads a whole body before it
runs a route's dependencies, so a stranger could make the server hold any amount of memory
before being told no. Here a request is judged by its headers alone; a refused one is answered
at once, its body never read, and the connection closed (so the sender stops sending).
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from singularity.nexus.web.auth import Access

__all__ = ["SECURITY_HEADERS", "Guard"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class Guard:
    """Refuses HTTP requests without the token before their body, and bodies over the limit."""

    def __init__(self, app: ASGIApp, *, access: Access, max_body_bytes: int) -> None:
        self.app = app
        self.access = access
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        responded = False  # by this guard, over a body too large: the app's answer is dropped

        async def send_with_headers(message: Message) -> None:
            if responded:
                return
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        headers = Headers(scope=scope)
        refusal = self.access.refusal(scope["method"], scope["path"], headers) or self._size(
            headers
        )
        if refusal is not None:
            await _refuse(scope, receive, send_with_headers, *refusal)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received, responded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:  # a chunked body, counted as it comes
                    await _refuse(scope, receive, send_with_headers, *self._too_large())
                    responded = True
                    return {"type": "http.disconnect"}
            return message

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except Exception:
            if not responded:  # after our 413, the app's complaint about the body is moot
                raise

    def _size(self, headers: Headers) -> tuple[int, str] | None:
        declared = headers.get("content-length")
        if declared is None:
            return None
        if not declared.strip().isdigit():
            return 400, "Content-Length is not a number"
        return self._too_large() if int(declared) > self.max_body_bytes else None

    def _too_large(self) -> tuple[int, str]:
        return 413, (f"the body is larger than {self.max_body_bytes} bytes (NEXUS_MAX_BODY_BYTES)")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.access.websocket_refusal(scope["scheme"], Headers(scope=scope))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        message = await receive()  # the handshake's connect
        if message["type"] == "websocket.connect":
            # Before accept: the server answers the handshake with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": refusal})


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    # Connection: close, so that the server drops the unread body instead of reading it.
    response = JSONResponse({"detail": detail}, status, headers={"Connection": "close"})
    await response(scope, receive, send)
