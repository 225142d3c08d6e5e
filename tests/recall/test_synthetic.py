"""The synthetic world: deterministic, fast, and with the structure other tests rely on."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pytest

from recall import synthetic
from recall.synthetic import TOPICS, EventColumns, generate, plan, visits_for


@pytest.fixture(scope="module")
def world():
    return generate(articles=600, users=120, days=5, seed=11)


def test_same_seed_same_world_other_seed_other_world(world):
    again = generate(articles=600, users=120, days=5, seed=11)
    other = generate(articles=600, users=120, days=5, seed=12)
    assert again.articles == world.articles
    assert again.events == world.events
    assert again.user_interests == world.user_interests
    assert other.events != world.events


def test_users_click_mostly_inside_their_interests(world):
    clicks = [e for e in world.events if e.kind == "click"]
    inside = sum(world.article_topic[e.article_id] in world.user_interests[e.user_id] for e in clicks)
    assert len(clicks) > 500
    assert 0.78 <= inside / len(clicks) <= 0.92  # the generator aims at 85%


def test_each_user_has_two_or_three_known_topics(world):
    known = {topic for topics in TOPICS.values() for topic in topics}
    assert len(world.user_interests) == 120
    for topics in world.user_interests.values():
        assert 2 <= len(topics) <= 3 and len(set(topics)) == len(topics) and set(topics) <= known


def test_articles_are_written_from_their_topic(world):
    category_of = {topic: category for category, topics in TOPICS.items() for topic in topics}
    for article in world.articles:
        topic = world.article_topic[article.id]
        assert article.category == category_of[topic] and article.subcategory == topic
        assert 3 <= len(article.tags) <= 7
        assert all(tag.startswith(f"{topic}_") for tag, _ in article.tags[:3])
        weights = [w for _, w in article.tags]
        assert weights == sorted(weights, reverse=True)
        assert article.title and article.body and article.media_id
        assert article.expires_at in (None, article.published_at + timedelta(days=3))


def test_events_are_ordered_and_keyed_and_clicks_follow_what_was_shown(world):
    assert [e.ts for e in world.events] == sorted(e.ts for e in world.events)
    assert [e.key for e in world.events] == [f"syn:11:{n}" for n in range(len(world.events))]
    shown = {(e.impression_id, e.article_id): e.ts for e in world.events if e.kind == "impression"}
    published = {a.id: a.published_at for a in world.articles}
    for e in world.events:
        assert published[e.article_id] <= e.ts
        if e.kind == "click":
            delay = e.ts - shown[(e.impression_id, e.article_id)]
            assert timedelta(seconds=1) < delay < timedelta(minutes=2)


def test_popularity_is_skewed_and_times_span_the_days(world):
    clicks = Counter(e.article_id for e in world.events if e.kind == "click")
    top_tenth = sum(n for _, n in clicks.most_common(len(world.articles) // 10))
    assert top_tenth / sum(clicks.values()) > 0.3  # uniform popularity would give about 0.1
    start = datetime(2026, 11, 1)
    assert min(a.published_at for a in world.articles) < start + timedelta(hours=12)
    assert max(e.ts for e in world.events) > start + timedelta(days=4)


def test_full_size_world_has_every_user():
    big = generate(articles=2000, users=500, days=7, seed=1)
    assert len(big.articles) == 2000 and len({e.user_id for e in big.events}) == 500


def test_a_world_streamed_in_many_chunks_keeps_time_order_and_its_sessions(monkeypatch):
    # Clicks come up to a minute after their session: some cross chunk boundaries and are held back.
    monkeypatch.setattr(synthetic, "SESSIONS_PER_CHUNK", 37)
    world = plan(articles=400, users=60, days=4, seed=2)
    chunks = list(world.event_chunks())
    assert len(chunks) > 10
    events = EventColumns.concat(chunks)
    assert np.array_equal(events.n, np.arange(len(events)))
    assert np.all(np.diff(events.ts.astype(np.int64)) >= 0)
    shown = {(s, a): ts for s, a, ts, c in zip(events.session, events.article, events.ts, events.click) if not c}
    clicks = [(s, a, ts) for s, a, ts, c in zip(events.session, events.article, events.ts, events.click) if c]
    assert clicks and all(np.timedelta64(1, "s") < ts - shown[(s, a)] < np.timedelta64(2, "m") for s, a, ts in clicks)
    impressions = events.select(~events.click)
    pairs = impressions.session * len(world.topic_of) + impressions.article
    assert len(np.unique(pairs)) == len(pairs)  # a session shows an article once


def test_the_event_count_follows_the_visits_asked_for():
    sparse = plan(articles=300, users=400, days=10, seed=4, visits_per_day=visits_for(8000, 400, 10))
    events = sum(len(chunk) for chunk in sparse.event_chunks())
    assert 0.85 * 8000 < events < 1.15 * 8000
    readers = np.unique(np.concatenate([chunk.user for chunk in sparse.event_chunks()]))
    assert len(readers) > 0.95 * 400  # every reader visits at least once (a few land before any article)


def test_drawing_from_a_whole_pool_and_redrawing_repeats_sample_alike(monkeypatch):
    """The two samplers behind a session's list are the same successive sampling: the chance
    that each article is shown agrees, and follows its attractiveness."""
    rng = np.random.default_rng(0)
    published = np.sort(rng.uniform(0, 70, size=300))
    catalogue = synthetic._Catalogue(published, np.zeros(300, dtype=np.int64),
                                     1.0 / (1 + rng.permutation(300)) ** 0.6, topics=1)
    sessions = 4000
    starts, counts = catalogue.windows(np.full(sessions, 71.0))
    wanted = np.full(sessions, 6)

    def shown_share(whole_pool_max: int, rounds: int) -> np.ndarray:
        monkeypatch.setattr(synthetic, "WHOLE_POOL_MAX", whole_pool_max)
        monkeypatch.setattr(synthetic, "REDRAW_ROUNDS", rounds)
        chosen_sessions, articles = catalogue.draw(np.random.default_rng(1), starts, counts, wanted, weighted=True)
        assert np.array_equal(np.bincount(chosen_sessions, minlength=sessions), wanted)
        assert len(np.unique(chosen_sessions * 300 + articles)) == len(articles)  # distinct per session
        return np.bincount(articles, minlength=300) / sessions

    whole, redrawn, short_of_rounds = shown_share(1000, 30), shown_share(0, 30), shown_share(0, 1)
    assert np.abs(whole - redrawn).max() < 0.05 and np.abs(whole - short_of_rounds).max() < 0.05
    heaviest, lightest = np.argsort(catalogue.weight)[[-1, 0]]
    uniform = 6 / 300
    assert redrawn[heaviest] > 10 * uniform and redrawn[lightest] < uniform
