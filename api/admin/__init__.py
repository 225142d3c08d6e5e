"""The editors' admin pages under ``/admin``: server-rendered HTML behind a login.

``install`` adds them to an app: the signed-cookie sessions, the login throttle, the security
headers of every answer under ``/admin`` (``SecurityHeaders``), the static files, the login pages
(open) and every other page behind ``current_editor``; every POST is behind ``verify_csrf``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, status
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from api.admin import articles, clusters, jobs, login, routeconfigs, users
from api.admin.headers import SecurityHeaders
from api.admin.editors import (
    HOME_PATH,
    SESSION_COOKIE,
    LoginRequired,
    current_editor,
    redirect_to_login,
    session_secret,
    verify_csrf,
)
from api.admin.throttle import LoginThrottle
from recall.settings import Settings

pages = APIRouter(dependencies=[Depends(current_editor)])


@pages.get("/")
def home() -> RedirectResponse:
    return RedirectResponse(HOME_PATH, status.HTTP_303_SEE_OTHER)


for module in (users, articles, clusters, routeconfigs, jobs):
    pages.include_router(module.router)

# The admin pages are for browsers, not API clients: they stay out of the OpenAPI document.
router = APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(verify_csrf)])
router.include_router(login.router)
router.include_router(pages)


def install(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(
        SessionMiddleware, secret_key=session_secret(settings), session_cookie=SESSION_COOKIE,
        max_age=int(settings.admin_session_hours * 3600), path="/admin", same_site="lax",
        https_only=settings.admin_cookie_https_only)
    # Added last, so outermost: every answer under /admin gets the headers, whoever made it
    # (a page, a static file, a redirect, an error).
    app.add_middleware(SecurityHeaders, prefix="/admin")
    app.state.admin_login_throttle = LoginThrottle(settings.admin_login_max_failures,
                                                   settings.admin_login_window_seconds)
    app.add_exception_handler(LoginRequired, redirect_to_login)
    app.mount("/admin/static", StaticFiles(directory=Path(__file__).parent / "static"), name="admin-static")
    app.include_router(router)
