"""The synthetic world: deterministic, fast, and with the structure other tests rely on."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest

from recall.synthetic import TOPICS, generate


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
