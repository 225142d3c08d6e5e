"""Logging in and out: the only admin pages an anonymous browser may see.

Logins are throttled per client address and per account (``throttle.LoginThrottle``, built by
``install`` from the settings): a refused attempt is a 429 with Retry-After, and no password is
hashed for it. Logging out ends every session of the editor (``editors.end_session``).
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from api.admin.editors import HOME_PATH, LOGIN_PATH, end_session, safe_next, start_session
from api.admin.templating import templates
from api.admin.throttle import LoginThrottle, Throttled
from api.deps import SessionDep
from recall.credentials import USERNAME_MAX_LENGTH, authenticate

router = APIRouter()


def login_throttle(request: Request) -> LoginThrottle:
    return request.app.state.admin_login_throttle


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, session: SessionDep, username: Annotated[str, Form()],
          password: Annotated[str, Form()], next: Annotated[str, Form()] = HOME_PATH):
    username = username.strip()
    throttle = login_throttle(request)
    client = request.client.host if request.client else "unknown"
    try:
        # The account as counted: a name too long to be one is cut (one past the longest name,
        # so it is never a real editor's), which keeps the counts' memory bounded.
        attempt = throttle.start(client, username[:USERNAME_MAX_LENGTH + 1])
    except Throttled as refused:
        minutes = max(1, math.ceil(refused.retry_after / 60))
        return templates.TemplateResponse(
            request, "login.html",
            {"next": safe_next(next),
             "error": f"too many failed logins: try again in {minutes} minute{'s' if minutes > 1 else ''}"},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(max(1, math.ceil(refused.retry_after)))})
    editor = authenticate(session, username, password)
    if editor is None:
        # One message for a wrong name and a wrong password: it must not tell which names exist.
        return templates.TemplateResponse(
            request, "login.html", {"next": safe_next(next), "error": "wrong username or password"},
            status_code=status.HTTP_401_UNAUTHORIZED)
    throttle.succeeded(attempt)
    start_session(request, editor)
    return RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> RedirectResponse:
    end_session(request, session)
    return RedirectResponse(LOGIN_PATH, status.HTTP_303_SEE_OTHER)
