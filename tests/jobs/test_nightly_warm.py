"""Warm training in the nightly build: a run on a grown corpus trains from the previous build's
model for ``warm_epochs`` epochs, and trains cold once the model's last cold training is more
than ``cold_every_days`` before the cutoff, however many warm builds came since."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from encoders.tag2vec import Tag2VecEncoder
from jobs.artefacts import params_key
from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import read_manifest, run_nightly, warm_start
from recall.db import make_sessionmaker
from recall.models import JobRun
from recall.synthetic import generate

ENCODERS = ("tag2vec", "eges")  # one of the fastText family, one torch encoder


def training(engine, run_id: str) -> dict[str, dict]:
    with make_sessionmaker(engine)() as session:
        return {r.step.removeprefix("train:"): r.metrics for r in session.scalars(
            select(JobRun).where(JobRun.run_id == run_id, JobRun.step.startswith("train:")))}


def test_a_grown_corpus_trains_warm_until_the_cold_training_is_too_old(settings, sqlite_engine, online):
    world = generate(articles=150, users=40, days=3, seed=4)
    ingest_synthetic(sqlite_engine, world)
    first = world.events[0].ts + timedelta(days=1)
    # Warm from the cold build of day one (half a day old), then cold: a day and a quarter
    # after it, though only three quarters of a day after the warm build.
    # eges trains 1 epoch cold by default, and warm then only when that is more.
    nightly = settings.model_copy(update={"build_encoders": ",".join(ENCODERS), "cold_every_days": 1.0,
                                          "eges_epochs": 2})
    cold = run_nightly(nightly, sqlite_engine, online, cutoff=first)
    warm = run_nightly(nightly, sqlite_engine, online, cutoff=first + timedelta(hours=12))
    cold_again = run_nightly(nightly, sqlite_engine, online, cutoff=first + timedelta(hours=30))

    metrics = {run.version: training(sqlite_engine, run.run_id) for run in (cold, warm, cold_again)}
    for name in ENCODERS:
        assert "warm_from" not in metrics[cold.version][name]
        assert metrics[warm.version][name]["warm_from"] == cold.version
        assert metrics[warm.version][name]["epochs"] == settings.warm_epochs == 1
        assert "warm_from" not in metrics[cold_again.version][name]
    assert metrics[cold.version]["tag2vec"]["epochs"] == settings.tag2vec_epochs
    assert metrics[cold_again.version]["eges"]["epochs"] == nightly.eges_epochs

    builds = settings.builds_dir
    lineage = {run.version: read_manifest(builds / run.version)["model_lineage"] for run in (cold, warm, cold_again)}
    assert lineage[warm.version] == lineage[cold.version]  # a warm model is as old as its cold start
    assert lineage[cold_again.version]["tag2vec"]["cold_cutoff"] == (first + timedelta(hours=30)).isoformat()


def test_warm_epochs_zero_or_other_params_train_cold(settings, tmp_path):
    previous = tmp_path / "build"
    (previous / "models" / "tag2vec").mkdir(parents=True)
    encoder = Tag2VecEncoder(dim=8)
    cutoff = generate(articles=5, users=2, days=1, seed=1).events[-1].ts
    lineage = {"params": params_key(encoder), "cold_cutoff": cutoff.isoformat()}
    assert warm_start(settings, encoder, previous, lineage, cutoff) == previous / "models" / "tag2vec"
    always_cold = settings.model_copy(update={"warm_epochs": 0})
    assert warm_start(always_cold, encoder, previous, lineage, cutoff) is None
    assert warm_start(settings, Tag2VecEncoder(dim=16), previous, lineage, cutoff) is None
    assert warm_start(settings, encoder, previous, None, cutoff) is None  # a build from before lineages
    as_many_epochs = settings.model_copy(update={"warm_epochs": encoder.epochs})  # no saving: cold
    assert warm_start(as_many_epochs, encoder, previous, lineage, cutoff) is None
