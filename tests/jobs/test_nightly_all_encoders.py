"""One nightly build with every registered encoder: each route gets its index, DSSM user
vectors reach Redis, and a second run reuses models and cached embeddings."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import run_nightly
from recall.db import make_sessionmaker
from recall.domain import to_unix
from recall.models import JobRun
from recall.routes import ROUTES
from recall.service import RecallService
from recall.serving import ServingState
from recall.synthetic import generate


@pytest.fixture
def world_with_media(tmp_path, shared_data):
    """A small world whose articles also carry an entity (one per topic) and, every third
    article, a real photograph (one per topic)."""
    world = generate(articles=240, users=50, days=4, seed=3)
    topics = sorted(set(world.article_topic.values()))
    images = sorted(p for p in (shared_data / "images").iterdir())
    rng = np.random.default_rng(0)
    vec = tmp_path / "entity_embedding.vec"
    vec.write_text("".join(f"Q{t}\t" + "\t".join(f"{x:.5f}" for x in rng.normal(size=100)) + "\n"
                           for t in range(len(topics))))
    articles = []
    for n, article in enumerate(world.articles):
        t = topics.index(world.article_topic[article.id])
        articles.append(replace(
            article,
            entities=({"label": topics[t], "type": "O", "wikidata_id": f"Q{t}", "confidence": 1.0},),
            image_ref=str(images[t % len(images)]) if n % 3 == 0 else None,
        ))
    world.articles = articles
    return world, vec


def test_every_encoder_builds_its_route(settings, sqlite_engine, online, world_with_media):
    world, vec = world_with_media
    ingest_synthetic(sqlite_engine, world)
    # A small rule-cluster threshold: every clustering scheme has clusters in this small world.
    full = settings.model_copy(update={"build_encoders": "all", "title2vec_epochs": 1, "dssm_epochs": 1,
                                       "entity_embeddings_path": str(vec), "rule_min_size": 3})
    cutoff = world.events[-1].ts - timedelta(hours=12)
    first = run_nightly(full, sqlite_engine, online, cutoff=cutoff)

    state = ServingState.load(full)
    with_images = sum(1 for a in world.articles if a.image_ref and (a.published_at is None or a.published_at < cutoff))
    for name, spec in ROUTES.items():
        if spec.encoder:
            assert len(state.indexes[name]) > 0, f"route {name} has an empty index"
    assert len(state.indexes["img2vec"]) == with_images

    # No time budgets: this checks that every route answers, not how fast a loaded machine is.
    service = RecallService(online, state, enforce_budgets=False)
    assert set(service.routes) == set(ROUTES)
    clicker = max(world.user_interests, key=lambda u: sum(1 for e in world.events
                                                           if e.user_id == u and e.kind == "click" and e.ts < cutoff))
    result = service.recall(clicker, 100, now=to_unix(cutoff))
    assert result.routes["dssm"].count > 0  # its user vector came from Redis
    assert all(run.error is None for run in result.routes.values())

    with make_sessionmaker(sqlite_engine)() as session:
        rows = session.scalars(select(JobRun).where(JobRun.run_id == first.run_id)).all()
    assert {r.status for r in rows} == {"ok"}
    assert all("items_per_second" in r.metrics for r in rows if r.step.startswith("embed:"))

    second = run_nightly(full, sqlite_engine, online, cutoff=cutoff)
    with make_sessionmaker(sqlite_engine)() as session:
        rows = {r.step: r for r in session.scalars(select(JobRun).where(JobRun.run_id == second.run_id))}
    for name, spec in ROUTES.items():
        if spec.encoder:
            assert rows[f"train:{spec.encoder}"].metrics.get("reused_from") == first.version
            assert rows[f"embed:{spec.encoder}"].metrics["encoded"] == 0


def test_an_encoder_with_nothing_to_learn_is_skipped_until_it_serves(settings, sqlite_engine, online):
    """A source without media (MIND) builds every other route; a route already serving fails
    the run instead of vanishing from the next build."""
    world = generate(articles=150, users=40, days=3, seed=4)
    world.articles = [replace(a, media_id=None) for a in world.articles]
    ingest_synthetic(sqlite_engine, world)
    both = settings.model_copy(update={"build_encoders": "tag2vec,media2vec"})
    result = run_nightly(both, sqlite_engine, online, cutoff=world.events[-1].ts)

    with make_sessionmaker(sqlite_engine)() as session:
        rows = {r.step: r for r in session.scalars(select(JobRun).where(JobRun.run_id == result.run_id))}
    assert rows["train:media2vec"].status == "skipped"
    assert "no training sentences" in rows["train:media2vec"].metrics["skipped"]
    assert "index:media2vec" not in rows and result.counts["index:tag2vec"] > 0
    assert set(ServingState.load(both).indexes) == {"tag2vec"}
