"""The admin pages' templates (autoescaped: every title and tag is shown as text) and paging."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import Request, status
from fastapi.responses import RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.templating import Jinja2Templates

from api.admin.editors import CSRF_FIELD, csrf_token


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


# autoescape=True for every template, whatever its name: article titles and tags come from
# outside and must never become markup. StrictUndefined: a typo in a template fails loudly.
environment = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
environment.filters["timestamp"] = timestamp
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


def search_box(request: Request, wanted: str | None, page: str, param: str, template: str) -> Response:
    """A search form's answer: the page of the id asked for (a redirect), or the empty form."""
    if wanted and wanted.strip():
        return RedirectResponse(request.url_for(page, **{param: wanted.strip()}), status.HTTP_303_SEE_OTHER)
    return templates.TemplateResponse(request, template, {})
