"""One JSON log line per request, with a request id echoed in the response."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from api.requestlog import JsonFormatter
from api.server import settings_env
from recall.settings import Settings

STARTUP_SECONDS = 60.0


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


@pytest.fixture
def emitted_lines() -> Iterator[Callable[[], list[dict]]]:
    """The lines of the ``api`` loggers as a JSON handler writes them, formatted when emitted
    (as the server's stderr handler does: the request id is read in the emitting context)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("api")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_lines_logged_while_serving_a_request_carry_its_id(no_build_client, emitted_lines):
    article = {"id": "logged-article", "title": "Logged"}
    response = no_build_client.post("/v1/articles", json=article, headers={"X-Request-ID": "trace-7"})
    assert response.status_code == 200
    by_logger = {line["logger"]: line for line in emitted_lines()}
    published = by_logger["api.routes.articles"]  # logged by the handler, in the threadpool
    assert (published["msg"], published["request_id"], published["articles"]) == ("articles published", "trace-7", 1)
    assert by_logger["api.requests"]["request_id"] == "trace-7"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_served_app_writes_one_json_line_per_request_to_stderr(settings: Settings, online):
    """``recall serve``'s code path in a real process: uvicorn with the project's log config."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "from api.server import serve; from recall.settings import Settings; "
                               f"serve('127.0.0.1', {port}, 1, Settings())"],
        env={**os.environ, **settings_env(settings)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "served-1"})
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        assert response.status_code == 200 and response.headers["X-Request-ID"] == "served-1"
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]  # every line is JSON
    requests = [line for line in lines if line["logger"] == "api.requests"]
    assert [(r["request_id"], r["path"], r["status"]) for r in requests] == [("served-1", "/healthz", 200)]
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # the server's own lines too
