"""The fast path: make a just-published article recallable at once, without the nightly job.

The article is encoded by the active build's frozen encoders and added to every vector route's
live index, to the in-memory catalog and to Redis' fresh list. The next nightly build includes
it like any other article. The evaluation replay publishes articles the same way at the moment
the data first shows them.
"""

from __future__ import annotations

from collections.abc import Sequence

from recall.catalog import ItemMeta
from recall.domain import ArticleRecord, to_unix
from recall.online import OnlineStore
from recall.routes import ROUTES
from recall.serving import ServingState


def publish_articles(state: ServingState, online: OnlineStore, articles: Sequence[ArticleRecord]) -> dict[str, int]:
    """Add articles to the live indexes, catalog and fresh list; returns vectors added per route."""
    added: dict[str, int] = {}
    for route, index in state.indexes.items():
        spec = ROUTES.get(route)
        encoder = state.encoder(spec.encoder) if spec and spec.encoder else None
        if encoder is not None and articles:
            added[route] = index.add([a.id for a in articles], encoder.encode(articles))
    for article in articles:
        state.catalog.put(article.id, ItemMeta.of(article))
    online.publish_articles([
        (a.id, to_unix(a.published_at) or 0.0) for a in articles if a.status == "active"
    ])
    return added
