"""The graph routes in the nightly build: the item graph's size reaches ``job_runs`` with the
training step (a Ray task's, as every nightly model), and a world whose readers never click twice in a session builds every other
route while graph2vec and eges are skipped with the reason and simply not served."""

from __future__ import annotations

from dataclasses import replace

import ray
from sqlalchemy import select

from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import run_nightly
from recall.db import make_sessionmaker
from recall.domain import to_unix
from recall.models import JobRun
from recall.service import RecallService
from recall.serving import ServingState
from recall.synthetic import generate

GRAPH = "graph2vec,eges"


def steps(engine, run_id: str) -> dict[str, JobRun]:
    with make_sessionmaker(engine)() as session:
        return {r.step: r for r in session.scalars(select(JobRun).where(JobRun.run_id == run_id))}


def test_the_graph_size_is_recorded_with_the_training_step(settings, sqlite_engine, online):
    world = generate(articles=150, users=40, days=3, seed=4)
    ingest_synthetic(sqlite_engine, world)
    graph = settings.model_copy(update={"build_encoders": GRAPH})
    result = run_nightly(graph, sqlite_engine, online, cutoff=world.events[-1].ts)

    rows = steps(sqlite_engine, result.run_id)
    for name in GRAPH.split(","):
        metrics = rows[f"train:{name}"].metrics
        assert rows[f"train:{name}"].status == "ok"
        assert 0 < metrics["graph_nodes"] <= 150 and metrics["graph_edges"] > 0
        assert metrics["graph_degree_p50"] <= metrics["graph_degree_p99"] <= metrics["graph_degree_max"]
        assert metrics["walks"] == metrics["graph_nodes"] * graph.graph_walks_per_node
        # Built, walked and trained in a Ray task (a worker process), like every nightly model.
        assert metrics["nodes"] == [ray.get_runtime_context().get_node_id()]
        assert rows[f"embed:{name}"].metrics["nodes"] == metrics["nodes"]
    assert set(ServingState.load(graph).indexes) == {"graph2vec", "eges"}


def test_a_world_without_sessions_skips_the_graph_routes(settings, sqlite_engine, online):
    world = generate(articles=150, users=40, days=3, seed=4)
    first_clicks, seen = [], set()
    for event in world.events:  # each reader's first click only: no session links two articles
        if event.kind != "click" or event.user_id not in seen:
            first_clicks.append(event)
            seen.add(event.user_id) if event.kind == "click" else None
    world = replace(world, events=first_clicks)
    ingest_synthetic(sqlite_engine, world)
    with_tags = settings.model_copy(update={"build_encoders": "tag2vec," + GRAPH})
    cutoff = world.events[-1].ts
    result = run_nightly(with_tags, sqlite_engine, online, cutoff=cutoff)

    rows = steps(sqlite_engine, result.run_id)
    for name in GRAPH.split(","):
        assert rows[f"train:{name}"].status == "skipped"
        assert "no session links two articles" in rows[f"train:{name}"].metrics["skipped"]
        assert f"index:{name}" not in rows
    state = ServingState.load(with_tags)
    assert set(state.indexes) == {"tag2vec"}
    service = RecallService(online, state)
    # Unavailable (GET /v1/routes says so), not failing: the request runs without them.
    assert not {"graph2vec", "eges"} & set(service.routes) and "tag2vec" in service.routes
    answer = service.recall(next(iter(seen)), 50, now=to_unix(cutoff))
    assert answer.candidates and not {"graph2vec", "eges"} & set(answer.routes)
