"""One JSON log line per request, tagged with a request id that the response echoes.

The id comes from the caller's ``X-Request-ID`` header (so a trace spans services) or is made
here. Every other line logged while the request is served carries the id too (a context
variable, which FastAPI's threadpool inherits). The middleware is plain ASGI: it wraps ``send``
to learn the status and add the header, without buffering the body.
"""

from __future__ import annotations

import orjson
from collections.abc import Callable
import logging
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
# A caller's id is echoed into logs and headers: refuse anything long enough to be abuse.
MAX_REQUEST_ID_LENGTH = 128

log = logging.getLogger("api.requests")
# The id of the request being served in this context; None outside requests (startup, reloads).
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


class JsonFormatter(logging.Formatter):
    """A record as one JSON object; structured fields travel in ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **({"request_id": request_id} if (request_id := current_request_id.get()) else {}),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def request_id_of(scope: Scope) -> str:
    given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
    if 0 < len(given) <= MAX_REQUEST_ID_LENGTH and given.isprintable():
        return given
    return uuid.uuid4().hex


class RequestLogMiddleware:
    """Logs every HTTP request, and hands each finished one to ``observe`` (the metrics) with
    its scope (the router has filled in the matched route by then), status and seconds."""

    def __init__(self, app: ASGIApp, observe: Callable[[Scope, int, float], None] | None = None):
        self.app = app
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        context = current_request_id.set(request_id)
        status = 500  # what the client gets if the app raises before answering
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            log.info("request", extra={"fields": {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode("latin-1"),
                "status": status,
                "ms": round(seconds * 1000, 2),
            }})
            current_request_id.reset(context)
            if self.observe is not None:
                self.observe(scope, status, seconds)
