"""A world at MIND-large scale: seconds and peak memory to generate it and to bulk-load it.

Run from the project root: ``python -m bench.world [--sizes small,full] [--targets postgresql,sqlite]``.

Sizes: ``small`` is 20k articles, 125k readers, ~3M events; ``full`` is MIND-large's 161k
articles, 1M readers, ~25M events; both over ``--days`` (42: MIND's six weeks). Every case runs
in a process of its own, so its peak RSS is its own:

* generate: ``recall.synthetic.plan``, the articles as records and every event chunk as arrays,
  stored nowhere (what generation alone costs);
* load into PostgreSQL (database ``test``, a scratch schema dropped afterwards) or SQLite (a
  scratch file): ``ingest_synthetic_bulk`` on a migrated, empty database, generation included
  (it streams: events are generated a chunk at a time as they are written), so load minus
  generate is the database's share.

A SQLite case that runs past ``--sqlite-timeout`` seconds is stopped and reported as such (the
full size may be: one writer, and indexes of 25M rows far past its page cache).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select, text

from jobs.ingest.synthetic import ingest_synthetic_bulk
from recall.db import make_engine, upgrade
from recall.models import Article, Event, User
from recall.synthetic import plan, visits_for

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SIZES = {"small": (20_000, 125_000, 3_000_000), "full": (161_000, 1_000_000, 25_000_000)}
SEED = 7


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate_only(articles: int, users: int, events: int, days: int) -> dict:
    started = time.perf_counter()
    world = plan(articles, users, days, SEED, visits_per_day=visits_for(events, users, days))
    stored_articles = len(world.articles())
    stored_events = sum(len(chunk) for chunk in world.event_chunks())
    return {"seconds": time.perf_counter() - started, "articles": stored_articles, "events": stored_events,
            "users": users}


def load(url: str, articles: int, users: int, events: int, days: int) -> dict:
    engine = make_engine(url)
    try:
        upgrade(engine)
        started = time.perf_counter()
        world = plan(articles, users, days, SEED, visits_per_day=visits_for(events, users, days))
        report = ingest_synthetic_bulk(engine, world, Console(quiet=True))
        seconds = time.perf_counter() - started
        with engine.connect() as connection:
            counts = {name: connection.scalar(select(func.count()).select_from(model))
                      for name, model in (("articles", Article), ("events", Event), ("users", User))}
    finally:
        engine.dispose()
    assert counts["events"] == report.events_stored, (counts, report.events_stored)
    return {"seconds": seconds, **counts}


def child(args: argparse.Namespace) -> None:
    articles, users, events = SIZES[args.size]
    result = (generate_only(articles, users, events, args.days) if args.url is None
              else load(args.url, articles, users, events, args.days))
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))


@contextmanager
def scratch_database(target: str) -> Iterator[str | None]:
    """A URL of an empty database for ``target`` (None: generate only), removed afterwards even
    when the case was stopped."""
    if target == "generate":
        yield None
    elif target == "postgresql":
        schema = f"bench_world_{uuid.uuid4().hex[:8]}"
        admin = make_engine(PG_URL)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            yield f"{PG_URL}?options=-csearch_path%3D{schema}"
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()
    else:
        with tempfile.TemporaryDirectory(prefix="bench-world-") as scratch:
            yield f"sqlite:///{Path(scratch) / 'world.db'}"


def run_case(size: str, target: str, days: int, timeout: float | None) -> dict | None:
    with scratch_database(target) as url:
        command = [sys.executable, "-m", "bench.world", "--child", "--size", size, "--days", str(days),
                   *(["--url", url] if url else [])]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)
        except subprocess.TimeoutExpired:
            return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="small,full")
    parser.add_argument("--targets", default="postgresql,sqlite")
    parser.add_argument("--days", type=int, default=42)
    parser.add_argument("--sqlite-timeout", type=float, default=15 * 60, help="seconds a SQLite case may run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", choices=sorted(SIZES), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    console = Console(width=140)
    table = Table(title=f"synthetic world: generate and bulk-load (seed {SEED}, {args.days} days)")
    for column in ("size", "case", "articles", "users", "events", "seconds", "events/s", "peak RSS MB"):
        table.add_column(column, justify="left" if column in ("size", "case") else "right")
    for size in args.sizes.split(","):
        for target in ["generate", *args.targets.split(",")]:
            console.print(f"{size}: {target} ...")
            result = run_case(size, target, args.days, args.sqlite_timeout if target == "sqlite" else None)
            name = "generate" if target == "generate" else f"generate + load {target}"
            if result is None:
                table.add_row(size, name, *["-"] * 3, f"> {args.sqlite_timeout:.0f} (stopped)", "-", "-")
                continue
            table.add_row(size, name, f"{result['articles']:,}", f"{result['users']:,}", f"{result['events']:,}",
                          f"{result['seconds']:.0f}", f"{result['events'] / result['seconds']:,.0f}",
                          f"{result['peak_rss_mb']:.0f}")
            console.print(f"  {result}")
    console.print(table)


if __name__ == "__main__":
    main()
