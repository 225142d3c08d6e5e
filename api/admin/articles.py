"""The article inspector: an article's text, tags and image, and its neighbours in every i2i route."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import HTMLResponse, Response

from api.admin.templating import search_box, templates
from api.deps import ServiceDep, SessionDep
from api.schemas import ID_MAX_LENGTH
from recall.models import Article
from recall.routes import ROUTES

router = APIRouter()


@router.get("/articles", response_class=HTMLResponse)
def find_article(request: Request, article_id: str | None = None) -> Response:
    return search_box(request, article_id, "article_page", "article_id", "article_search.html")


def shown_image(image_ref: str | None) -> str | None:
    """An image the browser can load itself; other references (local paths) are shown as text."""
    return image_ref if image_ref and image_ref.startswith(("https://", "http://")) else None


@router.get("/articles/{article_id}", response_class=HTMLResponse)
def article_page(
    request: Request,
    article_id: Annotated[str, Path(max_length=ID_MAX_LENGTH)],
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
