"""The nightly's seconds per step and peak RSS per process, cold and warm, local and on a cluster.

Both places: a local Ray, and a two-node Ray cluster on loopback.

Run from the project root: ``python -m bench.nightly [--sizes smoke,small,full] [--sample 5000]``.

Sizes (``bench.world``'s, plus a smoke size): ``smoke`` 2k articles, 2k readers, ~60k events;
``small`` 20k articles, 125k readers, ~3M events; ``full`` MIND-large's 161k articles, 1M
readers, ~25M events. Each world is generated and bulk-loaded (``ingest_synthetic_bulk``) into a
scratch PostgreSQL schema (database ``test``, dropped afterwards), its last day ending now, so
``recall nightly`` (whose cutoff is now) sees all of it. For each size, four runs of ``recall
nightly``, each in a process of its own:

* local cold: a local Ray of ``--threads`` CPUs, an empty var dir (no embedding cache, no models);
* cluster cold: the same on a two-node cluster on loopback (``tests/jobs/raycluster.py``: a head
  and a worker node of ``--threads / 2`` CPUs each; ``RECALL_RAY_ADDRESS``);
* then 3% new articles are added to the world, and local warm and cluster warm rerun on their
  var dirs: yesterday's build and embedding cache, so only the new articles are embedded.

Seconds per step are the ``job_runs`` rows of each run. Peak RSS: the driver's own
(``getrusage(RUSAGE_SELF)`` in the run's process), and every process under it or under the
cluster's nodes (Ray's GCS, raylets, workers) polled twice a second by RSS (psutil, or /proc
without it): the largest Ray worker's and the largest Ray system process's.

``--sample N`` (for ``full``): the encoders whose cost is a forward pass of a large model per
article (``--sampled``, default the BERT and image encoders) are left out of the nightly runs
and measured apart: fitted on the world's articles, then embedding N random ones in one process; the
table shows their seconds extrapolated at the measured per-article rate to every article (cold)
or to the new ones (warm: the cache holds the rest), and says so. They are not in the totals.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from bench.world import SIZES as WORLD_SIZES
from bench.world import scratch_database
from encoders.base import TrainingCorpus
from encoders.registry import ENCODERS, build_encoder
from jobs.ingest.synthetic import ingest_synthetic_bulk
from recall import sqlstore
from recall.db import make_engine, make_sessionmaker, upgrade
from recall.models import JobRun
from recall.online import OnlineStore
from recall.settings import Settings
from recall.synthetic import plan, visits_for
from tests.jobs.raycluster import LoopbackCluster

SIZES = {"smoke": (2_000, 2_000, 60_000), "small": WORLD_SIZES["small"], "full": WORLD_SIZES["full"]}
SEED, NEW_SHARE = 7, 0.03
REDIS_URL = "redis://127.0.0.1:6379/14"
POLL_SECONDS = 0.5
RAY_SYSTEM = ("gcs_server", "raylet", "ray::DashboardA", "ray::RuntimeEnv")  # process names (15 chars)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- memory of the processes a run starts ---------------------------------------------------------

def process_tree(root: int) -> list[tuple[int, str, int]]:
    """(pid, name, RSS bytes) of ``root`` and all its descendants (psutil, else /proc)."""
    try:
        import psutil
    except ImportError:
        return _proc_tree(root)
    try:
        top = psutil.Process(root)
        found = []
        for process in [top, *top.children(recursive=True)]:
            try:
                found.append((process.pid, process.name(), process.memory_info().rss))
            except psutil.NoSuchProcess:
                pass
        return found
    except psutil.NoSuchProcess:
        return []


def _proc_tree(root: int) -> list[tuple[int, str, int]]:
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        try:
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if ":" in line)
            found.append((pid, status["Name"].strip(), int(status.get("VmRSS", "0 kB").split()[0]) << 10))
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, KeyError, ValueError):
            continue
    return found


@dataclass
class MemoryWatch:
    """Polls the process trees under ``roots`` and keeps each process' peak RSS."""

    roots: list[int]
    peaks: dict[int, tuple[str, int]] = field(default_factory=dict)
    stopped: threading.Event = field(default_factory=threading.Event)

    def _poll(self) -> None:
        while not self.stopped.wait(POLL_SECONDS):
            for root in self.roots:
                for pid, name, rss in process_tree(root):
                    if rss > self.peaks.get(pid, ("", 0))[1]:
                        self.peaks[pid] = (name, rss)

    @contextmanager
    def watching(self) -> Iterator[MemoryWatch]:
        thread = threading.Thread(target=self._poll, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stopped.set()
            thread.join()

    def largest(self, workers: bool) -> tuple[str, float]:
        """The largest Ray worker (``ray::...``) or Ray system process (GCS, raylet, agents):
        its name and peak RSS in MB."""
        picked = [(rss, name) for name, rss in self.peaks.values()
                  if (name.startswith("ray::") and not name.startswith(RAY_SYSTEM) if workers
                      else name.startswith(RAY_SYSTEM))]
        if not picked:
            return "-", 0.0
        rss, name = max(picked)
        return name, rss / 2**20


# ---- one run ------------------------------------------------------------------------------------

@dataclass
class Case:
    place: str  # local | cluster
    temperature: str  # cold | warm
    steps: dict[str, float] = field(default_factory=dict)
    driver_mb: float = 0.0
    worker: tuple[str, float] = ("-", 0.0)
    system: tuple[str, float] = ("-", 0.0)
    failed: str = ""

    @property
    def name(self) -> str:
        return f"{self.place} {self.temperature}"


def child(args: argparse.Namespace) -> None:
    """The run itself, in this process: ``recall nightly``, then this process' peak RSS."""
    from jobs.cli import app

    try:
        app(["nightly"], standalone_mode=False)
    finally:
        Path(args.rss_out).write_text(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def run_case(case: Case, env: dict[str, str], cluster: LoopbackCluster | None, url: str,
             scratch: Path, console: Console) -> Case:
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        before = set(session.scalars(select(JobRun.run_id).where(JobRun.job == "nightly")))
    rss_out = scratch / f"{case.place}-{case.temperature}.rss.json"
    log = scratch / f"{case.place}-{case.temperature}.log"
    console.print(f"  {case.name} ...")
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "bench.nightly", "--child", "--rss-out", str(rss_out)],
                                   env=env, cwd=scratch, stdout=out, stderr=subprocess.STDOUT)
        roots = [process.pid, *(node.process.pid for node in (cluster.nodes if cluster else []))]
        with MemoryWatch(roots).watching() as memory:
            code = process.wait()
    if code != 0:
        case.failed = f"exit {code}: " + log.read_text()[-400:]
    with make_sessionmaker(engine)() as session:
        rows = [row for row in session.scalars(select(JobRun).where(JobRun.job == "nightly").order_by(JobRun.id))
                if row.run_id not in before]
    engine.dispose()
    for row in rows:
        case.steps[row.step] = case.steps.get(row.step, 0.0) + float(row.metrics.get("seconds", 0.0))
    if rss_out.exists():
        case.driver_mb = json.loads(rss_out.read_text())["peak_rss_mb"]
    case.worker, case.system = memory.largest(workers=True), memory.largest(workers=False)
    return case


# ---- the world ----------------------------------------------------------------------------------

def load_world(url: str, size: str, days: int, console: Console) -> None:
    articles, users, events = SIZES[size]
    start = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0) - timedelta(days=days)
    world = plan(articles, users, days, SEED, start=start, visits_per_day=visits_for(events, users, days))
    engine = make_engine(url)
    upgrade(engine)
    report = ingest_synthetic_bulk(engine, world, Console(quiet=True))
    engine.dispose()
    console.print(f"  world: {articles:,} articles, {users:,} readers, {report.events_stored:,} events")


def add_new_articles(url: str, share: float) -> int:
    """Yesterday's world plus ``share`` new articles: copies of random ones under new ids and
    titles, published now (so a warm run embeds exactly these)."""
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        stored = list(sqlstore.iter_articles(session))
    now = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(minutes=1)
    rng = random.Random(SEED)
    new = [replace(article, id=f"new{n}", title=f"{article.title} (update {n})", published_at=now, expires_at=None)
           for n, article in enumerate(rng.sample(stored, max(1, round(len(stored) * share))))]
    with sessions() as session:
        sqlstore.upsert_articles(session, new)
        session.commit()
    engine.dispose()
    return len(new)


@dataclass
class Sampled:
    """An encoder measured on a sample: seconds per article, or why it was not measured."""

    sample: int = 0
    per_article: float = 0.0
    failed: str = ""

    def seconds(self, articles: int) -> str:
        return self.failed or f"{self.per_article * articles:.0f} (extrapolated from {self.sample:,})"


def sampled_encoders(url: str, names: list[str], sample: int, threads: int) -> dict[str, Sampled]:
    """Each encoder fitted on the world's articles, then timed embedding ``sample`` random
    articles in this process."""
    settings = Settings(_env_file=None, database_url=url, threads=threads)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:  # pretrained encoders: they learn nothing from clicks
        corpus = TrainingCorpus(articles={article.id: article for article in sqlstore.iter_articles(session)})
    engine.dispose()
    picked = random.Random(SEED).sample(list(corpus.articles.values()), min(sample, len(corpus.articles)))
    measured = {}
    for name in names:
        try:
            encoder = build_encoder(name, settings)
            encoder.fit(corpus)
        except Exception as exc:  # noqa: BLE001 (unavailable, nothing to learn: reported in the table)
            measured[name] = Sampled(failed=f"not measured: {type(exc).__name__}: {exc}"[:80])
            continue
        started = time.perf_counter()
        encoder.encode(picked)
        measured[name] = Sampled(len(picked), (time.perf_counter() - started) / len(picked))
    return measured


# ---- the table ----------------------------------------------------------------------------------

def table(size: str, cases: list[Case], sampled: dict[str, Sampled], new_articles: int) -> Table:
    articles, users, events = SIZES[size]
    out = Table(title=f"nightly at {size}: {articles:,} articles, {users:,} readers, ~{events:,} events "
                      f"(warm: yesterday's build and cache + {new_articles:,} new articles); seconds")
    out.add_column("step")
    for case in cases:
        out.add_column(case.name, justify="right")
    steps = list(dict.fromkeys(step for case in cases for step in case.steps))
    for step in steps:
        out.add_row(step, *(f"{case.steps[step]:.1f}" if step in case.steps else "-" for case in cases))
    for name, measured in sampled.items():  # cold embeds every article, warm the new ones only
        out.add_row(f"embed:{name} (sampled)", *(measured.seconds(articles if case.temperature == "cold" else new_articles)
                                                 for case in cases))
    out.add_row("[bold]total[/bold]", *(f"[bold]{sum(case.steps.values()):.1f}[/bold]" for case in cases))
    out.add_row("peak RSS MB: driver", *(f"{case.driver_mb:.0f}" for case in cases))
    out.add_row("peak RSS MB: largest Ray worker", *(f"{case.worker[1]:.0f} ({case.worker[0]})" for case in cases))
    out.add_row("peak RSS MB: largest Ray system process",
                *(f"{case.system[1]:.0f} ({case.system[0]})" for case in cases))
    out.add_row("failed", *(case.failed[:60] or "-" for case in cases))
    return out


def bench_size(size: str, args: argparse.Namespace, console: Console) -> Table:
    console.print(f"{size}:")
    given = nullcontext(args.database) if args.database else scratch_database("postgresql")
    with given as url, tempfile.TemporaryDirectory(prefix="bench-nightly-") as tmp:
        scratch = Path(tmp)
        if args.database:
            console.print(f"  world: the one in {args.database} (the warm runs add their new articles to it)")
        else:
            load_world(url, size, args.days, console)
        wanted = list(ENCODERS) if args.encoders == "all" else args.encoders.split(",")
        sampled = args.sampled.split(",") if args.sample else []
        built = [name for name in wanted if name not in sampled]
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RECALL_", "RAY_ADDRESS"))}
        base.update(RECALL_DATABASE_URL=url, RECALL_REDIS_URL=REDIS_URL, RECALL_THREADS=str(args.threads),
                    RECALL_BUILD_ENCODERS=",".join(built), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        prefixes = {place: f"bench-nightly-{uuid.uuid4().hex[:8]}-{place}:" for place in ("local", "cluster")}
        envs = {place: {**base, "RECALL_VAR_DIR": str(scratch / f"var-{place}"), "RECALL_REDIS_PREFIX": prefix}
                for place, prefix in prefixes.items()}
        cluster_cpus = max(1, args.threads // 2)
        cases: list[Case] = []
        try:
            with (LoopbackCluster(cpus=cluster_cpus) if args.cluster else nullcontext()) as cluster:
                places = ["local", *(["cluster"] if cluster else [])]
                if cluster:
                    envs["cluster"].update(cluster.driver_env)
                new_articles = 0
                for temperature in ("cold", "warm"):
                    if temperature == "warm":
                        new_articles = add_new_articles(url, NEW_SHARE)
                    for place in places:
                        cases.append(run_case(Case(place, temperature), envs[place],
                                              cluster if place == "cluster" else None, url, scratch, console))
            extrapolated = sampled_encoders(url, [n for n in sampled if n in wanted], args.sample, args.threads)
        finally:
            client = redis.Redis.from_url(REDIS_URL)
            for prefix in prefixes.values():
                OnlineStore(client, Settings(_env_file=None, redis_url=REDIS_URL, redis_prefix=prefix)).flush_namespace()
            client.close()
    cases.sort(key=lambda case: (case.place, case.temperature))
    return table(size, cases, extrapolated, new_articles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="small,full", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--days", type=int, default=7, help="days of events in the world")
    parser.add_argument("--threads", type=int, default=2, help="the local Ray's CPUs (each cluster node: half)")
    parser.add_argument("--encoders", default="all", help="the encoders the nightly builds (comma-separated)")
    parser.add_argument("--database", default="",
                        help="a database already holding a world of the one --sizes given (recall ingest synthetic "
                             "--bulk), used instead of generating one into a scratch schema")
    parser.add_argument("--sample", type=int, default=0,
                        help="embed only this many articles with the --sampled encoders, extrapolated (0: no sampling)")
    parser.add_argument("--sampled", default="doc2vec,img2vec", help="the encoders --sample applies to")
    parser.add_argument("--cluster", action=argparse.BooleanOptionalAction, default=True,
                        help="also run on a two-node loopback Ray cluster")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    console = Console(width=160)
    for size in args.sizes.split(","):
        console.print(bench_size(size, args, console))


if __name__ == "__main__":
    main()
