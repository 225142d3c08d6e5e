"""The nightly rebuild: read SQL, train encoders, embed articles, build one index per route,
write the catalog, build user vectors and clusters (``jobs/users.py``), verify the build, write
its own Redis keys, publish it atomically, then refresh Redis from SQL.

One run at a time: a run holds the nightly lock (``jobs.runs.RunLock``: a PostgreSQL advisory
lock, or a lock file in the var dir with SQLite) from its first step to its last, and a second
run started meanwhile stops at once with ``RunLocked`` ("another nightly run holds the lock
since ..."), having changed nothing. Holding the lock, a run knows no other is alive, so it
marks the ``job_runs`` rows of runs that died while ``running`` as failed, and sweeps their
staging directories and staged hot counters.

Every step runs as Ray work (``jobs/raywork.py``: a local Ray of ``settings.threads`` CPUs, or
the cluster at ``settings.ray_address``). The driver keeps what must happen in one place (the
lock, ``job_runs``, Redis, the build's manifest and its publication, the embedding cache file);
tasks read SQL in parts (``load_corpus``), train each model whole into the staging build
(``train_encoder``; the driver loads it from there, as it loads a reused one) and embed what the
cache lacks (``jobs/embedding.py``). Each step's ``nodes`` metric names the Ray nodes that ran it.

Every step is recorded in ``job_runs``. Until ``publish`` nothing the API reads has changed:
a run that fails removes its own staging directory, a killed one leaves it to the next run, and
the previous build keeps serving. ``publish`` first checks the staged build against its manifest
(``BuildStore.verify``) and that it loads as a serving process would load it; a build that fails
is set aside as ``.rejected-{version}`` and the run fails.

What the build derives in Redis (user vectors, memberships, cluster profiles and lists) lives
under its version (``recall/buildkeys.py``) and is written, complete, before ``ACTIVE`` flips:
publishing is that one flip, and no worker ever reads a vector of another build's space. A run
that fails after writing them drops them; the keys of a build go when its folder is pruned, so
every build a fallback or a rollback can reach keeps its keys. The rest of the Redis refresh is
idempotent (sets, never increments) and a kill cannot leave it half done where it matters: hot
counters are recounted under staging keys and swapped over the live ones in one MULTI/EXEC.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from itertools import islice, zip_longest
from pathlib import Path

import faiss
import ray
import redis
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from sqlalchemy import Engine

from encoders.base import NothingToLearn, TrainingCorpus
from encoders.registry import ENCODERS, EncoderUnavailable, build_encoder, load_encoder
from jobs.artefacts import EmbeddingCache, corpus_fingerprint, params_key, training_key
from jobs.embedding import ArticleEmbedding
from jobs.raywork import RayJobRecorder, map_tasks, ray_runtime, run_task, task_cpus
from jobs.runs import JobRecorder, LockLost, RunLock, mark_abandoned, utcnow
from jobs.shards import compute_neighbours
from jobs.users import UserVectors, build_users, encode_users_partitioned, publish_users
from recall import buildkeys, sqlstore
from recall.catalog import ItemCatalog, ItemMeta
from recall.db import make_engine, make_sessionmaker
from recall.coclicks import CoClickCounter
from recall.domain import EventRecord, to_unix
from recall.index import BuildStore, VectorIndex
from recall.online import OnlineStore
from recall.rebuild import mark_whole, replayed_through
from recall.routeconfig import load_route_configs
from recall.routes import ROUTES, default_configs
from recall.serving import ServingState
from recall.settings import Settings


@dataclass
class NightlyResult:
    run_id: str
    version: str
    cutoff: datetime
    counts: dict[str, int]


def progress(console: Console | None) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=False,
                    disable=console is None)


def vector_routes() -> dict[str, str]:
    """route -> encoder, for every registered route whose encoder the registry can build."""
    return {name: spec.encoder for name, spec in ROUTES.items() if spec.encoder in ENCODERS}


def read_corpus_part(url: str, cutoff: datetime, ids: sqlstore.KeyRange | None,
                     users: sqlstore.KeyRange | None) -> TrainingCorpus:
    """A Ray task of the load step, on its own connection: the articles of one id range live
    before the cutoff, and the click sequences before it of one user range (None: none)."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            articles = {} if ids is None else {
                a.id: a for a in sqlstore.iter_articles(session, ids=ids)
                if a.published_at is None or a.published_at < cutoff
            }
            clicks = {} if users is None else sqlstore.click_sequences(session, before=cutoff, users=users)
    finally:
        engine.dispose()
    return TrainingCorpus(articles=articles,
                          click_sequences={user: [aid for aid, _ in c] for user, c in clicks.items()},
                          click_times={user: [to_unix(ts) for _, ts in c] for user, c in clicks.items()})


def load_corpus(settings: Settings, engine: Engine, cutoff: datetime) -> tuple[TrainingCorpus, list[str]]:
    """Articles live before the cutoff, and users' click sequences before it, read by Ray tasks
    in parts (``read_corpus_part``: task n reads article range n and user range n), and the
    nodes that read them. No task holds more than a part: ``nightly_partition_articles``
    articles and the clicks of ``nightly_partition_users`` users. Parts are merged in key
    order, so the corpus is the one a single read makes."""
    with make_sessionmaker(engine)() as session:
        article_ranges = sqlstore.key_ranges(session, sqlstore.ARTICLES.c.id, settings.nightly_partition_articles)
        user_ranges = sqlstore.key_ranges(session, sqlstore.USERS.c.id, settings.nightly_partition_users)
    url = engine.url.render_as_string(hide_password=False)
    parts, nodes = map_tasks(read_corpus_part, [(url, cutoff, ids, users)
                                                for ids, users in zip_longest(article_ranges, user_ranges)])
    corpus = TrainingCorpus()
    for part in parts:
        corpus.articles.update(part.articles)
        corpus.click_sequences.update(part.click_sequences)
        corpus.click_times.update(part.click_times)
    return corpus, nodes


def train_encoder(name: str, settings: Settings, corpus: TrainingCorpus, model_dir: Path,
                  warm_from: Path | None = None) -> dict:
    """The Ray task of a training: fit encoder ``name`` on the corpus whole, from the model in
    ``warm_from`` for ``settings.warm_epochs`` epochs when given (``warm_start``), and save it
    into ``model_dir`` (the driver loads it from there); returns its training metrics."""
    encoder = build_encoder(name, settings)
    if warm_from is None:
        encoder.fit(corpus)
    else:
        encoder.warm_fit(corpus, load_encoder(name, warm_from), settings.warm_epochs)
    encoder.save(model_dir)
    return getattr(encoder, "training_metrics_", {})  # the epochs run; the graph's size (graph2vec, eges)


def warm_start(settings: Settings, encoder, previous: Path | None, lineage: dict | None,
               cutoff: datetime) -> Path | None:
    """The previous build's model folder to train ``encoder`` from, or None to train it cold.

    Warm when the encoder can (``warm_fit``), ``settings.warm_epochs`` is not 0 and fewer than
    its cold epochs (eges trains one epoch cold: a warm start would save nothing, and cost
    purity on mind-sample, ``bench/warm.py``), and the previous model (``lineage``: its entry in
    the previous manifest's ``model_lineage``) has today's ``params_key`` and descends from a
    cold training at most ``cold_every_days`` before this cutoff: a chain of warm builds
    retrains cold once a week by default.
    """
    if previous is None or lineage is None or not hasattr(encoder, "warm_fit") \
            or not 0 < settings.warm_epochs < encoder.epochs:
        return None
    folder = previous / "models" / encoder.name
    age = cutoff - datetime.fromisoformat(lineage["cold_cutoff"])
    if lineage["params"] != params_key(encoder) or not folder.exists() \
            or age > timedelta(days=settings.cold_every_days):
        return None
    return folder


def read_manifest(build_dir: Path) -> dict:
    return json.loads((build_dir / "manifest.json").read_text())


def build_catalog(corpus: TrainingCorpus) -> ItemCatalog:
    return ItemCatalog({aid: ItemMeta.of(a) for aid, a in corpus.articles.items()})


# Counters a replay counts afresh (adding to the live ones would count events twice): hot
# counters and item CF's co-click lists.
RECOUNTED = ("hot", "icf")


class StagedHotCounters(OnlineStore):
    """``online``, except that hot counters and co-click lists go to one run's staging keys
    (``{prefix}nightly:{run}:hot:{kind}:{bucket}``, ``{prefix}nightly:{run}:icf:...``). Hot
    counters are recounted through the very code the API records events with
    (``record_events``), co-click lists by ``CoClickCounter``, which computes what the API's
    script would."""

    def __init__(self, online: OnlineStore, run_id: str):
        super().__init__(online.r, online.s)
        self.stage = f"{online.p}nightly:{run_id}:"

    def k(self, *parts: object) -> str:
        if parts[:1] and parts[0] in RECOUNTED:
            return self.stage + ":".join(str(p) for p in parts)
        return super().k(*parts)


def staged_hot_pattern(online: OnlineStore) -> str:
    return f"{online.p}nightly:*"


def delete_keys(client: redis.Redis, pattern: str) -> int:
    keys = list(client.scan_iter(match=pattern, count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start:start + 1000])
    return len(keys)


def sweep_staged_hot(online: OnlineStore) -> int:
    """Delete staged keys dead runs left (counters would expire anyway). Holding the lock only."""
    return delete_keys(online.r, staged_hot_pattern(online))


def swap_hot_buckets(online: OnlineStore, staged: StagedHotCounters, first: int, last: int) -> int:
    """Make the staged counters of buckets ``first..last`` the live ones in one MULTI/EXEC:
    RENAME each staged key over its live one (its TTL goes with it), DEL a live key that has no
    staged one. Readers see the old counts or the new ones, never a cleared or half-replayed
    window. Returns how many counters were swapped in."""
    keys = [(staged.k("hot", kind, b), online.k("hot", kind, b)) for kind in "ci" for b in range(first, last + 1)]
    check = online.r.pipeline(transaction=False)
    for stage_key, _ in keys:
        check.exists(stage_key)
    exists = check.execute()
    swap = online.r.pipeline(transaction=True)
    for (stage_key, live_key), there in zip(keys, exists):
        if there:
            swap.rename(stage_key, live_key)
        else:
            swap.delete(live_key)
    swap.execute()
    return sum(map(bool, exists))


def swap_co_clicks(online: OnlineStore, staged: StagedHotCounters) -> int:
    """Make the staged co-click lists (and the time their scores grow from) the live ones in one
    MULTI/EXEC, deleting live lists the replay did not make. Co-clicks recorded live after the
    cutoff are replaced too: they come back with the next replay. Returns the lists swapped in."""
    staged_prefix, live_prefix = staged.k("icf", ""), online.k("icf", "")
    staged_keys = [key.decode() for key in online.r.scan_iter(match=staged_prefix + "*", count=1000)]
    renamed = {live_prefix + key[len(staged_prefix):] for key in staged_keys}
    stale = [key for key in (k.decode() for k in online.r.scan_iter(match=live_prefix + "*", count=1000))
             if key not in renamed]
    swap = online.r.pipeline(transaction=True)
    for start in range(0, len(stale), 1000):
        swap.delete(*stale[start:start + 1000])
    for key in staged_keys:
        swap.rename(key, live_prefix + key[len(staged_prefix):])
    swap.execute()
    return len(staged_keys)


HISTORY, HOT = frozenset({"clicks", "seen"}), frozenset({"hot"})


def replay_events(sessions, since: datetime, cutoff: datetime,
                  writers: list[Callable[[list[EventRecord]], object]], **which) -> int:
    """Replay the events in [since, cutoff) from SQL (``which``: ``iter_events``' filters), read
    once, through each writer in batches; returns how many."""
    replayed = 0
    with sessions() as session:
        events = sqlstore.iter_events(session, after=since, before=cutoff, **which)
        while batch := list(islice(events, 10_000)):
            for write in writers:
                write(batch)
            replayed += len(batch)
    return replayed


def refresh_online(online: OnlineStore, sessions, corpus: TrainingCorpus, cutoff: datetime,
                   settings: Settings, run_id: str | None = None) -> dict[str, int | str | float]:
    """Rebuild Redis from SQL as of the cutoff: fresh list, recent clicks, seen sets, hot
    counters, co-click lists; then mark it whole, with what it now holds (``mark_whole``).

    This is also how events that reached SQL without the API (ingested files) or while Redis
    was down find their way in. Each part is atomic or idempotent, so a run killed in the middle
    leaves Redis serving: the fresh list is swapped whole, clicks and seen sets are sorted-set
    adds (written into the live keys), and the hot counters and co-click lists are recounted
    under the run's staging keys and swapped in with one MULTI/EXEC each (``swap_hot_buckets``,
    ``swap_co_clicks``).

    Recent clicks and seen sets take the events of the replay horizon, or, when the marker says
    what Redis already holds, only those since (the API wrote the rest as they came); then the
    hot counters are recounted over the horizon, or the two hot windows live counters live for,
    and the co-click lists over the horizon's clicks.
    """
    cutoff_ts = to_unix(cutoff)
    fresh = [
        (aid, to_unix(a.published_at) or 0.0) for aid, a in corpus.articles.items()
        if a.status == "active" and (a.expires_at is None or a.expires_at > cutoff)
    ]
    online.replace_fresh(fresh)
    online.r.delete(online.k("hidden"))  # hidden flags now live in the build's catalog

    with sessions() as session:
        last_event = sqlstore.last_event_id(session)  # read first: what is stored later comes next time
    since = cutoff - timedelta(seconds=settings.replay_horizon_seconds)
    held = replayed_through(online)
    if held is not None and held[0] < since:
        held = None  # Redis holds too little of the horizon
    # From empty, every bucket of the horizon (a longer window than the live counters' lifetime
    # reads them until they expire); over a whole Redis, the two hot windows live counters keep.
    # From a bucket's start: the swap replaces whole buckets.
    hot_from = since if held is None else cutoff - timedelta(seconds=settings.hot_window_hours * 3600 * 2)
    hot_since = cutoff - timedelta(seconds=cutoff_ts - online.bucket(to_unix(hot_from)) * settings.hot_bucket_seconds)
    staged = StagedHotCounters(online, run_id or uuid.uuid4().hex)
    history, hot = partial(online.record_events, effects=HISTORY), partial(staged.record_events, effects=HOT)
    co_clicks = CoClickCounter(staged)  # pairs clicks from the recent clicks it replays from empty
    # (name, first event time, writers, filters). From empty, history and hot counters read the
    # same events once.
    passes = [("history", since, [history], {"news_since": held}),
              ("hot", hot_since, [hot], {}),
              ("co_click", since, [co_clicks.add], {"kind": "click"})]
    if held is None:
        passes[:2] = [("history_hot", since, [history, hot], {})]
    counts: dict[str, int | str | float] = {"replay": "full" if held is None else "since " + held[0].isoformat()}
    for name, first, writers, which in passes:
        started = time.perf_counter()
        counts[f"{name}_events"] = replay_events(sessions, first, cutoff, writers, **which)
        if name == "co_click":
            co_clicks.write()
        counts[f"{name}_seconds"] = round(time.perf_counter() - started, 1)
    counts.update(hot_counters=swap_hot_buckets(online, staged, online.bucket(to_unix(hot_since)),
                                                online.bucket(cutoff_ts)),
                  co_click_lists=swap_co_clicks(online, staged), fresh=len(fresh))
    mark_whole(online, "nightly", replayed=(cutoff, last_event))  # serving processes know Redis is whole
    return counts


def new_version() -> str:
    """A build version (and run id): it sorts by time, which pruning and fallback rely on."""
    return f"{utcnow():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:4]}"


def nightly_lock(settings: Settings, engine: Engine, run_id: str | None = None) -> RunLock:
    return RunLock.of(engine, settings.var_dir, "nightly", run_id or new_version())


def previous_build(store: BuildStore) -> Path | None:
    """The build this one continues (models to reuse, cluster labels to match): the active one,
    or when ACTIVE names a missing or broken build, the newest published build that verifies."""
    active = store.active_version()
    for version in [active, *reversed(store.versions())]:
        if version and not store.verify(store.root / version):
            return store.root / version
    return None


def verify_staged(settings: Settings, store: BuildStore, staging: Path) -> tuple[list[str], ServingState | None]:
    """What is wrong with a staged build: against its manifest, then loading it the way a
    serving process will (catalog, indexes, user models, encoders warmed). Empty when fine, with
    the loaded build (it computes the build's Redis keys of users who clicked meanwhile)."""
    problems = store.verify(staging)
    if problems:
        return problems, None
    threads = faiss.omp_get_max_threads()  # loading sets the serving processes' one thread
    try:
        return [], ServingState.load(settings, staging, fallback=False)
    except BuildStore.Invalid as exc:
        return [str(exc)], None
    finally:
        faiss.omp_set_num_threads(threads)


def run_nightly(settings: Settings, engine: Engine, online: OnlineStore, *,
                cutoff: datetime | None = None, console: Console | None = None,
                lock: RunLock | None = None) -> NightlyResult:
    """One full rebuild. ``cutoff`` (default: now) is the moment the build knows data up to.
    A build of now also takes into its Redis keys the clicks that arrive while it runs (users
    who clicked meanwhile, CF lists up to the moment it publishes); one of a given moment (the
    evaluation's split) knows nothing after it, whatever SQL holds.

    The run holds the nightly lock throughout: ``lock`` when the caller already holds it (the
    CLI takes it before migrating the schema; its run id becomes the version), else it takes
    it here. Another run holding it raises ``RunLocked`` before anything is touched.
    """
    live = cutoff is None
    cutoff = cutoff or utcnow()
    held = nullcontext(lock) if lock is not None else nightly_lock(settings, engine)
    with held as lock, ray_runtime(settings):
        return _run(settings, engine, online, lock, cutoff, live, console)


def _run(settings: Settings, engine: Engine, online: OnlineStore, lock: RunLock, cutoff: datetime,
         live: bool, console: Console | None) -> NightlyResult:
    sessions = make_sessionmaker(engine)
    store = BuildStore(settings.builds_dir)
    version = lock.run_id  # sorts by time: pruning relies on it
    run = RayJobRecorder(sessions, "nightly", run_id=version, version=version)
    counts: dict[str, int] = {}
    # We hold the lock, so no other run is alive: what is still "running" or staged is a dead run's.
    abandoned = mark_abandoned(sessions, "nightly", version)
    swept = store.sweep()
    swept_keys = sweep_staged_hot(online)
    swept_builds = buildkeys.drop_unless(online, store.versions())  # keys of dead runs' builds

    with run.step("load") as m:
        corpus, m["nodes"] = load_corpus(settings, engine, cutoff)
        m.update(articles=len(corpus.articles), users=len(corpus.click_sequences),
                 clicks=sum(map(len, corpus.click_sequences.values())), cutoff=cutoff.isoformat())
        if abandoned or swept or swept_keys or swept_builds:
            m.update(abandoned_runs=abandoned, swept=swept, swept_hot_keys=swept_keys,
                     swept_build_keys=swept_builds)
        counts.update(articles=len(corpus.articles), users=len(corpus.click_sequences))

    staging = store.start(version)
    try:
        manifest, users = _build(settings, sessions, online, store, run, corpus, cutoff, staging, counts, console)
        with run.step("publish") as m:
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
            problems, staged = verify_staged(settings, store, staging)
            if problems:
                rejected = store.reject(staging, problems)
                m.update(rejected=rejected.name, problems=problems)
                raise BuildStore.Invalid(f"build {version} does not match its manifest or does not load; "
                                         f"not published (kept as {rejected.name}): " + "; ".join(problems))
            # The build's own keys, complete before ACTIVE names it: publishing is the flip alone.
            m.update(publish_users(online, users, staged, sessions, cutoff, manifest["built_at"], catch_up=live))
            if not lock.still_held():
                raise LockLost(f"build {version} not published: this run no longer holds the nightly lock")
            store.publish(staging)
            m.update(version=version, verified=True)
    except BaseException:
        store.discard(staging)  # our own staging only (gone already when published or rejected)
        if version not in store.versions():
            with suppress(redis.RedisError):  # else the next run's sweep drops them
                buildkeys.drop(online, version)
        raise

    with run.step("online") as m:
        m.update(refresh_online(online, sessions, corpus, cutoff, settings, run_id=version))
        # Pruned builds' keys go with their folders; every build still on disk keeps its own.
        m.update(dropped_build_keys=buildkeys.drop_unless(online, store.versions()))
    return NightlyResult(version, version, cutoff, counts)


def _build(settings: Settings, sessions, online: OnlineStore, store: BuildStore, run: JobRecorder,
           corpus: TrainingCorpus, cutoff: datetime, staging: Path, counts: dict[str, int],
           console: Console | None):
    """Train, embed, index, catalog and user models into ``staging``; returns the build's
    manifest (written by the publish step) and what the online step publishes of the users."""
    articles = list(corpus.articles.values())
    previous = previous_build(store)
    previous_manifest = read_manifest(previous) if previous else {}
    previous_inputs = previous_manifest.get("training_inputs", {})
    previous_lineage = previous_manifest.get("model_lineage", {})
    corpus_digest = corpus_fingerprint(corpus)
    cache = EmbeddingCache(settings.var_dir / "cache" / "embeddings")
    corpus_ref = ray.put(corpus)  # once for every training task
    manifest_routes, manifest_encoders, training_inputs = {}, {}, {}
    lineage: dict[str, dict] = {}  # encoder -> its params_key and the cutoff of its last cold training
    indexes: dict[str, VectorIndex] = {}
    encoders: dict[str, object] = {}
    user_vectors: dict[str, UserVectors] = {}  # by kind (the DSSM tower's)
    wanted = None if settings.build_encoders == "all" else set(settings.build_encoders.split(","))
    with sessions() as session:
        configs = {**default_configs(), **load_route_configs(session)}
    searched = {spec.searches for spec in ROUTES.values() if spec.searches}  # HNSW when large
    with progress(console) as bar:
        for route, encoder_name in vector_routes().items():
            if wanted is not None and encoder_name not in wanted:
                continue
            model_dir = staging / "models" / encoder_name
            with run.step(f"train:{encoder_name}") as m:
                try:
                    encoder = build_encoder(encoder_name, settings)
                except EncoderUnavailable as exc:
                    m["skipped"] = str(exc)
                    continue
                # Of the encoder as configured: a fitted one may have settled an "auto" parameter.
                key, configured = training_key(encoder, corpus_digest), params_key(encoder)
                if previous_inputs.get(encoder_name) == key and (previous / "models" / encoder_name).exists():
                    shutil.copytree(previous / "models" / encoder_name, model_dir)
                    encoder = load_encoder(encoder_name, model_dir)
                    m["reused_from"] = previous.name
                    if encoder_name in previous_lineage:
                        lineage[encoder_name] = previous_lineage[encoder_name]
                else:
                    warm_from = warm_start(settings, encoder, previous, previous_lineage.get(encoder_name), cutoff)
                    try:
                        trained, m["nodes"] = run_task(train_encoder, encoder_name, settings, corpus_ref,
                                                       model_dir.resolve(), warm_from and warm_from.resolve(),
                                                       cpus=task_cpus(settings))
                    except NothingToLearn as exc:
                        # A source without media, say: skip the route, unless it is serving now,
                        # for then this build would silently lose it (the run fails instead).
                        if previous_inputs.get(encoder_name):
                            raise
                        m["skipped"] = str(exc)
                        continue
                    encoder = load_encoder(encoder_name, model_dir)
                    m.update(trained)
                    if warm_from is not None:
                        m["warm_from"] = previous.name
                    lineage[encoder_name] = previous_lineage[encoder_name] if warm_from else \
                        {"params": configured, "cold_cutoff": cutoff.isoformat()}
                m.update(version=encoder.version, dim=encoder.dim)
                manifest_encoders[encoder_name] = encoder.version
                training_inputs[encoder_name] = key
            with run.step(f"embed:{encoder_name}") as m:
                embedding = ArticleEmbedding(encoder_name, model_dir, actors=settings.embed_actors or settings.threads,
                                             dataset_min=settings.embed_dataset_min, bar=bar)
                vectors, from_cache = cache.embed(encoder, articles, embedding)
                m.update(items=len(articles), from_cache=from_cache, encoded=len(articles) - from_cache)
                if embedding.nodes:  # else nothing was encoded: the step ran here
                    m["nodes"] = embedding.nodes
            with run.step(f"index:{route}") as m:
                index = VectorIndex.build([a.id for a in articles], vectors, route=route,
                                          encoder=encoder_name, encoder_version=encoder.version,
                                          built_at=utcnow().isoformat(timespec="seconds"))
                m.update(count=len(index), dim=index.dim)
                if route in searched:
                    m.update(index.build_ann(settings.ann_threshold, settings.ann_min_recall, settings.seed))
            if ROUTES[route].kind == "i2i":
                with run.step(f"neighbours:{route}") as m:
                    floor = float(configs[route].params.get("cosine_floor", settings.default_cosine_floor))
                    table, nodes = compute_neighbours(index, settings.neighbour_depth, floor,
                                                      settings.neighbour_shard_rows)
                    m.update(items=index.built, depth=table.depth, floor=floor, pairs=int(len(table.rows)),
                             mean_neighbours=round(len(table.rows) / max(index.built, 1), 1), nodes=nodes)
            index.save(staging / "indexes" / route)
            manifest_routes[route] = index.manifest
            counts[f"index:{route}"] = len(index)
            # The rest of the build reads the saved index, memory-mapped: its neighbour table
            # (161k articles x 300 neighbours, ~390 MB a route) leaves the driver's heap.
            indexes[route], encoders[encoder_name] = VectorIndex.load(staging / "indexes" / route), encoder
            if hasattr(encoder, "encode_users"):
                with run.step(f"users:{encoder_name}") as m:
                    user_vectors[encoder_name], m["nodes"] = encode_users_partitioned(
                        encoder_name, model_dir.resolve(), corpus, settings.user_partition_users)
                    m.update(items=len(corpus.click_sequences))

    with run.step("catalog") as m:
        catalog = build_catalog(corpus)
        catalog.save(staging / "catalog.jsonl")
        m.update(items=len(catalog))

    users = build_users(settings, run, online, corpus, catalog, indexes, encoders, user_vectors, previous,
                        to_unix(cutoff), staging)

    manifest = {"version": run.version, "built_at": utcnow().isoformat(timespec="seconds"),
                "cutoff": cutoff.isoformat(), "routes": manifest_routes,
                "encoders": manifest_encoders, "training_inputs": training_inputs, "model_lineage": lineage,
                "counts": counts}
    return manifest, users
