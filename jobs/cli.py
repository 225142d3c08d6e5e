"""The `recall` command line: ingest, nightly, eval, serve, demo, db."""

from __future__ import annotations

import secrets
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from jobs.admin import admin_app
from jobs.ingest.cli import ingest_app
from recall.credentials import create_user
from recall.db import make_engine, make_sessionmaker, upgrade
from recall.online import OnlineStore, close_redis, connect_redis, embedded_server, stop_embedded
from recall.settings import Settings

app = typer.Typer(help="newsrecall: multi-route candidate recall for news feeds.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
redis_app = typer.Typer(help="The embedded Redis of this var folder (used when RECALL_REDIS_URL is empty). "
                             "Commands start it on demand and stop it when its last client exits.")
app.add_typer(redis_app, name="redis")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the configured database to the newest schema."""
    settings = Settings()
    upgrade(make_engine(settings.sqlalchemy_url))
    Console().print(f"schema up to date: {settings.sqlalchemy_url}")


@redis_app.command("status")
def redis_status() -> None:
    """Whether an embedded Redis serves this var folder, and its pid and socket."""
    server = embedded_server(Settings())
    typer.echo(f"running: pid {server['pid']}, socket {server['unixsocket']}" if server else "not running")


@redis_app.command("stop")
def redis_stop() -> None:
    """Stop this var folder's embedded Redis, saving its data (e.g. after a killed command)."""
    pid = stop_embedded(Settings())
    typer.echo(f"stopped pid {pid}, data saved" if pid else "not running")


@app.command()
def nightly() -> None:
    """Train, embed, build indexes, verify and publish atomically, refresh Redis (each step in
    job_runs). One run at a time: while another holds the nightly lock, exits with status 75."""
    from jobs.nightly import nightly_lock, run_nightly
    from jobs.runs import RunLocked

    settings, console = Settings(), Console()
    engine = make_engine(settings.sqlalchemy_url)
    lock = nightly_lock(settings, engine)
    try:
        lock.acquire()  # before migrating: a second run changes nothing, the schema included
    except RunLocked as exc:
        typer.echo(f"recall nightly: {exc}", err=True)
        raise typer.Exit(75) from None  # EX_TEMPFAIL: another run is at work; try again later
    try:
        upgrade(engine)
        client = connect_redis(settings)
        try:
            result = run_nightly(settings, engine, OnlineStore(client, settings), console=console, lock=lock)
        finally:
            close_redis(client)  # the embedded server stops with its last client, data saved
    finally:
        lock.release()
    console.print(f"published build [bold]{result.version}[/bold]: {result.counts}")


@app.command("eval")
def eval_command(
    split_time: Annotated[datetime, typer.Option(help="build on events before this time (UTC); report the impressions after it")],
    tune_from: Annotated[datetime | None, typer.Option(
        help="fit route weights, quotas and the merger's agreement on the impressions in [TUNE_FROM, SPLIT_TIME) "
             "over a build made before TUNE_FROM, then report the test window with them")] = None,
    write_configs: Annotated[bool, typer.Option(
        help="store the fitted route configs (changed by \"tuner\") in the configured database; without it they "
             "go to the scratch database of a files/synthetic eval and nowhere for an eval of the configured one")] = False,
    k: Annotated[str, typer.Option(help="comma-separated cut-offs")] = "50,100,200,500",
    behaviors: Annotated[Path | None, typer.Option(exists=True, dir_okay=False,
                                                   help="MIND behaviors.tsv (evaluated in a scratch database)")] = None,
    news: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="MIND news.tsv")] = None,
    synthetic: Annotated[str | None, typer.Option(help="ARTICLES,USERS,DAYS of a generated world "
                                                       "(starting 2026-11-01) instead of files")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
    keep: Annotated[bool, typer.Option(help="keep the scratch directory")] = False,
    record_run: Annotated[bool, typer.Option("--record/--no-record",
                                             help="store the figures in the configured database's job_runs "
                                                  "(the admin jobs page shows them)")] = True,
) -> None:
    """Online replay: build before the split, replay after it, report Recall@K per route (optionally
    after fitting the fusion on a validation window before the split)."""
    from jobs.evaluate import evaluate, record, write_json
    from jobs.ingest.mind import ingest_mind
    from jobs.ingest.synthetic import ingest_synthetic
    from recall.synthetic import generate

    base, console = Settings(), Console()
    ks = sorted({int(x) for x in k.split(",") if x.strip()})
    if not ks or ks[0] <= 0:
        raise typer.BadParameter("--k needs positive integers, e.g. 50,100,200,500")
    run_id = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:4]}"
    scratch = base.var_dir / "eval" / run_id
    # Files or a generated world go to a scratch database; otherwise the configured one is read.
    database_url = f"sqlite:///{(scratch / 'eval.db').resolve()}" if (behaviors or news or synthetic) else base.sqlalchemy_url
    settings = base.model_copy(update={"var_dir": scratch, "database_url": database_url,
                                       "redis_prefix": f"{base.redis_prefix}eval:{run_id}:"})
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    if behaviors or news:
        console.print(ingest_mind(engine, news, behaviors, console).table())
    if synthetic:
        articles, users, days = (int(x) for x in synthetic.split(","))
        console.print(ingest_synthetic(engine, generate(articles, users, days, base.seed), console).table())
    scratch_data = bool(behaviors or news or synthetic)
    configs_engine = make_engine(base.sqlalchemy_url) if write_configs else (engine if scratch_data else None)
    if write_configs:
        upgrade(configs_engine)
    online = OnlineStore(connect_redis(settings), settings)  # embedded: a scratch server too
    try:
        report = evaluate(settings, engine, online, split_time, ks, console, tune_from=tune_from,
                          configs_engine=configs_engine)
    finally:
        online.flush_namespace()
        close_redis(online.r)  # before its folder goes: the scratch server stops here
        engine.dispose()
        if configs_engine is not None:
            configs_engine.dispose()
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    if report.validation is not None:
        console.print(report.validation.table())
        console.print(f"fitted (agreement {report.tuning['agreement']}): {report.tuning['changed']}")
    console.print(report.table())
    if record_run:
        target = make_engine(base.sqlalchemy_url)
        upgrade(target)
        data = synthetic and f"synthetic {synthetic}" or (behaviors and f"MIND {behaviors}") or "configured database"
        record(report, make_sessionmaker(target), f"eval-{run_id}", str(data))
        target.dispose()
    if json_out:
        write_json(report, json_out)
        console.print(f"figures written to {json_out}")


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    workers: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Serve the HTTP API (recall, similar, events, routes, health; OpenAPI at /docs)."""
    from api.server import serve as run_server

    run_server(host, port, workers, Settings())


@app.command()
def demo(
    articles: Annotated[int, typer.Option(min=10)] = 2000,
    users: Annotated[int, typer.Option(min=1)] = 500,
    days: Annotated[int, typer.Option(min=2)] = 7,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    serve_api: Annotated[bool, typer.Option("--serve/--no-serve")] = True,
) -> None:
    """The embedded default end to end: synthetic data -> SQLite -> nightly -> API on HOST:PORT."""
    from jobs.ingest.synthetic import ingest_synthetic
    from jobs.nightly import run_nightly
    from recall.synthetic import generate

    settings, console = Settings(), Console()
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    today = datetime.now(timezone.utc).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    world = generate(articles, users, days, settings.seed, start=today - timedelta(days=days - 1))
    console.print(ingest_synthetic(engine, world, console).table())
    client = connect_redis(settings)
    try:
        result = run_nightly(settings, engine, OnlineStore(client, settings), console=console)
    finally:
        close_redis(client)  # the API's workers start (or reuse) the embedded server themselves
    console.print(f"published build [bold]{result.version}[/bold]: {result.counts}")
    if not serve_api:
        return
    password = secrets.token_urlsafe(9)  # a fresh one each run: the demo's editor is never guessable
    with make_sessionmaker(engine)() as session:
        create_user(session, "editor", password, replace=True)
    user = next(iter(world.user_interests))
    console.print(f"\nAPI on [bold]http://{host}:{port}[/bold]  (OpenAPI: http://{host}:{port}/docs)")
    console.print(f"try:  curl 'http://{host}:{port}/v1/recall/{user}?n=20&explain=true'")
    console.print(f"admin pages: http://{host}:{port}/admin/  (log in as [bold]editor[/bold] / [bold]{password}[/bold])\n")
    from api.server import serve as run_server

    # The embedded demo is local: read-only recall needs no API key here, and the admin pages are
    # served over plain http on HOST, so the session cookie cannot be HTTPS-only.
    run_server(host, port, 1, settings.model_copy(update={"open_recall": True, "admin_cookie_https_only": False}))


if __name__ == "__main__":  # python -m jobs.cli: the same as the recall command
    app()
