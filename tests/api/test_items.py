"""GET /v1/items/{item_id}/similar."""

from __future__ import annotations

from collections import Counter

import pytest


def test_neighbours_share_the_topic_far_more_often_than_chance(client, built):
    topic_of = built.world.article_topic
    chance = max(Counter(topic_of.values()).values()) / len(topic_of)  # always guessing the biggest topic
    same = total = 0
    for article in built.world.articles[::20]:
        response = client.get(f"/v1/items/{article.id}/similar", params={"route": "tag2vec", "n": 10})
        assert response.status_code == 200
        body = response.json()
        assert body["item_id"] == article.id and body["version"] == built.build.version
        neighbours = body["neighbours"]
        assert len(neighbours) <= 10 and article.id not in {nb["item_id"] for nb in neighbours}
        scores = [nb["score"] for nb in neighbours]
        assert scores == sorted(scores, reverse=True)
        same += sum(topic_of[nb["item_id"]] == topic_of[article.id] for nb in neighbours)
        total += len(neighbours)
    assert total >= 100
    assert same / total > max(0.6, 5 * chance)


def test_n_is_capped_at_similar_max_n(client, built):
    cap = built.settings.similar_max_n
    # An article of the biggest topic has the most close neighbours, enough to hit the cap.
    topic_of = built.world.article_topic
    biggest = Counter(topic_of.values()).most_common(1)[0][0]
    article = next(item for item, topic in topic_of.items() if topic == biggest)
    body = client.get(f"/v1/items/{article}/similar", params={"route": "tag2vec", "n": cap * 10}).json()
    assert body["n"] == cap and len(body["neighbours"]) == cap


def test_unknown_item_is_404(client):
    response = client.get("/v1/items/no-such-article/similar", params={"route": "tag2vec"})
    assert response.status_code == 404
    assert "no-such-article" in response.json()["detail"]


@pytest.mark.parametrize("route", ["hot", "nope"])
def test_route_must_be_item_to_item(client, route):
    response = client.get("/v1/items/a7/similar", params={"route": route})
    assert response.status_code == 422
    assert route in response.json()["detail"] and "tag2vec" in response.json()["detail"]


@pytest.mark.parametrize("params", [{}, {"route": "tag2vec", "n": 0}])
def test_missing_route_or_bad_n_is_422(client, params):
    assert client.get("/v1/items/a7/similar", params=params).status_code == 422


def test_without_a_build_the_route_is_unavailable_not_the_item_unknown(no_build_client):
    response = no_build_client.get("/v1/items/a7/similar", params={"route": "tag2vec"})
    assert response.status_code == 503 and "tag2vec" in response.json()["detail"]
