"""The fast path: make a just-published article recallable at once, without the nightly job.

The article is encoded by the active build's frozen encoders and added to every vector route's
live index, to the in-memory catalog and to Redis' fresh list. The next nightly build includes
it like any other article. The evaluation replay publishes articles the same way at the moment
the data first shows them.

An article posted to one API worker is in that worker's memory only; ``catch_up`` is how every
other worker (and a restarted one) gets it: each reload tick reads the articles SQL stored or
changed since the state's watermark (the build's cutoff at first) and publishes them here.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session, sessionmaker

from recall import sqlstore
from recall.catalog import ItemMeta
from recall.domain import ArticleRecord, to_unix
from recall.online import OnlineStore
from recall.routes import ROUTES


def publish_articles(pipeline, online: OnlineStore, articles: Sequence[ArticleRecord]) -> dict[str, int]:
    """Add articles to the catalog, the live delta of every vector route and the fresh list
    (Redis' and this process' snapshot); returns vectors added per route.

    An article the build already holds keeps its build vector (its metadata is updated): an
    edit reaches the vectors with the next build, and a re-post costs no encoding.
    """
    state = pipeline.state
    for article in articles:
        state.catalog.put(article.id, ItemMeta.of(article))
    added: dict[str, int] = {}
    for route, index in state.indexes.items():
        spec = ROUTES.get(route)
        encoder = state.encoder(spec.encoder) if spec and spec.encoder else None
        new = [a for a in articles if a.id not in index.row_of]
        if encoder is not None and new:
            added[route] = index.add([a.id for a in new], encoder.encode(new))
    fresh = [(a.id, to_unix(a.published_at) or 0.0) for a in articles if a.status == "active"]
    pipeline.live.publish(fresh)
    online.publish_articles(fresh)
    return added


def catch_up(pipeline, online: OnlineStore, sessions: sessionmaker[Session], batch: int = 500) -> int:
    """Publish up to ``batch`` articles changed in SQL after the state's watermark; returns how
    many. The watermark is a keyset cursor, (``live_until``, ``live_until_id``) = the change time
    and id of the last article published (the build's cutoff and "" at first): one upsert stamps
    all its rows with one change time, so a time alone would stop mid-batch and skip the rest.
    It only moves past what was published, so a failure retries next tick."""
    state = pipeline.state
    if state.live_until is None:
        return 0
    with sessions() as session:
        changed = sqlstore.articles_updated_after(session, state.live_until, batch, after_id=state.live_until_id)
    if changed:
        publish_articles(pipeline, online, [record for record, _ in changed])
        last, changed_at = changed[-1]
        state.live_until, state.live_until_id = changed_at, last.id
    return len(changed)
