"""The nightly rebuild: read SQL, train encoders, embed articles, build one index per route,
write the catalog, build user vectors and clusters (``jobs/users.py``), publish the build
atomically, then refresh Redis from SQL.

Every step is recorded in ``job_runs``. Until ``publish`` nothing the API reads has changed:
a run that fails or is killed earlier leaves the previous build serving, and the next run
cleans its staging directory up. The Redis refresh is idempotent (sets, never increments,
except for hot counters, whose buckets it rebuilds from scratch).
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
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
from jobs.artefacts import EmbeddingCache, corpus_fingerprint, training_key
from jobs.runs import JobRecorder, utcnow
from jobs.users import build_users, publish_users
from recall import sqlstore
from recall.catalog import ItemCatalog, ItemMeta
from recall.db import make_sessionmaker
from recall.domain import ArticleRecord, to_unix
from recall.index import BuildStore, VectorIndex
from recall.online import OnlineStore
from recall.routeconfig import load_route_configs
from recall.routes import ROUTES, default_configs
from recall.settings import Settings

EMBED_BATCH = 512


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


def load_corpus(sessions, cutoff: datetime) -> TrainingCorpus:
    """Articles live before the cutoff, and users' click sequences before it."""
    with sessions() as session:
        articles = {
            a.id: a for a in sqlstore.iter_articles(session)
            if a.published_at is None or a.published_at < cutoff
        }
        clicks = sqlstore.click_sequences(session, before=cutoff)
    return TrainingCorpus(articles=articles,
                          click_sequences={user: [aid for aid, _ in c] for user, c in clicks.items()},
                          click_times={user: [to_unix(ts) for _, ts in c] for user, c in clicks.items()})


def embed(encoder, articles: list[ArticleRecord], bar: Progress) -> np.ndarray:
    task = bar.add_task(f"embed {encoder.name}", total=len(articles))
    parts = []
    for start in range(0, len(articles), EMBED_BATCH):
        batch = articles[start:start + EMBED_BATCH]
        parts.append(encoder.encode(batch))
        bar.advance(task, len(batch))
    return np.concatenate(parts) if parts else np.zeros((0, encoder.dim), np.float32)


def encode_users(encoder, corpus: TrainingCorpus) -> np.ndarray:
    """User vectors from each user's clicked articles (id-only records where undescribed)."""
    histories = [[corpus.articles.get(aid) or ArticleRecord(id=aid, id_only=True) for aid in clicks]
                 for clicks in corpus.click_sequences.values()]
    return encoder.encode_users(histories)


def read_manifest(build_dir: Path) -> dict:
    return json.loads((build_dir / "manifest.json").read_text())


def build_catalog(corpus: TrainingCorpus) -> ItemCatalog:
    return ItemCatalog({aid: ItemMeta.of(a) for aid, a in corpus.articles.items()})


def refresh_online(online: OnlineStore, sessions, corpus: TrainingCorpus, cutoff: datetime,
                   settings: Settings) -> dict[str, int]:
    """Rebuild Redis from SQL as of the cutoff: fresh list, recent clicks, seen sets, hot buckets.

    This is also how events that reached SQL while Redis was down find their way back.
    """
    cutoff_ts = to_unix(cutoff)
    fresh = [
        (aid, to_unix(a.published_at) or 0.0) for aid, a in corpus.articles.items()
        if a.status == "active" and (a.expires_at is None or a.expires_at > cutoff)
    ]
    online.replace_fresh(fresh)
    online.r.delete(online.k("hidden"))  # hidden flags now live in the build's catalog

    horizon = max(settings.seen_ttl_seconds, settings.hot_window_hours * 3600 * 2)
    since = cutoff - timedelta(seconds=horizon)
    first, last = online.bucket(to_unix(since)), online.bucket(cutoff_ts)
    online.clear_hot_buckets(first, last)
    replayed = 0
    with sessions() as session:
        batch = []
        for event in sqlstore.iter_events(session, after=since, before=cutoff):
            batch.append(event)
            if len(batch) >= 10_000:
                replayed += online.record_events(batch)
                batch = []
        replayed += online.record_events(batch)
    return {"fresh": len(fresh), "events_replayed": replayed}


def run_nightly(settings: Settings, engine: Engine, online: OnlineStore, *,
                cutoff: datetime | None = None, console: Console | None = None) -> NightlyResult:
    """One full rebuild. ``cutoff`` (default: now) is the moment the build knows data up to."""
    cutoff = cutoff or utcnow()
    sessions = make_sessionmaker(engine)
    store = BuildStore(settings.builds_dir)
    version = f"{utcnow():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:4]}"  # sorts by time: pruning relies on it
    run = JobRecorder(sessions, "nightly", run_id=version, version=version)
    counts: dict[str, int] = {}

    with run.step("load") as m:
        corpus = load_corpus(sessions, cutoff)
        m.update(articles=len(corpus.articles), users=len(corpus.click_sequences),
                 clicks=sum(map(len, corpus.click_sequences.values())), cutoff=cutoff.isoformat())
        counts.update(articles=len(corpus.articles), users=len(corpus.click_sequences))

    staging = store.start(version)
    articles = list(corpus.articles.values())
    previous = store.active_dir()
    previous_inputs = read_manifest(previous).get("training_inputs", {}) if previous else {}
    corpus_digest = corpus_fingerprint(corpus)
    cache = EmbeddingCache(settings.var_dir / "cache" / "embeddings")
    manifest_routes, manifest_encoders, training_inputs = {}, {}, {}
    indexes: dict[str, VectorIndex] = {}
    encoders: dict[str, object] = {}
    user_vectors: dict[str, dict[str, np.ndarray]] = {}  # kind -> user -> vector (the DSSM tower's)
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
                key = training_key(encoder, corpus_digest)
                if previous_inputs.get(encoder_name) == key and (previous / "models" / encoder_name).exists():
                    shutil.copytree(previous / "models" / encoder_name, model_dir)
                    encoder = load_encoder(encoder_name, model_dir)
                    m["reused_from"] = previous.name
                else:
                    try:
                        encoder.fit(corpus)
                    except NothingToLearn as exc:
                        # A source without media, say: skip the route, unless it is serving now,
                        # for then this build would silently lose it (the run fails instead).
                        if previous_inputs.get(encoder_name):
                            raise
                        m["skipped"] = str(exc)
                        continue
                    encoder.save(model_dir)
                m.update(version=encoder.version, dim=encoder.dim)
                manifest_encoders[encoder_name] = encoder.version
                training_inputs[encoder_name] = key
            with run.step(f"embed:{encoder_name}") as m:
                vectors, from_cache = cache.embed(encoder, articles, lambda batch: embed(encoder, batch, bar))
                m.update(items=len(articles), from_cache=from_cache, encoded=len(articles) - from_cache)
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
                    table = index.compute_neighbours(settings.neighbour_depth, floor)
                    m.update(items=index.built, depth=table.depth, floor=floor, pairs=int(len(table.rows)),
                             mean_neighbours=round(len(table.rows) / max(index.built, 1), 1))
            index.save(staging / "indexes" / route)
            manifest_routes[route] = index.manifest
            counts[f"index:{route}"] = len(index)
            indexes[route], encoders[encoder_name] = index, encoder
            if hasattr(encoder, "encode_users"):
                with run.step(f"users:{encoder_name}") as m:
                    user_vectors[encoder_name] = dict(zip(corpus.click_sequences, encode_users(encoder, corpus)))
                    m.update(items=len(corpus.click_sequences))

    with run.step("catalog") as m:
        catalog = build_catalog(corpus)
        catalog.save(staging / "catalog.jsonl")
        m.update(items=len(catalog))

    users = build_users(settings, run, online, corpus, catalog, indexes, encoders, user_vectors, previous,
                        to_unix(cutoff), staging)

    with run.step("publish") as m:
        manifest = {"version": version, "built_at": utcnow().isoformat(timespec="seconds"),
                    "cutoff": cutoff.isoformat(), "routes": manifest_routes,
                    "encoders": manifest_encoders, "training_inputs": training_inputs,
                    "counts": counts}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
        store.publish(staging)
        m.update(version=version)

    with run.step("online") as m:
        m.update(refresh_online(online, sessions, corpus, cutoff, settings))
        m.update(publish_users(online, users, sessions, cutoff, manifest["built_at"], settings))
    return NightlyResult(version, version, cutoff, counts)

