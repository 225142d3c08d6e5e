"""The security headers of every answer under ``/admin``: pages, static files, redirects, errors.

The pages load one stylesheet and one script, both from ``/admin/static``, and no inline script
or style, so the Content-Security-Policy allows nothing but our own origin: markup that ever got
past the templates' escaping could not run script. Images may come from the publishers' web
servers (an article's image). No other site may frame a page (clickjacking: ``frame-ancestors``,
and ``X-Frame-Options`` for older browsers); a response is never sniffed into another type.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "img-src 'self' https: http:",  # an article's image lives on its publisher's server
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Links and images elsewhere are not told which admin page (and so which user id) led there.
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware: ``HEADERS`` on every HTTP answer whose path is ``prefix`` or below it."""

    def __init__(self, app: ASGIApp, prefix: str = "/admin"):
        self.app = app
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path != self.prefix and not path.startswith(self.prefix + "/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
