"""The `recall` command line: ingest, nightly, eval, serve, demo, db."""

from __future__ import annotations

import typer

from jobs.ingest.cli import ingest_app

app = typer.Typer(help="newsrecall: multi-route candidate recall for news feeds.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
