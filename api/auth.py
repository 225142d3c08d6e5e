"""API keys on the feed-backend endpoints (everything under ``/v1``).

A key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Writes always need a
valid, unrevoked key; reads (GET) need one too unless ``settings.open_recall`` opens them for
local use (the embedded demo). The dependency sits on the ``/v1`` router as a whole
(api/routes/__init__.py), so an endpoint added there is closed from its first line.

Keys are verified from an in-process cache (``recall.credentials.KeyCache``): SQL is asked only
on a key's first use and after the cache's TTL, in the threadpool; a cached key costs no I/O
and no threadpool hop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from recall.credentials import KeyCheck

# Methods that read: the only ones open_recall opens.
READ_METHODS = frozenset({"GET", "HEAD"})
# Declared as security schemes, so /docs documents them and offers to send a key.
bearer = HTTPBearer(auto_error=False, description="an API key (`recall admin create-key`)")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, another header")


def unauthorized(detail: str, error: str | None = None) -> HTTPException:
    # RFC 6750: a 401 names the scheme; "invalid_token" tells the client its key is the problem.
    challenge = 'Bearer realm="newsrecall"' + (f', error="{error}"' if error else "")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge})


async def require_api_key(
    request: Request,
    bearer_key: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(api_key_header)],
) -> None:
    if request.app.state.settings.open_recall and request.method in READ_METHODS:
        return
    key = (bearer_key.credentials.strip() if bearer_key else "") or (header_key or "").strip()
    if not key:
        raise unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    keys = request.app.state.keys
    outcome = keys.cached(key) or await run_in_threadpool(keys.check, key)
    if outcome is KeyCheck.UNKNOWN:
        raise unauthorized("invalid API key", error="invalid_token")
    if outcome is KeyCheck.REVOKED:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this API key has been revoked")
    request.state.api_key_id = keys.key_id(key)  # callers' event ids live in their key's namespace
