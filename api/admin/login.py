"""Logging in and out: the only admin pages an anonymous browser may see."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from api.admin.editors import HOME_PATH, LOGIN_PATH, safe_next, start_session
from api.admin.templating import templates
from api.deps import SessionDep
from recall.credentials import authenticate

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, session: SessionDep, username: Annotated[str, Form()],
          password: Annotated[str, Form()], next: Annotated[str, Form()] = HOME_PATH):
    editor = authenticate(session, username.strip(), password)
    if editor is None:
        # One message for a wrong name and a wrong password: it must not tell which names exist.
        return templates.TemplateResponse(
            request, "login.html", {"next": safe_next(next), "error": "wrong username or password"},
            status_code=status.HTTP_401_UNAUTHORIZED)
    start_session(request, editor.username)
    return RedirectResponse(safe_next(next), status.HTTP_303_SEE_OTHER)


@router.post("/logout")
def logout(request: Request) -> RedirectResponse:
    request.session.clear()
    return RedirectResponse(LOGIN_PATH, status.HTTP_303_SEE_OTHER)

