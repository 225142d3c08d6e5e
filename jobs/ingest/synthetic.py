"""Writes a generated ``SyntheticWorld`` (recall/synthetic.py) into SQL, like any other source."""

from __future__ import annotations

from rich.console import Console
from sqlalchemy import Engine

from jobs.ingest.common import IngestReport, IngestRun
from recall.synthetic import SyntheticWorld


def ingest_synthetic(engine: Engine, world: SyntheticWorld, console: Console | None = None) -> IngestReport:
    with IngestRun(engine, "synthetic", console) as run:
        run.write(world.articles, total=len(world.articles), description="articles")
        run.write(world.events, total=len(world.events), description="events")
    return run.report
