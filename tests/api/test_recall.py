"""GET /v1/recall/{user_id} against a real build, SQL and Redis."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from recall.routes import ROUTES

FALLBACK_ROUTES = {name for name, spec in ROUTES.items() if spec.kind == "fallback"}


def live_hot_article(world) -> str:
    """The most clicked article of the world's last day that has not expired yet."""
    now = datetime.now(UTC).replace(tzinfo=None)
    live = {a.id for a in world.articles if a.expires_at is None or a.expires_at > now}
    last_day = Counter(e.article_id for e in world.events
                       if e.kind == "click" and e.ts > now - timedelta(hours=20) and e.article_id in live)
    return last_day.most_common(1)[0][0]


def test_recall_contract(client, built, served):
    user = "u1"
    response = client.get(f"/v1/recall/{user}", params={"n": 30, "explain": "true"})
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == user and body["version"] == built.build.version
    assert body["cold"] is False and body["n"] == 30

    candidates = body["candidates"]
    assert 0 < len(candidates) <= 30
    assert len({c["item_id"] for c in candidates}) == len(candidates)
    scores = [c["score"] for c in candidates]
    assert scores == sorted(scores, reverse=True)
    for candidate in candidates:
        assert candidate["routes"], "every candidate says which route found it"
        for provenance in candidate["routes"]:
            assert set(provenance) == {"route", "seed", "raw_similarity", "score"}
            assert provenance["route"] in body["routes"]

    assert set(body["routes"]) == served
    for stats in body["routes"].values():
        assert stats["count"] >= stats["kept"] >= 0 and stats["ms"] >= 0 and stats["error"] is None
    assert body["dropped"] and all(count > 0 for count in body["dropped"].values())

    # Articles the user clicked within the seen window are filtered out.
    clicked = {e.article_id for e in built.world.events if e.user_id == user and e.kind == "click"}
    assert clicked and not clicked & {c["item_id"] for c in candidates}


def test_stats_only_when_explaining_but_provenance_always(client):
    body = client.get("/v1/recall/u2", params={"n": 10}).json()
    assert body["routes"] is None and body["dropped"] is None
    assert body["candidates"] and all(c["routes"] for c in body["candidates"])


def test_n_defaults_from_settings_and_is_capped_at_max_n(client, built):
    settings = built.settings
    default = client.get("/v1/recall/u3").json()
    assert default["n"] == settings.default_n and len(default["candidates"]) == settings.default_n

    capped = client.get("/v1/recall/u3", params={"n": settings.max_n * 10})
    assert capped.status_code == 200
    assert capped.json()["n"] == settings.max_n and len(capped.json()["candidates"]) == settings.max_n


@pytest.mark.parametrize("n", ["0", "-3", "abc", "1.5"])
def test_n_must_be_a_positive_integer(client, n):
    response = client.get("/v1/recall/u1", params={"n": n})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "n"]


def test_unknown_route_names_the_unknown_and_the_known(client):
    response = client.get("/v1/recall/u1", params={"routes": "tag2vec,nope,hot"})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "nope" in detail and all(name in detail for name in ROUTES)


def test_routes_parameter_runs_only_those_routes(client):
    body = client.get("/v1/recall/u4", params={"routes": " hot ", "explain": "true"}).json()
    assert set(body["routes"]) == {"hot"}
    assert body["candidates"]
    assert {p["route"] for c in body["candidates"] for p in c["routes"]} == {"hot"}


def test_unknown_user_gets_cold_start_fallbacks(client, user_id):
    response = client.get(f"/v1/recall/{user_id}", params={"explain": "true"})
    assert response.status_code == 200
    body = response.json()
    assert body["cold"] is True and body["candidates"]
    assert {p["route"] for c in body["candidates"] for p in c["routes"]} <= FALLBACK_ROUTES


def test_posted_click_becomes_a_seed_at_once(client, built, user_id):
    user, article = user_id, live_hot_article(built.world)
    assert client.get(f"/v1/recall/{user}").json()["cold"] is True

    posted = client.post("/v1/events", json={"events": [
        {"user_id": user, "article_id": article, "kind": "click"}]})
    assert posted.json() == {"accepted": 1, "stored": 1, "online": True}

    body = client.get(f"/v1/recall/{user}",
                      params={"routes": "tag2vec,hot", "explain": "true"}).json()
    assert body["cold"] is False
    seeds = {p["seed"] for c in body["candidates"] for p in c["routes"] if p["route"] == "tag2vec"}
    assert seeds == {article}
    # The hot route proposes the clicked article too; the seen filter removes it.
    assert article not in {c["item_id"] for c in body["candidates"]}
    assert body["dropped"].get("seen", 0) >= 1


def test_category_keeps_only_that_category(client, built):
    category_of = {a.id: a.category for a in built.world.articles}
    body = client.get("/v1/recall/u5", params={"category": "sports", "explain": "true"}).json()
    assert body["candidates"]
    assert {category_of[c["item_id"]] for c in body["candidates"]} == {"sports"}
    assert body["dropped"]["category"] > 0


def test_redis_down_degrades_to_an_answer(redis_down_client, built):
    response = redis_down_client.get("/v1/recall/u1", params={"explain": "true"})
    assert response.status_code == 200
    body = response.json()
    # Without Redis there is no history to read: the user looks cold, the build still answers.
    assert body["cold"] is True and body["version"] == built.build.version
    assert all(stats["error"] is None for stats in body["routes"].values())
