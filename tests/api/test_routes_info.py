"""GET /v1/routes."""

from __future__ import annotations

from recall.routes import ROUTES


def routes_by_name(client) -> tuple[str | None, dict[str, dict]]:
    body = client.get("/v1/routes").json()
    return body["version"], {route["name"]: route for route in body["routes"]}


def test_lists_every_route_with_config_and_the_vector_index(client, built, served):
    version, routes = routes_by_name(client)
    assert version == built.build.version
    assert list(routes) == list(ROUTES)
    for name, spec in ROUTES.items():
        route = routes[name]
        assert (route["kind"], route["description"]) == (spec.kind, spec.description)
        assert route["available"] is (name in served)
        assert {key: route[key] for key in ("enabled", "weight", "quota", "params")} == spec.default.as_dict()

    index = routes["tag2vec"]["index"]
    assert index["count"] == built.build.counts["index:tag2vec"] > 0
    assert index["dim"] == built.settings.tag2vec_dim
    assert index["version"] == built.build.version
    assert index["built_at"] and index["encoder_version"]
    assert all(routes[name]["index"] is None for name, spec in ROUTES.items() if spec.kind == "fallback")


def test_vector_routes_are_unavailable_without_a_build(no_build_client):
    version, routes = routes_by_name(no_build_client)
    assert version is None
    assert routes["tag2vec"]["available"] is False and routes["tag2vec"]["index"] is None
    assert routes["hot"]["available"] is True
