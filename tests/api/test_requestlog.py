"""One JSON log line per request, with a request id echoed in the response."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import pytest

from api.requestlog import JsonFormatter


@pytest.fixture
def request_lines(caplog) -> Callable[[], list[dict]]:
    """The request log lines, formatted as the server writes them."""
    caplog.set_level(logging.INFO, logger="api.requests")
    formatter = JsonFormatter()
    return lambda: [json.loads(formatter.format(r)) for r in caplog.records if r.name == "api.requests"]


def test_a_given_request_id_is_echoed_and_logged(client, request_lines):
    response = client.get("/v1/recall/u1", params={"n": 0}, headers={"X-Request-ID": "trace-42"})
    assert response.headers["X-Request-ID"] == "trace-42"
    (line,) = request_lines()
    assert line["request_id"] == "trace-42" and line["msg"] == "request" and line["level"] == "INFO"
    assert (line["method"], line["path"], line["query"]) == ("GET", "/v1/recall/u1", "n=0")
    assert line["status"] == 422
    assert line["ms"] >= 0


@pytest.mark.parametrize("given", [None, "x" * 500])
def test_a_missing_or_unreasonable_request_id_is_replaced(client, request_lines, given):
    headers = {"X-Request-ID": given} if given else {}
    response = client.get("/healthz", headers=headers)
    request_id = response.headers["X-Request-ID"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    assert [line["request_id"] for line in request_lines()] == [request_id]


def test_every_request_gets_its_own_id(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
