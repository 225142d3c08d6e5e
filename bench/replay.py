"""The nightly's online step (``jobs/nightly.refresh_online``): seconds and events per pass.

Run from the project root: ``python -m bench.replay [--size smoke|small|full] [--days 7]``.

A world of ``bench.nightly``'s sizes, bulk-loaded into a scratch PostgreSQL schema (dropped
afterwards), its last day ending now, and a Redis namespace of its own (database 13, flushed
afterwards). Two cases, each the online step of a nightly whose cutoff is now:

* **from empty**: Redis lost its state, or this is the first nightly: every event of the replay
  horizon (the seen window, 7 days) goes into recent clicks and seen sets, hot counters and
  co-click lists.
* **a day later**: Redis is whole as yesterday's nightly left it (the refresh at the cutoff less a
  day), and the API applied nothing since (as if the day's events came in a file): the day's
  events into recent clicks and seen sets, the hot counters of two hot windows, the co-click
  lists from the horizon's clicks.

Reading SQL is part of each pass. Redis is the machine's own (127.0.0.1:6379).
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import datetime, timedelta, timezone

import redis
from rich.console import Console
from rich.table import Table

from bench.nightly import SEED, SIZES
from bench.world import scratch_database
from encoders.base import TrainingCorpus
from jobs.ingest.synthetic import ingest_synthetic_bulk
from jobs.nightly import refresh_online
from recall.db import make_engine, make_sessionmaker, upgrade
from recall.online import OnlineStore
from recall.settings import Settings
from recall.synthetic import plan, visits_for

REDIS_URL = "redis://127.0.0.1:6379/13"
PASSES = ("history_hot", "history", "hot", "co_click")  # from empty, history and hot read once
NO_ARTICLES = TrainingCorpus(articles={}, click_sequences={})  # the fresh list costs nothing here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="small", choices=list(SIZES))
    parser.add_argument("--days", type=int, default=7, help="days of events in the world")
    args = parser.parse_args()
    console = Console()
    articles, users, events = SIZES[args.size]
    now = datetime.now(timezone.utc).replace(tzinfo=None, second=0, microsecond=0)
    start = now.replace(minute=0) - timedelta(days=args.days)
    world = plan(articles, users, args.days, SEED, start=start, visits_per_day=visits_for(events, users, args.days))
    with scratch_database("postgresql") as url:
        engine = make_engine(url)
        upgrade(engine)
        stored = ingest_synthetic_bulk(engine, world, Console(quiet=True)).events_stored
        console.print(f"{args.size}: {articles:,} articles, {users:,} readers, {stored:,} events over {args.days} days")
        settings = Settings(_env_file=None, database_url=url, redis_url=REDIS_URL,
                            redis_prefix=f"bench-replay-{uuid.uuid4().hex[:8]}:")
        client = redis.Redis.from_url(REDIS_URL)
        online, sessions = OnlineStore(client, settings), make_sessionmaker(engine)
        rows = {}
        try:
            rows["from empty"] = timed(online, sessions, now, settings)
            online.flush_namespace()
            refresh_online(online, sessions, NO_ARTICLES, now - timedelta(days=1), settings)
            rows["a day later"] = timed(online, sessions, now, settings)
        finally:
            online.flush_namespace()
            client.close()
            engine.dispose()
    console.print(table(rows))


def timed(online: OnlineStore, sessions, cutoff: datetime, settings: Settings) -> dict:
    started = time.perf_counter()
    counts = refresh_online(online, sessions, NO_ARTICLES, cutoff, settings)
    return {**counts, "seconds": time.perf_counter() - started}


def table(rows: dict[str, dict]) -> Table:
    out = Table(title="the nightly's online step, per pass")
    for column in ("case", "pass", "events", "seconds", "events/s"):
        out.add_column(column, justify="left" if column in ("case", "pass") else "right")
    for case, counts in rows.items():
        names = [name for name in PASSES if f"{name}_events" in counts]
        for n, name in enumerate(names):
            events, seconds = counts[f"{name}_events"], counts[f"{name}_seconds"]
            label = f"{case} ({counts['replay'].split('T')[0]})" if n == 0 else ""
            out.add_row(label, name, f"{events:,}", f"{seconds:.1f}", f"{events / max(seconds, 0.05):,.0f}")
        swap = counts["seconds"] - sum(counts[f"{name}_seconds"] for name in names)
        out.add_row("", "swap, fresh list", "", f"{swap:.1f}", "")
        out.add_row("", "[bold]total[/bold]", "", f"[bold]{counts['seconds']:.1f}[/bold]", "", end_section=True)
    return out


if __name__ == "__main__":
    main()
