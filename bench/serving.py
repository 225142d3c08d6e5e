"""The HTTP recall API under load: requests/s and latency per connection count, honestly measured.

Run from the project root: ``python -m bench.serving [--sizes 2000,20000,100000] [--duration 10]
[--json results.json]``. Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user ``postgres``),
``redis-server`` on PATH and ``wrk`` (Debian package ``wrk``).

For each world size (articles; users = articles / 5) the bench makes a scratch var dir, a scratch
PostgreSQL database and a Redis server of its own (never the shared one on 6379), ingests a
synthetic world and runs the nightly build twice (the second reuses models and embeddings; two
valid builds then exist). It creates an API key and starts ``recall serve --workers 2``, a real
server in its own process, as production runs it. ``wrk`` (compiled, keep-alive) asks
``GET /v1/recall/{user}?n=500`` for a random known user per request at 1, 4, 16 and 64
connections, after a short untimed warm-up; responses slower than 2 s are counted as timed out
(see SLOW_US). Counted on the server side, never assumed:

* Redis round trips per request: the bench Redis's ``total_reads_processed`` delta (one socket
  read per client round trip) minus the background rate of an idle period with the server up
  (reload watchers), divided by the recall requests the server logged (in-flight ones included);
* SQL transactions per request: ``pg_stat_database.xact_commit`` of the bench database, likewise;
* the workers' RSS after the load, and p50/p99 of a 16-connection run during which
  ``builds/ACTIVE`` is flipped to the other build (the workers reload it under load).

At 20000 articles and more, doc2vec (MiniLM, 384-d) is too slow to embed on 2 cores: its
embedding cache is prefilled with random unit vectors of the encoder's real dimension (the
request path does not care where vectors come from) and the tables say so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psycopg
import redis
from rich.console import Console
from rich.table import Table

RECALL = str(Path(sys.executable).with_name("recall"))
PG_ARGS = ["-h", "127.0.0.1", "-U", "postgres"]
LEVELS = (1, 4, 16, 64)
RANDOM_VECTORS_FROM, RANDOM_VECTOR_ENCODERS = 20_000, ("doc2vec",)
LIGHT_TRAINING_FROM = 100_000
CLONE_BUILD_FROM = 100_000  # the publish-under-load run flips to a copy of the build, not a second nightly
LIGHT_TRAINING = {"RECALL_TITLE2VEC_EPOCHS": "1", "RECALL_DSSM_EPOCHS": "1"}
RELOAD_SECONDS = 2
# After a level: in-flight requests drain, and PostgreSQL backends flush their pending statistics
# (an idle backend holds them up to PGSTAT_IDLE_INTERVAL, 10 s, before xact_commit shows them).
SETTLE_SECONDS = 11.0
WARMUP_SECONDS = 3
TIMEOUTS = {"db": 120, "ingest": 3600, "nightly": 4 * 3600, "key": 300, "ready": 900}

# A response slower than this counts as timed out. wrk's own --timeout cannot say it: wrk leaves
# the responses slower than its timeout out of its latency histogram (at saturation every
# percentile would read 0 or too low) and counts "timeouts" by a 2 s sweep over open requests. So
# wrk gets a timeout far above any latency, and the Lua script counts the responses over this.
SLOW_US, WRK_TIMEOUT = 2_000_000, "30s"

# wrk runs this in each thread's Lua state; ``done`` prints one parseable line (microseconds).
WRK_LUA = r"""
local users = {}
for line in io.lines("@USERS@") do users[#users + 1] = line end
local threads, mode = 0, "recall"
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) mode = args[1] or "recall"; math.randomseed(os.time() * 7919 + (tid or 0)) end
function request()
  if mode == "healthz" then return wrk.format("GET", "/healthz") end
  return wrk.format("GET", "/v1/recall/" .. users[math.random(#users)] .. "?n=500")
end
-- The share of responses within limit_us: wrk keeps no such count, but percentile() is monotone.
local function share_within(latency, limit_us)
  if latency.max <= limit_us then return 1 end
  local lo, hi = 0, 100
  for _ = 1, 40 do
    local mid = (lo + hi) / 2
    if latency:percentile(mid) <= limit_us then lo = mid else hi = mid end
  end
  return lo / 100
end
function done(summary, latency, requests)
  local e = summary.errors
  local slow = math.floor(summary.requests * (1 - share_within(latency, @SLOW_US@)) + 0.5)
  io.write(string.format("BENCH requests=%d duration_us=%d p50=%.0f p90=%.0f p99=%.0f slow=%d "
    .. "connect=%d read=%d write=%d timeout=%d status=%d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), slow,
    e.connect, e.read, e.write, e.timeout, e.status))
end
"""


@dataclass
class Load:
    """One wrk run as the client saw it, plus server-side counters per completed request."""

    connections: int
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    socket_errors: int  # connect + read + write, + requests unanswered after WRK_TIMEOUT
    timeouts: int  # responses slower than SLOW_US
    non_2xx: int  # wrk counts statuses >= 400
    load_1min: float = 0.0  # the machine's load average when the run ended (it is shared)
    served: int | None = None  # recall requests the server logged, in-flight ones at the end included
    redis_round_trips: float | None = None
    sql_transactions: float | None = None


@dataclass
class SizeResult:
    articles: int
    users: int
    random_vectors: list[str]
    training_note: str
    nightly_seconds: float = 0.0
    second_nightly_seconds: float = 0.0
    slowest_steps: list[tuple[str, float]] = field(default_factory=list)
    levels: list[Load] = field(default_factory=list)
    healthz: Load | None = None
    publish: Load | None = None
    publish_flip: str = ""
    rss_mb: list[float] = field(default_factory=list)
    recall_statuses: dict[str, int] = field(default_factory=dict)  # as the server logged them
    server_errors: list[tuple[str, int]] = field(default_factory=list)  # distinct ERROR lines, counted
    load_average: list[float] = field(default_factory=list)
    http_stack: str = ""


class Processes:
    """Every process the bench starts, each in a session (process group) of its own: stopping
    the group reaches grandchildren too (uvicorn's workers), and a Ctrl-C in the terminal reaches
    only the bench, whose ``finally`` then stops them in order."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.env, self.cwd, self.running = env, cwd, []

    def start(self, cmd: list[str], log: Path) -> subprocess.Popen:
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.running.append(proc)
        return proc

    def run(self, cmd: list[str], log: Path, timeout: float) -> str:
        """Run to completion (stopped after ``timeout``); the output, or an error with its tail."""
        proc = self.start(cmd, log)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout:.0f} s"
        finally:
            self.stop(proc)
        text = log.read_text(errors="replace")
        if code != 0:
            tail = "\n".join(text.splitlines()[-30:])
            raise RuntimeError(f"{' '.join(cmd[:3])} failed ({code}); log tail:\n{tail}")
        return text

    def stop(self, proc: subprocess.Popen) -> None:
        """SIGTERM to the group, then SIGKILL to whatever is left of it (the group can outlive
        its leader) after a grace period."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)


def spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert port != 6379, "never the shared Redis port"
    return port


def http_stack(pid: int) -> str:
    """What a worker really runs, read from its memory map (uvicorn picks httptools and uvloop
    when installed, h11 and asyncio otherwise; redis-py picks hiredis's parser when installed;
    what is installed can change between runs)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "+".join(("httptools" if "httptools" in maps else "h11", "uvloop" if "uvloop" in maps else "asyncio")) \
        + (", hiredis" if "hiredis" in maps else "")


def scratch_database(stack: contextlib.ExitStack, size: int) -> tuple[str, str]:
    """A fresh database (a stale one of an interrupted run is dropped first); dropped at the end."""
    name = f"bench_serving_{size}"
    drop = ["dropdb", *PG_ARGS, "--if-exists", "--force", name]
    subprocess.run(drop, check=True, timeout=TIMEOUTS["db"], capture_output=True)
    subprocess.run(["createdb", *PG_ARGS, name], check=True, timeout=TIMEOUTS["db"], capture_output=True)
    stack.callback(subprocess.run, drop, timeout=TIMEOUTS["db"], capture_output=True)
    return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def start_redis(procs: Processes, logs: Path) -> redis.Redis:
    """A Redis of the bench's own, without persistence, so its counters are ours alone."""
    port = spare_port()
    procs.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                logs / "redis.log")
    client = redis.Redis(port=port, socket_timeout=5)
    for _ in range(100):
        with contextlib.suppress(redis.ConnectionError):
            client.ping()
            return client
        time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def prefill_random_embeddings(env: dict[str, str], names: tuple[str, ...]) -> list[str]:
    """Write the nightly's embedding cache for ``names`` (frozen encoders only: their version is
    known before any training) with random unit vectors, so the nightly finds every article cached."""
    from encoders.base import TrainingCorpus
    from encoders.registry import EncoderUnavailable, build_encoder
    from recall import sqlstore
    from recall.db import make_engine, make_sessionmaker
    from recall.index import normalise
    from recall.settings import Settings

    settings = Settings(_env_file=None, **{k.removeprefix("RECALL_").lower(): v
                                           for k, v in env.items() if k.startswith("RECALL_")})
    engine = make_engine(settings.sqlalchemy_url)
    with make_sessionmaker(engine)() as session:
        articles = list(sqlstore.iter_articles(session))
    engine.dispose()
    with contextlib.suppress(ImportError, AttributeError):  # no "Loading weights" bar in the tables
        import transformers
        transformers.utils.logging.disable_progress_bar()
    rng, filled = np.random.default_rng(7), []
    for name in names:
        try:
            encoder = build_encoder(name, settings).fit(TrainingCorpus())  # frozen: fit loads the model
        except EncoderUnavailable:
            continue
        path = settings.var_dir / "cache" / "embeddings" / encoder.name / f"{encoder.version}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        vectors = normalise(rng.standard_normal((len(articles), encoder.dim)).astype(np.float32))
        np.savez(path, ids=np.array([a.id for a in articles]),
                 hashes=np.array([sqlstore.content_hash(a) for a in articles]), vectors=vectors)
        filled.append(f"{name} ({encoder.dim}-d)")
    return filled


def timed_nightly(procs: Processes, logs: Path, var: Path, n: int) -> tuple[float, str]:
    start = time.perf_counter()
    procs.run([RECALL, "nightly"], logs / f"nightly-{n}.log", TIMEOUTS["nightly"])
    return time.perf_counter() - start, (var / "builds" / "ACTIVE").read_text().strip()


def clone_build(var: Path, version: str) -> str:
    """A second valid build, for the publish-under-load run: the first copied under a new version
    (the workers load it as they would a new nightly's: same files, another name)."""
    clone = f"{version}-clone"
    builds = var / "builds"
    shutil.copytree(builds / version, builds / clone)
    manifest = json.loads((builds / clone / "manifest.json").read_text())
    (builds / clone / "manifest.json").write_text(json.dumps({**manifest, "version": clone}, indent=2))
    return clone


def slowest_steps(db: str, version: str) -> list[tuple[str, float]]:
    """Where the nightly spent its time (``job_runs``): tells which encoder is the bottleneck."""
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db}", autocommit=True) as conn:
        rows = conn.execute("SELECT step, (metrics->>'seconds')::float AS s FROM job_runs WHERE job = 'nightly' "
                            "AND run_id = %s ORDER BY s DESC NULLS LAST LIMIT 6", (version,)).fetchall()
    return [(step, round(s or 0.0, 1)) for step, s in rows]


def write_wrk_script(db: str, directory: Path) -> Path:
    """The users the world knows (SQL ``users``), one per line, and the Lua script reading them."""
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={db}", autocommit=True) as conn:
        users = [row[0] for row in conn.execute("SELECT id FROM users ORDER BY id")]
    (directory / "users.txt").write_text("\n".join(users) + "\n")
    script = directory / "recall.lua"
    script.write_text(WRK_LUA.replace("@USERS@", str(directory / "users.txt")).replace("@SLOW_US@", str(SLOW_US)))
    return script


def serve(procs: Processes, logs: Path) -> tuple[subprocess.Popen, str]:
    """``recall serve --workers 2`` on a spare port; returns once ``/readyz`` answers 200."""
    port = spare_port()
    proc = procs.start([RECALL, "serve", "--workers", "2", "--port", str(port)], logs / "server.log")
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + TIMEOUTS["ready"]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"recall serve exited ({proc.returncode}); see {logs / 'server.log'}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
                if response.status == 200:
                    return proc, base
        time.sleep(0.5)
    raise RuntimeError(f"/readyz not 200 within {TIMEOUTS['ready']} s")


def wrk(base: str, key: str, script: Path, connections: int, seconds: int, mode: str = "recall") -> Load:
    threads = 1 if connections == 1 else 2
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", WRK_TIMEOUT,
           "-H", f"X-API-Key: {key}", "-s", str(script), f"{base}/", "--", mode]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH line:\n{out}")
    v = {k: int(x) for k, x in re.findall(r"(\w+)=(\d+)", line)}
    elapsed = v["duration_us"] / 1e6
    return Load(connections, v["requests"], round(elapsed, 2), round(v["requests"] / elapsed, 1),
                v["p50"] / 1000, v["p90"] / 1000, v["p99"] / 1000,
                v["connect"] + v["read"] + v["write"] + v["timeout"], v["slow"], v["status"],
                round(os.getloadavg()[0], 2))


class Counters:
    """Server-side counters (Redis socket reads, SQL commits of the bench database, recall requests
    in the server's log) and their background rate with the server up and idle, so that a load
    level's share can be isolated. The denominator is what the server served, not what wrk saw
    complete: requests still in flight when wrk stops (or timed out by it) did their reads too."""

    def __init__(self, client: redis.Redis, db: str, log: Path):
        self.client, self.db, self.log = client, db, log
        self.pg = psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True)
        self.idle_rate = (0.0, 0.0)

    def sample(self) -> tuple[float, int, int, int]:
        reads = int(self.client.info("stats")["total_reads_processed"])
        commits = self.pg.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
                                  (self.db,)).fetchone()[0]
        return time.monotonic(), reads, int(commits), self.log.stat().st_size

    def served_between(self, start: int, end: int) -> int:
        with self.log.open("rb") as f:
            f.seek(start)
            return len(re.findall(rb'"path": ?"/v1/recall/', f.read(end - start)))

    def measure_idle(self, seconds: float) -> None:
        t0, r0, c0, _ = self.sample()
        time.sleep(seconds + SETTLE_SECONDS)
        t1, r1, c1, _ = self.sample()
        self.idle_rate = ((r1 - r0) / (t1 - t0), (c1 - c0) / (t1 - t0))

    def per_request(self, run) -> Load:
        """Run ``run()`` (a wrk level) and attach its Redis reads and SQL commits per request."""
        t0, r0, c0, o0 = self.sample()
        load = run()
        time.sleep(SETTLE_SECONDS)
        t1, r1, c1, o1 = self.sample()
        load.served = self.served_between(o0, o1)
        if load.served:
            load.redis_round_trips = round((r1 - r0 - self.idle_rate[0] * (t1 - t0)) / load.served, 2)
            load.sql_transactions = round((c1 - c0 - self.idle_rate[1] * (t1 - t0)) / load.served, 3)
        return load

    def close(self) -> None:
        self.pg.close()


def proc_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def uvicorn_workers(server_pid: int) -> list[int]:
    """The children of ``recall serve`` that multiprocessing spawned (not its resource tracker)."""
    workers = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, KeyError):
            if entry.name.isdigit() and int(proc_status(int(entry.name))["PPid"]) == server_pid \
                    and b"spawn_main" in (entry / "cmdline").read_bytes():
                workers.append(int(entry.name))
    return workers


def worker_rss_mb(workers: list[int]) -> list[float]:
    return sorted(round(int(proc_status(pid)["VmRSS"].split()[0]) / 1024, 1) for pid in workers)


def server_log_summary(log: Path) -> tuple[dict[str, int], list[tuple[str, int]]]:
    """Statuses of the recall requests as the server logged them, and its distinct errors: what
    wrk's error counts alone cannot say (a 500 and a closed socket look alike to it)."""
    statuses, errors = Counter(), Counter()
    for line in log.open(errors="replace"):
        with contextlib.suppress(ValueError, AttributeError):
            entry = json.loads(line)
            if str(entry.get("path", "")).startswith("/v1/recall/"):
                statuses[str(entry.get("status"))] += 1
            if entry.get("level") in ("ERROR", "CRITICAL"):
                last = (entry.get("exc") or "").strip().splitlines()[-1:] or [""]
                errors[f"{entry.get('logger')}: {entry.get('msg')} {last[0]}"[:200]] += 1
    return dict(statuses), errors.most_common(3)


def publish_under_load(base: str, key: str, script: Path, var: Path, versions: list[str],
                       seconds: int) -> tuple[Load, str]:
    """16 connections for 2 x ``seconds``; halfway, ACTIVE is replaced atomically by the other build."""
    active = (var / "builds" / "ACTIVE").read_text().strip()
    target = next(v for v in versions if v != active)
    result: list[Load] = []
    runner = threading.Thread(target=lambda: result.append(wrk(base, key, script, 16, 2 * seconds)), daemon=True)
    runner.start()
    time.sleep(seconds)
    tmp = var / "builds" / f".ACTIVE.bench.{os.getpid()}"
    tmp.write_text(target)
    os.replace(tmp, var / "builds" / "ACTIVE")
    runner.join(timeout=2 * seconds + 90)
    if not result:
        raise RuntimeError("the publish-under-load wrk run did not finish")
    reloads = (var / "logs" / "server.log").read_text(errors="replace").count(f"serving build {target}")
    return result[0], f"{active} -> {target}, {reloads} of 2 workers logged the reload"


def build_world(procs: Processes, logs: Path, var: Path, db: str, result: SizeResult) -> tuple[list[str], str]:
    """Ingest, (prefill,) nightly twice, an API key: the two build versions and the key."""
    procs.run([RECALL, "ingest", "synthetic", "--articles", str(result.articles), "--users", str(result.users),
               "--days", "7", "--seed", "7"], logs / "ingest.log", TIMEOUTS["ingest"])
    if result.articles >= RANDOM_VECTORS_FROM:
        result.random_vectors = prefill_random_embeddings(procs.env, RANDOM_VECTOR_ENCODERS)
    print(f"  nightly (random vectors: {result.random_vectors or 'none'}; training: {result.training_note})",
          flush=True)
    result.nightly_seconds, first = timed_nightly(procs, logs, var, 1)
    result.slowest_steps = slowest_steps(db, first)
    if result.articles >= CLONE_BUILD_FROM:
        second = clone_build(var, first)  # a second nightly at this size would double the bench's time
        result.second_nightly_seconds = 0.0
    else:
        result.second_nightly_seconds, second = timed_nightly(procs, logs, var, 2)
    print(f"  nightly {result.nightly_seconds:.0f} s (again: {result.second_nightly_seconds:.0f} s)", flush=True)
    key = procs.run([RECALL, "admin", "create-key", "bench"], logs / "key.log", TIMEOUTS["key"]).split()[-1]
    return [first, second], key


def measure_server(procs: Processes, logs: Path, var: Path, counters: Counters, script: Path, key: str,
                   versions: list[str], duration: int, result: SizeResult) -> None:
    """Serve, warm up (untimed), measure the idle background, /healthz, each level, RSS, publish."""
    server, base = serve(procs, logs)
    workers = uvicorn_workers(server.pid)
    result.http_stack = ", ".join(sorted({http_stack(pid) for pid in workers}))
    wrk(base, key, script, 4, WARMUP_SECONDS)  # the first requests of each worker warm its caches
    counters.measure_idle(duration)
    result.load_average.append(round(os.getloadavg()[0], 2))
    result.healthz = wrk(base, key, script, 16, duration, mode="healthz")
    for connections in LEVELS:
        print(f"  {connections} connections ...", flush=True)
        result.levels.append(counters.per_request(lambda c=connections: wrk(base, key, script, c, duration)))
    result.load_average.append(round(os.getloadavg()[0], 2))
    result.rss_mb = worker_rss_mb(workers)
    print("  publish under load ...", flush=True)
    result.publish, result.publish_flip = publish_under_load(base, key, script, var, versions, duration)
    result.recall_statuses, result.server_errors = server_log_summary(logs / "server.log")


def bench_size(size: int, duration: int) -> SizeResult:
    """Everything for one world size; whatever it started is stopped and removed on any exit."""
    light = LIGHT_TRAINING if size >= LIGHT_TRAINING_FROM else {}
    result = SizeResult(size, max(size // 5, 1), [], ", ".join(f"{k}={v}" for k, v in light.items()) or "defaults")
    result.load_average.append(round(os.getloadavg()[0], 2))  # before anything: the others' load
    print(f"{size} articles, {result.users} users: ingest ...", flush=True)
    with contextlib.ExitStack() as stack:  # unwinds in reverse: processes, database, directory
        var = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-serving-{size}-")))
        logs = var / "logs"
        logs.mkdir()
        db, url = scratch_database(stack, size)
        procs = Processes(dict(os.environ), var)
        stack.callback(procs.stop_all)
        client = start_redis(procs, logs)
        procs.env.update(RECALL_VAR_DIR=str(var), RECALL_DATABASE_URL=url,
                         RECALL_REDIS_URL=f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0",
                         RECALL_RELOAD_INTERVAL_SECONDS=str(RELOAD_SECONDS), **light)
        versions, key = build_world(procs, logs, var, db, result)
        counters = Counters(client, db, logs / "server.log")
        stack.callback(counters.close)
        measure_server(procs, logs, var, counters, write_wrk_script(db, var), key, versions, duration, result)
    return result


def size_table(r: SizeResult) -> Table:
    table = Table("conns", "req/s", "p50 ms", "p90 ms", "p99 ms", "sock err", f"> {SLOW_US // 1000} ms", "non-2xx",
                  "served", "Redis RT/req", "SQL tx/req", "load 1m",
                  title=f"GET /v1/recall/{{random user}}?n=500: {r.articles} articles, {r.users} users")
    for load in r.levels:
        table.add_row(str(load.connections), f"{load.rps:,.0f}", f"{load.p50_ms:.2f}", f"{load.p90_ms:.2f}",
                      f"{load.p99_ms:.2f}", str(load.socket_errors), str(load.timeouts), str(load.non_2xx),
                      str(load.served), f"{load.redis_round_trips}", f"{load.sql_transactions}", f"{load.load_1min}")
    return table


def size_lines(r: SizeResult) -> list[str]:
    h, p = r.healthz, r.publish
    return [
        f"server: recall serve --workers 2, {len(r.rss_mb)} workers on {r.http_stack}; 1-min load average at start / "
        f"before the levels / after them: {r.load_average}",
        f"/healthz ceiling (16 conns): {h.rps:,.0f} req/s, p50 {h.p50_ms:.2f} ms, p99 {h.p99_ms:.2f} ms, "
        f"errors {h.socket_errors + h.timeouts + h.non_2xx}",
        "Redis RT/req: total_reads_processed delta minus the idle background, per request the server logged "
        "(served); SQL tx/req: pg_stat_database.xact_commit likewise (transactions, not queries)",
        f"worker RSS after load: max {max(r.rss_mb, default=0):.0f} MB, sum {sum(r.rss_mb):.0f} MB ({r.rss_mb})",
        f"nightly: {r.nightly_seconds:.0f} s (second run, reusing: {r.second_nightly_seconds:.0f} s); "
        f"slowest steps {r.slowest_steps}",
        f"random vectors: {', '.join(r.random_vectors) or 'none (every encoder real)'}; training: {r.training_note}",
        f"publish under load (16 conns, {p.seconds:.0f} s, flip halfway; {r.publish_flip}): p50 {p.p50_ms:.2f} ms, "
        f"p99 {p.p99_ms:.2f} ms, {p.rps:,.0f} req/s, errors: sock {p.socket_errors}, > 2 s {p.timeouts}, "
        f"non-2xx {p.non_2xx}",
        f"recall statuses in the server log (warm-up and publish run included): {r.recall_statuses}",
        *(f"server error x{n}: {message}" for message, n in r.server_errors),
    ]


def markdown(results: list[SizeResult]) -> str:
    rows = ["| articles | conns | req/s | p50 ms | p90 ms | p99 ms | errors or > 2 s | Redis RT/req |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        rows += [f"| {r.articles:,} | {x.connections} | {x.rps:,.0f} | {x.p50_ms:.2f} | {x.p90_ms:.2f} | "
                 f"{x.p99_ms:.2f} | {x.socket_errors + x.timeouts + x.non_2xx} | {x.redis_round_trips} |"
                 for x in r.levels]
    rows += ["", "| articles | /healthz req/s | worker RSS max / sum MB | nightly s | p99 publishing ms "
                 "| random vectors |", "| ---: | ---: | ---: | ---: | ---: | --- |"]
    rows += [f"| {r.articles:,} | {r.healthz.rps:,.0f} | {max(r.rss_mb, default=0):.0f} / {sum(r.rss_mb):.0f} | "
             f"{r.nightly_seconds:.0f} | {r.publish.p99_ms:.1f} | {', '.join(r.random_vectors) or 'none'} |"
             for r in results]
    stacks = ", ".join(sorted({r.http_stack for r in results}))
    return "\n".join(rows) + f"\n\nuvicorn {stacks}, `--workers 2`, wrk keep-alive, a random known user per request."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2000,20000,100000", help="comma-separated article counts")
    parser.add_argument("--duration", type=int, default=10, help="seconds per load level")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally blocks clean up
    console = Console(width=None if sys.stdout.isatty() else 140)
    results, started = [], time.perf_counter()
    for size in (int(s) for s in args.sizes.split(",") if s.strip()):
        results.append(bench_size(size, args.duration))
        console.print(size_table(results[-1]))
        for line in size_lines(results[-1]):
            console.print(f"  {line}", highlight=False, markup=False)
        if args.json:  # after each size: a later size failing keeps what was measured
            args.json.write_text(json.dumps({"duration": args.duration, "levels": LEVELS,
                                             "results": [asdict(r) for r in results]}, indent=2))
    print("\nREADME table:\n\n" + markdown(results))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
