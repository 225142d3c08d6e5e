"""Limits every request meets before routing, and the documentation of the errors they answer.

``RequestLimits`` is a pure ASGI middleware, so nothing is read or parsed before it decides:

* a body over ``settings.max_body_bytes`` (1 MiB by default) is refused with 413 and a JSON
  message: at once when its Content-Length says so (the body is never read), else as soon as
  the bytes counted while it streams in (chunked, no Content-Length) pass the limit. Without it
  a caller with no key could make the server read and parse any body: the key is checked after
  the body is parsed;
* a ``/v1`` path or query string holding a NUL character (``%00``) is refused with a 422 shaped
  like every other validation error (ids are stored in PostgreSQL, which refuses NUL).

``install`` adds it (one line in ``api/app.py``), answers a refused route config
(``recall.routeconfig.InvalidRouteConfig``, e.g. a weight of inf from the admin form) with a 422
and its message instead of a 500, and documents in the OpenAPI schema the error answers that
come from app-wide mechanisms rather than from one route: 401/403 on every ``/v1`` operation (the
API key dependency of the whole router), 400 (a body that is not UTF-8) and 413 on every
operation with a body, and a 422 that may be one message (an unknown route name) as well as the
list of invalid fields.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.schemas import ErrorMessage
from recall.routeconfig import InvalidRouteConfig

ERROR_REF = {"$ref": "#/components/schemas/ErrorMessage"}
VALIDATION_REF = {"$ref": "#/components/schemas/HTTPValidationError"}


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, too_large_message(limit), headers={"Connection": "close"})


def too_large_message(limit: int) -> str:
    return f"request body too large: at most {limit} bytes are accepted (max_body_bytes)"


def _has_nul(scope: Scope) -> str | None:
    """Where a NUL character is in the request line: "path", "query" or None."""
    if "\x00" in scope.get("path", ""):
        return "path"
    query = scope.get("query_string", b"")
    if b"\x00" in query or b"%00" in query:
        return "query"
    return None


class RequestLimits:
    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("path", "").startswith("/v1/") and (where := _has_nul(scope)):
            await _answer(send, status.HTTP_422_UNPROCESSABLE_CONTENT, {"detail": [{
                "type": "string_nul", "loc": [where], "input": None,
                "msg": f"the {where} must not contain a NUL character (%00)"}]})
            return
        lengths = [value for name, value in scope.get("headers", ()) if name == b"content-length"]
        if lengths:
            try:
                declared = int(lengths[0])
                if len(set(lengths)) > 1 or declared < 0:
                    raise ValueError
            except ValueError:
                await _answer(send, status.HTTP_400_BAD_REQUEST, {"detail": "invalid Content-Length header"})
                return
            if declared > self.max_body_bytes:
                await _answer(send, status.HTTP_413_CONTENT_TOO_LARGE,
                              {"detail": too_large_message(self.max_body_bytes)}, close=True)
                return

        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)  # FastAPI answers it (413) where it reads
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as error:  # read by something that let the exception through
            if started:
                raise
            await _answer(send, error.status_code, {"detail": error.detail}, close=True)


async def _answer(send: Send, status_code: int, body: dict[str, Any], close: bool = False) -> None:
    content = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def refused_route_config(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}, **extra}


def document_errors(schema: dict[str, Any], max_body_bytes: int) -> dict[str, Any]:
    """Declare the answers of the app-wide mechanisms on every operation they apply to."""
    schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
        "ErrorMessage", ErrorMessage.model_json_schema())
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if path.startswith("/v1/"):
                responses.setdefault("401", _error(
                    "no API key, or one this server does not know",
                    headers={"WWW-Authenticate": {"schema": {"type": "string"},
                                                  "description": 'Bearer realm="newsrecall"'}}))
                responses.setdefault("403", _error("the API key has been revoked"))
            if "requestBody" in operation:
                responses.setdefault("400", _error("the body cannot be read (it is not UTF-8, or its "
                                                   "Content-Length is invalid)"))
                responses.setdefault("413", _error(f"the body is over {max_body_bytes} bytes "
                                                   "(max_body_bytes)"))
            if "422" in responses:
                responses["422"] = {
                    "description": "invalid input: every invalid field with its location "
                                   "(HTTPValidationError), or one message (ErrorMessage, e.g. an "
                                   "unknown route name)",
                    "content": {"application/json": {"schema": {"anyOf": [VALIDATION_REF, ERROR_REF]}}}}
    return schema


def install(app: FastAPI) -> None:
    """The body cap and NUL check (inside the request log, so refusals are logged and counted),
    the 422 of a refused route config, and the OpenAPI documentation of these errors."""
    max_body_bytes = app.state.settings.max_body_bytes
    app.add_middleware(RequestLimits, max_body_bytes=max_body_bytes)
    app.add_exception_handler(InvalidRouteConfig, refused_route_config)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate(), max_body_bytes)
        return app.openapi_schema

    app.openapi = openapi
