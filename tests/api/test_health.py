"""GET /healthz and GET /readyz."""

from __future__ import annotations


def test_healthz_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_ready_with_sql_redis_and_a_build(client, built):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"ready": True, "version": built.build.version,
                               "checks": {"sql": True, "redis": True, "build": True, "online_state": True},
                               "reasons": [], "requested": None, "load_error": None}


def test_not_ready_without_redis_but_alive(redis_down_client):
    assert redis_down_client.get("/healthz").status_code == 200
    response = redis_down_client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"] == {"sql": True, "redis": False, "build": True, "online_state": False}
    assert body["ready"] is False and [r.split(" (")[0] for r in body["reasons"]] == ["Redis does not answer"]


def test_not_ready_without_a_build_yet_fallbacks_serve(no_build_client, user_id):
    response = no_build_client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["build"] is False and body["checks"]["redis"] is True and body["version"] is None
    assert any("build" in reason for reason in body["reasons"])

    # One click makes an article hot (and trending); another (cold) user is then served it by
    # those fallbacks.
    no_build_client.post("/v1/events", json={"events": [
        {"user_id": user_id, "article_id": "breaking-1", "kind": "click"}]})
    recall = no_build_client.get(f"/v1/recall/cold-{user_id}")
    assert recall.status_code == 200
    assert [(c["item_id"], {p["route"] for p in c["routes"]}) for c in recall.json()["candidates"]] == \
        [("breaking-1", {"hot", "trending"})]
