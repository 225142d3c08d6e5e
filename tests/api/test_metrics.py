"""GET /metrics: Prometheus counters and histograms move with traffic, labelled as documented.

The session app's counters are shared by every API test, so each test compares two scrapes
around what it does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from tests.api.conftest import key_headers

Samples = dict[tuple[str, frozenset], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics", headers={"Authorization": ""})  # scrapers hold no API key
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_recall_moves_request_route_and_drop_metrics(client):
    before = scrape(client)
    body = client.get("/v1/recall/u3", params={"n": 30, "explain": True}).json()
    after = scrape(client)

    request = {"method": "GET", "endpoint": "/v1/recall/{user_id}"}
    assert moved(before, after, "newsrecall_http_requests_total", **request, status="200") == 1
    assert moved(before, after, "newsrecall_http_request_duration_seconds_count", **request) == 1
    assert moved(before, after, "newsrecall_recall_requests_total", cold="false") == 1
    for route, stats in body["routes"].items():
        returned = {"route": route, "stage": "returned"}
        assert moved(before, after, "newsrecall_route_candidates_count", **returned) == 1
        assert moved(before, after, "newsrecall_route_candidates_sum", **returned) == stats["count"]
        assert moved(before, after, "newsrecall_route_candidates_sum", route=route, stage="kept") == stats["kept"]
        assert moved(before, after, "newsrecall_route_duration_seconds_count", route=route) == 1
    assert body["dropped"]
    for reason, count in body["dropped"].items():
        assert moved(before, after, "newsrecall_recall_dropped_total", reason=reason) == count


def test_a_cold_user_counts_the_fallbacks_that_served(client, user_id):
    before = scrape(client)
    body = client.get(f"/v1/recall/{user_id}", params={"explain": True}).json()
    after = scrape(client)
    assert body["cold"] is True
    assert moved(before, after, "newsrecall_recall_requests_total", cold="true") == 1
    serving = {route for route, stats in body["routes"].items() if stats["kept"]}
    assert serving  # hot and fresh have something for anybody
    for route in body["routes"]:
        assert moved(before, after, "newsrecall_cold_route_served_total", route=route) == int(route in serving)


def test_endpoints_are_labelled_by_route_template_not_raw_path(client, user_id):
    before = scrape(client)
    events = {"events": [{"user_id": user_id, "article_id": "a1", "kind": "click"}]}
    assert client.post("/v1/events", json=events).status_code == 200
    assert client.get(f"/v1/items/{user_id}/similar", params={"route": "tag2vec"}).status_code == 404
    assert client.get(f"/no/such/{user_id}").status_code == 404
    after = scrape(client)

    assert moved(before, after, "newsrecall_http_requests_total",
                 method="POST", endpoint="/v1/events", status="200") == 1
    assert moved(before, after, "newsrecall_http_requests_total",
                 method="GET", endpoint="/v1/items/{item_id}/similar", status="404") == 1
    assert moved(before, after, "newsrecall_http_requests_total",
                 method="GET", endpoint="unmatched", status="404") == 1
    assert not [labels for _, labels in after if any(user_id in v for _, v in labels)]


def test_the_served_build_and_its_index_sizes(client, built):
    samples = scrape(client)
    version = built.build.version
    assert value(samples, "newsrecall_build_info", version=version) == 1
    routes = {r["name"]: r for r in client.get("/v1/routes").json()["routes"]}
    assert value(samples, "newsrecall_index_vectors", route="tag2vec", version=version) == \
        routes["tag2vec"]["index"]["count"] > 0
    assert value(samples, "newsrecall_redis_errors_total") == 0


def test_redis_errors_are_counted(redis_down_client):
    before = scrape(redis_down_client)
    assert redis_down_client.get("/v1/recall/u1").status_code == 200  # degraded, not failed
    assert moved(before, scrape(redis_down_client), "newsrecall_redis_errors_total") >= 1


@pytest.fixture
def closed_metrics_client(built) -> Iterator[TestClient]:
    with TestClient(create_app(built.settings.model_copy(update={"metrics_open": False}))) as client:
        yield client


def test_metrics_can_be_closed(closed_metrics_client):
    response = closed_metrics_client.get("/metrics")
    assert response.status_code == 404 and "metrics_open" in response.json()["detail"]


def test_fast_path_articles_are_counted_and_grow_the_index_gauge(small_world):
    with TestClient(create_app(small_world.settings), headers=key_headers(small_world.engine)) as client:
        before = scrape(client)
        article = {"id": "metrics-new", "title": "A new one", "tags": ["football_goal", "football_derby"]}
        assert client.post("/v1/articles", json=article).json()["indexed"] == {"tag2vec": 1}
        after = scrape(client)
    assert moved(before, after, "newsrecall_fastpath_articles_total") == 1
    assert moved(before, after, "newsrecall_fastpath_indexed_total", route="tag2vec") == 1
    version = small_world.build.version
    assert moved(before, after, "newsrecall_index_vectors", route="tag2vec", version=version) == 1
