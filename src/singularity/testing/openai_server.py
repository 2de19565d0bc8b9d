"""A local server that speaks OpenAI's chat-completions protocol, with scripted behaviour.

The router reaches every provider through LiteLLM's OpenAI client, so the one way to exercise its
handling of answers, rate limits, outages, timeouts and context overflows without a real provider
(and without patching LiteLLM) is a real HTTP server that answers as OpenAI does. Tests script
what each model answers next; benchmarks run it with a fixed delay to stand in for a provider.

Behaviour of `POST /v1/chat/completions`, for the `model` named in the request:
- a request over the model's context window (`set_context_window`) is refused with OpenAI's
  context-length error, and consumes no scripted step;
- otherwise the next scripted step of that model is consumed (`script`), one per call;
- with no step left, the answer is `"echo: <last user message>"` after `delay_s`.

A scripted `Reply` may call tools (`ScriptedToolCall`): its message then carries `tool_calls` in
OpenAI's shape, and its finish_reason is "tool_calls". Each recorded `Call` keeps the request's
body, so tests can read the `tools`, `tool_choice` and `messages` that reached the provider.

Token counts are estimates, one token per four characters rounded up (OpenAI's rule of thumb for
English): real tokenizers differ, but tests only need counts that are stable and grow with the
text. Streaming is refused: the router does not stream.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.config import LOGGING_CONFIG

__all__ = [
    "Call",
    "ContextTooLong",
    "Hang",
    "MockOpenAI",
    "RateLimited",
    "Reply",
    "ScriptedToolCall",
    "ServerError",
    "Step",
    "embedding_vector",
    "estimate_tokens",
    "main",
]

CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"


@dataclass(frozen=True, slots=True)
class ScriptedToolCall:
    """A tool call for a `Reply` to make. `arguments` is sent as JSON text (a string as it is,
    so that a test can send a model's malformed arguments); `id` defaults to a fresh one."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer; token counts left as None are estimated from the texts.

    With `tool_calls`, the answer calls those tools (finish_reason "tool_calls" unless
    `finish_reason` says otherwise); its `content` may then be "" (sent as null).
    """

    content: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    delay_s: float = 0.0  # instead of the server's default delay
    tool_calls: Sequence[ScriptedToolCall] = ()
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class RateLimited:
    """HTTP 429 with a `retry-after` header, as OpenAI sends when a limit is reached."""

    retry_after_s: float = 1.0


@dataclass(frozen=True, slots=True)
class ServerError:
    """A provider outage: any status (500, 502, 503...) with an OpenAI-style error body."""

    status: int = 500
    message: str = "The server had an error while processing your request. Sorry about that!"


@dataclass(frozen=True, slots=True)
class Hang:
    """Wait `seconds` before answering normally, to make a client's timeout expire first."""

    seconds: float


@dataclass(frozen=True, slots=True)
class ContextTooLong:
    """HTTP 400 with OpenAI's context-length error, whatever the request's size."""

    limit: int = 8192


Step = Reply | RateLimited | ServerError | Hang | ContextTooLong


@dataclass(frozen=True, slots=True)
class Call:
    """One request received: the `model` it named, when (time.monotonic()), the status answered.

    A call is recorded when it arrives, with the status it will get, so that a call whose client
    gave up (a Hang) is already visible. `path` tells chat completions from embeddings.
    """

    model: str
    at: float
    status: int
    body: dict[str, Any]
    path: str = CHAT_PATH

    @property
    def messages(self) -> list[Any]:
        """The conversation the request sent."""
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def tools(self) -> list[Any] | None:
        """The `tools` the request carried, or None."""
        return self.body.get("tools")

    @property
    def tool_choice(self) -> Any:
        """The `tool_choice` the request carried, or None."""
        return self.body.get("tool_choice")


def estimate_tokens(text: str) -> int:
    """Tokens in `text`: one per four characters, rounded up (see the module docstring)."""
    return (len(text) + 3) // 4


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _prompt_tokens(messages: Sequence[Any]) -> int:
    return sum(
        estimate_tokens(_text(message.get("content")))
        for message in messages
        if isinstance(message, dict)
    )


def _last_user_text(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def embedding_vector(text: str, dimensions: int = 64) -> list[float]:
    """A unit vector derived from a hash of `text`: equal texts, equal vectors, on any machine.

    Unrelated texts get nearly orthogonal vectors; nothing semantic is meant.
    """
    raw = struct.unpack(f"<{dimensions}h", hashlib.shake_256(text.encode()).digest(2 * dimensions))
    norm = math.sqrt(sum(x * x for x in raw))
    if norm == 0:  # all 2*dimensions bytes zero: not going to happen, but stay a unit vector
        return [1.0] + [0.0] * (dimensions - 1)
    return [x / norm for x in raw]


def _error(
    status: int,
    message: str,
    kind: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error in OpenAI's shape, which the OpenAI SDK (and so LiteLLM) parses."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _context_error(limit: int, tokens: int) -> JSONResponse:
    # OpenAI's own wording: LiteLLM recognises the overflow by this message and this code.
    return _error(
        400,
        f"This model's maximum context length is {limit} tokens. However, your messages "
        f"resulted in {tokens} tokens. Please reduce the length of the messages.",
        "invalid_request_error",
        param="messages",
        code="context_length_exceeded",
    )


def _seconds_header(seconds: float) -> str:
    """Whole seconds as an integer, as providers send; a fraction only if the script asks one."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def _status_of(step: Step | None) -> int:
    match step:
        case RateLimited():
            return 429
        case ServerError(status=status):
            return status
        case ContextTooLong():
            return 400
        case _:
            return 200


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when installed (uvicorn[standard]): the server then costs the client less."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket, bound here so that the port is known before uvicorn starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class MockOpenAI:
    """The scripted server: its Starlette `app`, and a uvicorn running it on a background thread.

    Scripting and reading the calls are thread-safe, for tests that drive it from their own
    thread (or event loop) while the server answers on its thread's loop.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delay_s: float = 0.0,
        embedding_dimensions: int = 64,
        models: Iterable[str] = (),
    ) -> None:
        self.host = host
        self.port = port
        self.delay_s = delay_s  # of unscripted answers; read per call, so it may be changed live
        self.embedding_dimensions = embedding_dimensions
        self._models = list(models)
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Step]] = {}
        self._windows: dict[str, int] = {}
        self._calls: list[Call] = []
        self._ids = itertools.count(1)
        self._created = int(time.time())
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self.app = Starlette(
            routes=[
                Route(CHAT_PATH, self._chat, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route(EMBEDDINGS_PATH, self._embeddings, methods=["POST"]),
            ]
        )

    # -- scripting, from any thread --------------------------------------------------------------

    def script(self, model: str, *steps: Step) -> None:
        """Queue what `model`'s next calls get, one step per call, after those already queued."""
        with self._lock:
            self._scripts.setdefault(model, deque()).extend(steps)

    def set_context_window(self, model: str, tokens: int | None) -> None:
        """Refuse `model`'s requests of more than `tokens` estimated prompt tokens (None: none)."""
        with self._lock:
            if tokens is None:
                self._windows.pop(model, None)
            else:
                self._windows[model] = tokens

    @property
    def calls(self) -> list[Call]:
        """Every call received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._calls)

    def calls_for(self, model: str) -> list[Call]:
        with self._lock:
            return [call for call in self._calls if call.model == model]

    def pending(self, model: str) -> int:
        """Scripted steps of `model` not consumed yet."""
        with self._lock:
            return len(self._scripts.get(model, ()))

    def reset(self) -> None:
        """Forget scripts, context windows and calls, so that a shared server starts afresh."""
        with self._lock:
            self._scripts.clear()
            self._windows.clear()
            self._calls.clear()

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as its base URL (LiteLLM: `api_base`)."""
        if self.port == 0:
            raise RuntimeError("the port is chosen on start(); start the server first")
        return f"http://{self.host}:{self.port}/v1"

    def _config(self, *, log_config: Any) -> uvicorn.Config:
        return uvicorn.Config(
            self.app,
            log_level="warning",
            log_config=log_config,
            access_log=False,
            lifespan="off",
            http="auto",  # httptools when installed
            ws="none",
            server_header=False,
            date_header=False,
        )

    async def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        await server.serve(sockets=[sock])

    def start(self, timeout_s: float = 10.0) -> Self:
        """Serve on a background thread with its own loop; return once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("already started")
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        # No log configuration of uvicorn's: the process's logging belongs to the tests.
        server = uvicorn.Server(self._config(log_config=None))
        self._server, self._failure = server, None

        def run() -> None:
            try:
                with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                    runner.run(self._serve(server, sock))
            except BaseException as exc:  # uvicorn exits with SystemExit on startup failures
                self._failure = exc
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name=f"mock-openai:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive():
                self._thread = self._server = None
                raise RuntimeError(f"the mock OpenAI server did not start: {self._failure!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the mock OpenAI server did not start in {timeout_s}s")
            time.sleep(0.005)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving; calls still waiting (delays, Hang) are answered at once, not awaited."""
        thread, server = self._thread, self._server
        if thread is None or server is None:
            return
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stopping.set)
        server.should_exit = True
        thread.join(timeout_s)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout_s)
        self._thread = self._server = self._loop = self._stopping = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted (Ctrl-C, SIGTERM), for benchmarks."""
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(self._config(log_config=LOGGING_CONFIG))
        print(self.base_url, flush=True)
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(self._serve(server, sock))
        finally:
            sock.close()

    # -- the endpoints ----------------------------------------------------------------------------

    async def _pause(self, seconds: float) -> None:
        """Sleep, but no longer than until stop(): a hanging call must not hold up a test's end."""
        if seconds <= 0:
            return
        stopping = self._stopping
        if stopping is None:  # the app served by something else (an ASGI transport, say)
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), seconds)

    def _record(self, model: str, status: int, body: dict[str, Any], path: str) -> None:
        call = Call(model=model, at=time.monotonic(), status=status, body=body, path=path)
        with self._lock:
            self._calls.append(call)

    async def _body(self, request: Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def _chat(self, request: Request) -> Response:
        body = await self._body(request)
        if body is None:
            self._record("", 400, {}, CHAT_PATH)
            return _error(400, "The request body is not a JSON object.", "invalid_request_error")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            self._record("", 400, body, CHAT_PATH)
            return _error(
                400, "You must provide a model parameter.", "invalid_request_error", param="model"
            )
        if body.get("stream"):
            self._record(model, 400, body, CHAT_PATH)
            return _error(
                400,
                "Streaming is not supported by this server.",
                "invalid_request_error",
                param="stream",
                code="unsupported_value",
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self._record(model, 400, body, CHAT_PATH)
            return _error(
                400,
                "'messages' must be a non-empty array.",
                "invalid_request_error",
                param="messages",
            )

        prompt_tokens = _prompt_tokens(messages)
        step: Step | None = None
        with self._lock:
            window = self._windows.get(model)
            if window is not None and prompt_tokens > window:
                step = ContextTooLong(window)
            else:
                queue = self._scripts.get(model)
                if queue:
                    step = queue.popleft()
            self._calls.append(Call(model, time.monotonic(), _status_of(step), body, CHAT_PATH))

        match step:
            case None:
                await self._pause(self.delay_s)
                return self._completion(model, "echo: " + _last_user_text(messages), prompt_tokens)
            case Reply():
                await self._pause(step.delay_s)
                return self._completion(
                    model,
                    step.content,
                    prompt_tokens if step.prompt_tokens is None else step.prompt_tokens,
                    step.completion_tokens,
                    tool_calls=step.tool_calls,
                    finish_reason=step.finish_reason,
                )
            case Hang(seconds=seconds):
                await self._pause(seconds)
                return self._completion(model, "echo: " + _last_user_text(messages), prompt_tokens)
            case RateLimited(retry_after_s=wait):
                return _error(
                    429,
                    f"Rate limit reached for {model} on requests per min (RPM). "
                    f"Please try again in {wait:g}s.",
                    "requests",
                    code="rate_limit_exceeded",
                    headers={"retry-after": _seconds_header(wait)},
                )
            case ServerError(status=status, message=message):
                return _error(status, message, "server_error")
            case ContextTooLong(limit=limit):
                # "resulted in N tokens" must read as an overflow even for a short request.
                return _context_error(limit, max(prompt_tokens, limit + 1))

    def _completion(
        self,
        model: str,
        content: str,
        prompt_tokens: int,
        completion_tokens: int | None = None,
        *,
        tool_calls: Sequence[ScriptedToolCall] = (),
        finish_reason: str | None = None,
    ) -> JSONResponse:
        calls = [self._tool_call(call) for call in tool_calls]
        if completion_tokens is None:
            completion_tokens = estimate_tokens(content) + sum(
                estimate_tokens(c["function"]["name"] + c["function"]["arguments"]) for c in calls
            )
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if calls:
            message["tool_calls"] = calls
        if not calls and message["content"] is None:
            message["content"] = ""
        return JSONResponse(
            {
                "id": f"chatcmpl-mock{next(self._ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    def _tool_call(self, call: ScriptedToolCall) -> dict[str, Any]:
        arguments = call.arguments
        return {
            "id": call.id or f"call_mock{next(self._ids)}",
            "type": "function",
            "function": {
                "name": call.name,
                "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
            },
        }

    async def _list_models(self, request: Request) -> Response:
        """Models named at construction, scripted, windowed or called: any name is accepted."""
        with self._lock:
            names = {*self._models, *self._scripts, *self._windows}
            names.update(call.model for call in self._calls if call.model)
        data = [
            {"id": name, "object": "model", "created": self._created, "owned_by": "mock"}
            for name in sorted(names)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _embeddings(self, request: Request) -> Response:
        body = await self._body(request)
        if body is None or not isinstance(body.get("model"), str):
            self._record("", 400, body or {}, EMBEDDINGS_PATH)
            return _error(400, "A JSON object with a model is required.", "invalid_request_error")
        model: str = body["model"]
        inputs = _embedding_inputs(body.get("input"))
        if inputs is None:
            self._record(model, 400, body, EMBEDDINGS_PATH)
            return _error(
                400,
                "'input' must be a string, an array of strings, or token arrays.",
                "invalid_request_error",
                param="input",
            )
        dimensions = body.get("dimensions")
        if not isinstance(dimensions, int) or dimensions <= 0:
            dimensions = self.embedding_dimensions
        as_base64 = body.get("encoding_format") == "base64"  # the OpenAI SDK's default
        self._record(model, 200, body, EMBEDDINGS_PATH)

        data = []
        for index, (text, _) in enumerate(inputs):
            vector = embedding_vector(text, dimensions)
            encoded: list[float] | str = (
                base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(count for _, count in inputs)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _embedding_inputs(value: Any) -> list[tuple[str, int]] | None:
    """Each input as (text to hash, tokens): strings are estimated, token arrays counted."""

    def one(item: Any) -> tuple[str, int] | None:
        if isinstance(item, str):
            return item, estimate_tokens(item)
        if isinstance(item, list) and all(isinstance(t, int) for t in item):
            return " ".join(map(str, item)), len(item)
        return None

    if isinstance(value, str):
        return [(value, estimate_tokens(value))]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(t, int) for t in value):  # a single token array
        single = one(value)
        return None if single is None else [single]
    items = [one(item) for item in value]
    return None if any(item is None for item in items) else [i for i in items if i is not None]


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m singularity.testing.openai_server`: a stand-in provider for benchmarks."""
    parser = argparse.ArgumentParser(
        prog="python -m singularity.testing.openai_server",
        description="Serve OpenAI's chat-completions protocol locally, answering 'echo: ...'.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay of every answer")
    parser.add_argument("--embedding-dimensions", type=int, default=64)
    args = parser.parse_args(argv)
    server = MockOpenAI(
        host=args.host,
        port=args.port,
        delay_s=args.delay_ms / 1000,
        embedding_dimensions=args.embedding_dimensions,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled
        server.serve_forever()


if __name__ == "__main__":
    main()
