"""Redis down, then back empty, under load: what the recall API answers meanwhile, and what is lost.

Run from the project root: ``python -m bench.faults [--articles 2000] [--phase 10]``. Needs what
``bench.serving`` needs (PostgreSQL on 127.0.0.1:5432, ``redis-server``, ``wrk``).

A synthetic world on a scratch PostgreSQL database and a Redis of the bench's own, served by
``recall serve --workers 2``. ``wrk`` (16 connections, keep-alive, a random known user per
request) runs three phases: before, during an outage (the bench's Redis stopped), and after
(Redis started again empty, as a restart without persistence leaves it). All along, a side
loop posts one click per 100 ms for a user of its own. Printed: per phase, requests, non-2xx,
5xx (from the server's log), p50/p99; then the seconds from Redis's return until every click
posted before and during the outage was back in that user's recent clicks, and the clicks lost.
The goal under outage is p99 <= 250 ms with no 5xx (a benchmark, not a test: see
tests/api/test_faults.py for the asserted behaviour).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table

from bench.serving import (
    RECALL,
    TIMEOUTS,
    Processes,
    scratch_database,
    serve,
    server_log_summary,
    spare_port,
    wrk,
    write_wrk_script,
)

WHOLE_WITHIN = 120.0  # seconds after Redis returns: clicks still missing then are lost


def redis_on(procs: Processes, logs: Path, port: int):
    proc = procs.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no"], logs / "redis.log")
    client = redis.Redis(port=port, socket_timeout=5)
    for _ in range(100):
        with contextlib.suppress(redis.ConnectionError):
            client.ping()
            return proc, client
        time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def post_clicks(base: str, key: str, user: str, articles: list[str], posted: list[tuple[float, str, bool]],
                stop: threading.Event) -> None:
    """One click per 100 ms; each (time, article, accepted) kept."""
    n = 0
    while not stop.is_set():
        article = articles[n % len(articles)]
        body = json.dumps({"events": [{"id": f"fault-{uuid.uuid4().hex}", "user_id": user,
                                       "article_id": article, "kind": "click"}]}).encode()
        request = urllib.request.Request(f"{base}/v1/events", data=body, method="POST",
                                         headers={"X-API-Key": key, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                posted.append((time.monotonic(), article, response.status == 200))
        except OSError:
            posted.append((time.monotonic(), article, False))
        n += 1
        time.sleep(0.1)


def run(articles: int, phase: int) -> None:
    console = Console()
    with contextlib.ExitStack() as stack:
        var = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-faults-")))
        logs = var / "logs"
        logs.mkdir()
        db, url = scratch_database(stack, f"faults_{articles}")
        port = spare_port()
        prefix = "nr:"
        procs = Processes({**os.environ, "RECALL_VAR_DIR": str(var), "RECALL_DATABASE_URL": url,
                           "RECALL_REDIS_URL": f"redis://127.0.0.1:{port}/0", "RECALL_REDIS_PREFIX": prefix,
                           "RECALL_RELOAD_INTERVAL_SECONDS": "2"}, var)
        stack.callback(procs.stop_all)
        redis_proc, client = redis_on(procs, logs, port)
        console.print(f"{articles} articles: ingest and nightly ...")
        procs.run([RECALL, "ingest", "synthetic", "--articles", str(articles), "--users", str(articles // 5),
                   "--days", "7", "--seed", "7"], logs / "ingest.log", TIMEOUTS["ingest"])
        procs.run([RECALL, "nightly"], logs / "nightly.log", TIMEOUTS["nightly"])
        key = procs.run([RECALL, "admin", "create-key", "bench"], logs / "key.log", TIMEOUTS["key"]).split()[-1]
        script = write_wrk_script(db, var)
        _, base = serve(procs, logs)
        wrk(base, key, script, 4, 3)  # warm-up, untimed

        clicker, posted, stop = f"bench-fault-{uuid.uuid4().hex[:6]}", [], threading.Event()
        catalog_ids = [m.decode() for m in client.zrevrange(prefix + "fresh", 0, 39)]
        poster = threading.Thread(target=post_clicks, args=(base, key, clicker, catalog_ids, posted, stop), daemon=True)
        poster.start()
        rows = []
        rows.append(("before", wrk(base, key, script, 16, phase)))
        procs.stop(redis_proc)
        down_at = time.monotonic()
        rows.append(("Redis down", wrk(base, key, script, 16, phase)))
        redis_proc, client = redis_on(procs, logs, port)  # back, empty
        up_at = time.monotonic()
        whole_after, missing = None, set()
        after = threading.Thread(target=lambda: rows.append(("Redis back empty", wrk(base, key, script, 16, phase))))
        after.start()
        while time.monotonic() - up_at < WHOLE_WITHIN:
            sent = {a for t, a, ok in posted if ok and t < up_at}
            have = {m.decode() for m in client.zrange(f"{prefix}u:{clicker}:clicks", 0, -1)}
            missing = sent - have
            if not missing:
                whole_after = time.monotonic() - up_at
                break
            time.sleep(0.25)
        after.join(timeout=phase + 90)
        stop.set()
        poster.join(timeout=10)
        statuses, _ = server_log_summary(logs / "server.log")

    table = Table(title=f"Redis outage under load: {articles} articles, 16 connections, "
                        f"{phase} s a phase (outage {up_at - down_at:.0f} s), recall serve --workers 2")
    for column in ("phase", "requests", "req/s", "non-2xx", "p50 ms", "p99 ms", "load 1 min"):
        table.add_column(column, justify="right")
    for name, load in rows:
        table.add_row(name, str(load.requests), f"{load.rps:.0f}", str(load.non_2xx + load.socket_errors),
                      f"{load.p50_ms:.1f}", f"{load.p99_ms:.1f}", f"{load.load_1min:.1f}")
    console.print(table)
    server_errors = sum(n for status, n in statuses.items() if status.startswith("5"))
    sent = sum(1 for t, _, ok in posted if ok and t < up_at)
    console.print(f"recall statuses logged by the server: {statuses} (5xx: {server_errors})")
    console.print(f"clicks posted before/during the outage and acknowledged: {sent}; "
                  f"{'whole again %.1f s after Redis returned' % whole_after if whole_after is not None else 'NOT whole'}"
                  f"; lost: {len(missing) if whole_after is None else 0}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--phase", type=int, default=10, help="seconds of load per phase")
    args = parser.parse_args()
    run(args.articles, args.phase)


if __name__ == "__main__":
    main()
