"""The admin pages' templates (autoescaped: every title and tag is shown as text; only http(s)
addresses become links), paging, and the search boxes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Path as PathParam
from fastapi import Query, Request, status
from fastapi.responses import RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.templating import Jinja2Templates

from api.admin.editors import CSRF_FIELD, csrf_token
from api.schemas import ID_MAX_LENGTH

# An id in an admin page's address: what SQL and Redis can hold. Longer ids, and ids with a NUL
# (which PostgreSQL text cannot hold), are a 422, never a query that fails.
ID_PATTERN = r"^[^\x00]+$"
IdPath = Annotated[str, PathParam(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
IdQuery = Annotated[str | None, Query(max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]


def page_context(request: Request) -> dict[str, Any]:
    """What every page's layout needs: who is logged in, the CSRF token, one-shot messages."""
    return {
        "editor": request.session.get("editor"),
        "csrf_field": CSRF_FIELD,
        "csrf_token": csrf_token(request),
        "flashes": request.session.pop("flashes", []),
    }


def flash(request: Request, message: str, kind: str = "ok") -> None:
    """A message for the next page shown (after a POST's redirect)."""
    request.session["flashes"] = [*request.session.get("flashes", []), [kind, message]]


def timestamp(value: float | datetime | None) -> str:
    """Unix seconds or a naive-UTC datetime, as editors read it."""
    if value is None:
        return "—"
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(value, timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def web_url(value: object) -> str | None:
    """The address if it is a web page's (http or https, with a host), else None.

    Article URLs and image references come from outside (ingest files, the API): a
    ``javascript:`` or ``data:`` address must never become a link, whatever its case or the
    blanks around or inside it (browsers drop those before they read the scheme), so any
    whitespace or control character at all is refused too.
    """
    if not isinstance(value, str) or any(ch <= " " or ch == "\x7f" for ch in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. a malformed [IPv6] host
        return None
    return value if parts.scheme.lower() in ("http", "https") and parts.hostname else None


# autoescape=True for every template, whatever its name: article titles and tags come from
# outside and must never become markup. StrictUndefined: a typo in a template fails loudly.
environment = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
environment.filters["timestamp"] = timestamp
environment.filters["web_url"] = web_url
# An id as one segment of a path: its "/", "?", "#" and "%" quoted too (Jinja's urlencode keeps "/").
environment.filters["segment"] = lambda value: quote(str(value), safe="")
templates = Jinja2Templates(env=environment, context_processors=[page_context])


@dataclass(frozen=True, slots=True)
class Page:
    """One page (``number`` counts from 1) of a long list, and links to the others (``?page=``)."""

    number: int
    size: int
    total: int

    @classmethod
    def of(cls, number: int, size: int, total: int) -> Page:
        """The page asked for, moved into the range of pages that exist."""
        return cls(min(max(number, 1), cls(1, size, total).count), size, total)

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def count(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    def url(self, request: Request, number: int) -> str:
        return str(request.url.include_query_params(page=number))


def id_problem(wanted: str) -> str | None:
    """Why an id cannot be looked up (None: it can)."""
    if len(wanted) > ID_MAX_LENGTH:
        return f"an id has at most {ID_MAX_LENGTH} characters"
    if "\x00" in wanted:
        return "an id cannot hold a NUL character"
    return None


def search_box(request: Request, wanted: str | None, page: str, param: str, template: str) -> Response:
    """A search form's answer: the page of the id asked for (a redirect), or the form (empty, or
    saying why the id cannot be looked up: 422).

    The id is quoted into the page's path as one segment: a ``/``, ``?``, ``#`` or ``%`` in it
    stays part of the id (the inspectors' paths take the rest of the path as the id).
    """
    wanted = wanted.strip() if wanted else ""
    if not wanted:
        return templates.TemplateResponse(request, template, {"error": None})
    if problem := id_problem(wanted):
        return templates.TemplateResponse(request, template, {"error": problem},
                                          status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    return RedirectResponse(request.url_for(page, **{param: quote(wanted, safe="")}), status.HTTP_303_SEE_OTHER)
