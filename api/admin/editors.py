"""Editors' sessions: a signed cookie, the login check on every page, CSRF on every form.

The session lives in a cookie signed by Starlette's ``SessionMiddleware`` (itsdangerous), so any
worker can check it. It holds the editor's username, the editor's ``session_version`` when it
was made and a CSRF token. The server keeps one number per editor: logging out, disabling the
editor or a new password moves their ``session_version`` on, and a cookie made at another
version (an old copy of it included) is logged out at its next request. Every admin page depends
on ``current_editor`` (a missing or stale session is a 303 to the login page, never data); every
admin POST depends on ``verify_csrf`` (the form's hidden ``csrf_token`` must equal the
session's, or 403): another site can make a browser send the cookie, but cannot read the token
out of our pages.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import RedirectResponse

from sqlalchemy.orm import Session

from api.deps import SessionDep
from recall.credentials import end_sessions, session_user
from recall.models import AdminUser
from recall.settings import Settings

SESSION_COOKIE = "newsrecall_admin"
SECRET_FILE = "admin_session.key"
CSRF_FIELD = "csrf_token"
LOGIN_PATH = "/admin/login"
HOME_PATH = "/admin/users"


def session_secret(settings: Settings) -> str:
    """The configured secret, or the one kept under var_dir (made by whichever worker comes first)."""
    if settings.admin_session_secret:
        return settings.admin_session_secret
    path = settings.var_dir / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{SECRET_FILE}.{os.getpid()}")
        draft.write_text(secrets.token_urlsafe(48))
        draft.chmod(0o600)
        # link() puts the whole file in place or fails if another worker's is there already:
        # no worker can ever read a half-written secret.
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
        draft.unlink()
    return path.read_text().strip()


class LoginRequired(Exception):
    def __init__(self, wanted: str):
        self.wanted = wanted


async def redirect_to_login(_request: Request, exc: LoginRequired) -> RedirectResponse:
    return RedirectResponse(f"{LOGIN_PATH}?next={quote(exc.wanted)}", status.HTTP_303_SEE_OTHER)


def safe_next(wanted: str | None) -> str:
    """Where to go after login: an admin page of ours, never another site (open redirect)."""
    if wanted and wanted.startswith("/admin/") and not wanted.startswith("//") and "\\" not in wanted:
        return wanted
    return HOME_PATH


def csrf_token(request: Request) -> str:
    return request.session.setdefault("csrf", secrets.token_urlsafe(32))


def start_session(request: Request, editor: AdminUser) -> None:
    """A fresh session for a freshly logged-in editor (a new CSRF token too), made at their
    current session version."""
    request.session.clear()
    request.session["editor"] = editor.username
    request.session["version"] = editor.session_version
    csrf_token(request)


def session_editor(request: Request, session: Session) -> AdminUser | None:
    """The editor whose session this is, if it is still one: they are active and nothing ended
    their sessions since it was made."""
    username = request.session.get("editor")
    if not isinstance(username, str):
        return None
    return session_user(session, username, request.session.get("version"))


def end_session(request: Request, session: Session) -> None:
    """Log out: every session of the editor ends (on every device), and this cookie is cleared.
    A cookie that was no session any more ends nothing else."""
    editor = session_editor(request, session)
    if editor is not None:
        end_sessions(session, editor.username)
    request.session.clear()


def current_editor(request: Request, session: SessionDep) -> str:
    """The logged-in editor's username; a session that ended (logout, disabled or deleted editor,
    new password) is logged out here."""
    editor = session_editor(request, session)
    if editor is None:
        # Who it was goes; its CSRF token stays (a login form open in another tab still works).
        for field in ("editor", "version"):
            request.session.pop(field, None)
        # The path as sent (an id's %2F or %3F stays quoted), so that login leads back to it.
        path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        wanted = path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(wanted if request.method == "GET" else HOME_PATH)
    return editor.username


async def verify_csrf(request: Request) -> None:
    if request.method in ("GET", "HEAD"):
        return
    form = await request.form()  # Starlette caches it: the handler's Form fields read the same
    sent = form.get(CSRF_FIELD)
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            "the form's CSRF token is missing or stale: reload the page and try again")


EditorDep = Annotated[str, Depends(current_editor)]
