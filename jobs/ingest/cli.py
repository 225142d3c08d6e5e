"""``recall ingest ...``: load a dataset into SQL (migrating the schema first, so a fresh machine works).

Every command is idempotent: running it twice stores nothing the second time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine

from jobs.ingest.common import IngestReport
from jobs.ingest.jsonl import ingest_jsonl_articles, ingest_jsonl_events
from jobs.ingest.mind import ingest_mind
from jobs.ingest.synthetic import ingest_synthetic, ingest_synthetic_bulk
from jobs.ingest.tnews import ingest_tnews
from recall.db import make_engine, upgrade
from recall.settings import Settings
from recall.synthetic import VISITS_PER_DAY, plan, visits_for

ingest_app = typer.Typer(help="Load articles and events into SQL.", no_args_is_help=True)

ExistingFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


def _run(settings: Settings, ingest: Callable[[Engine, Console], IngestReport]) -> None:
    """Migrate the configured database, run one ingest against it, print its summary."""
    console = Console()
    engine = make_engine(settings.sqlalchemy_url)
    try:
        upgrade(engine)
        report = ingest(engine, console)
    finally:
        engine.dispose()
    console.print(report.table())


@ingest_app.command()
def mind(
    news: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="MIND news.tsv")] = None,
    behaviors: Annotated[Path | None,
                         typer.Option(exists=True, dir_okay=False, help="MIND behaviors.tsv")] = None,
) -> None:
    """MIND news.tsv and/or behaviors.tsv (either alone, in either order, ends the same)."""
    if news is None and behaviors is None:
        raise typer.BadParameter("give --news, --behaviors or both")
    _run(Settings(), lambda engine, console: ingest_mind(engine, news, behaviors, console))


@ingest_app.command()
def tnews(file: ExistingFile) -> None:
    """Toutiao headlines JSONL ({"id", "category", "title", "keywords"})."""
    _run(Settings(), lambda engine, console: ingest_tnews(engine, file, console))


@ingest_app.command()
def articles(file: ExistingFile) -> None:
    """Articles in the generic JSONL format (docs/formats.md)."""
    _run(Settings(), lambda engine, console: ingest_jsonl_articles(engine, file, console))


@ingest_app.command()
def events(file: ExistingFile) -> None:
    """Impressions and clicks in the generic JSONL format (docs/formats.md)."""
    _run(Settings(), lambda engine, console: ingest_jsonl_events(engine, file, console))


@ingest_app.command()
def synthetic(
    articles: Annotated[int, typer.Option(min=1)] = 2000,
    users: Annotated[int, typer.Option(min=1)] = 500,
    days: Annotated[int, typer.Option(min=1, max=365)] = 7,
    events: Annotated[int | None, typer.Option(min=1, help="about this many events (sets how often readers "
                                                           "visit); default: 1.8 visits a reader a day")] = None,
    bulk: Annotated[bool, typer.Option("--bulk/--rows", help="stream events as arrays through COPY (PostgreSQL) "
                                                             "or json_each (SQLite): for millions of events")] = False,
    seed: Annotated[int | None, typer.Option(help="default: the settings' seed")] = None,
    start: Annotated[datetime | None, typer.Option(help="first day (UTC); default: DAYS days ago, "
                                                        "so the world ends now")] = None,
) -> None:
    """A generated world with known user interests (recall/synthetic.py)."""
    settings = Settings()
    if start is None:
        today = datetime.now(timezone.utc).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
        start = today - timedelta(days=days - 1)
    visits = VISITS_PER_DAY if events is None else visits_for(events, users, days)
    world = plan(articles, users, days, settings.seed if seed is None else seed, start=start, visits_per_day=visits)
    if bulk:
        _run(settings, lambda engine, console: ingest_synthetic_bulk(engine, world, console))
    else:
        _run(settings, lambda engine, console: ingest_synthetic(engine, world.records(), console))
