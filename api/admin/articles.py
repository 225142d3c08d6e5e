"""The article inspector: an article's text, tags and image, and its neighbours in every i2i route."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import HTMLResponse, Response

from api.admin.templating import IdPath, search_box, templates, web_url
from api.deps import ServiceDep, SessionDep
from recall.models import Article
from recall.routes import ROUTES

router = APIRouter()


@router.get("/articles", response_class=HTMLResponse)
def find_article(request: Request, article_id: str | None = None) -> Response:
    return search_box(request, article_id, "article_page", "article_id", "article_search.html")


def shown_image(image_ref: str | None) -> str | None:
    """An image the browser can load itself (an http(s) address); other references (local paths,
    any other scheme) are shown as text."""
    return web_url(image_ref)


# ":path": the rest of the path is the id (see users.user_page).
@router.get("/articles/{article_id:path}", response_class=HTMLResponse)
def article_page(
    request: Request,
    article_id: IdPath,
    session: SessionDep,
    service: ServiceDep,
    n: Annotated[int, Query(ge=1, le=200)] = 20,
) -> HTMLResponse:
    row = session.get(Article, article_id)
    catalog = service.state.catalog
    known = row is not None or article_id in catalog
    neighbours = {name: service.similar(article_id, name, n)
                  for name in service.routes if ROUTES[name].kind == "i2i"}
    return templates.TemplateResponse(request, "article.html", {
        "article_id": article_id,
        "article": row,
        "image": shown_image(row.image_ref if row else None),
        "in_build": article_id in catalog,
        "neighbours": neighbours,
        "n": n,
        "catalog": catalog,
    }, status_code=status.HTTP_200_OK if known else status.HTTP_404_NOT_FOUND)
