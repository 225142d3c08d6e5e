"""Redis down, then back empty, under steady load: real processes on loopback, bounded in time.

A Redis server of the test's own (a spare port) holds the world's online state. The API serves
it from a uvicorn thread while a client loop asks for recall and posts clicks. The test stops
Redis for a few seconds, then starts it again empty. Required: no 5xx ever; every answer during
the outage says ``degraded`` and still has candidates for a known user; the circuit breaker
opens and bounds the connection attempts; and within 60 s of Redis returning, every click posted
before and during the outage is back in that user's recent clicks (rebuilt from SQL, outbox).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest
import redis

from api.app import create_app
from api.thread_server import serving
from tests.api.conftest import key_headers, world_of_its_own

OUTAGE_SECONDS = 4.0


class RedisServer:
    """``redis-server`` on a spare loopback port, without persistence (as in production here)."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@dataclass
class Load:
    """What the client loop saw: (time, status, degraded, candidates) per recall; clicks posted."""

    recalls: list[tuple[float, int, bool | None, int]] = field(default_factory=list)
    posts: list[tuple[float, int]] = field(default_factory=list)
    clicked: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def drive(base: str, headers: dict, known: list[str], clicker: str, articles: list[str], load: Load) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=5.0) as http:
        n = 0
        while not load.stop.is_set():
            user = known[n % len(known)]
            response = http.get(f"/v1/recall/{user}", params={"n": 50})
            body = response.json() if response.status_code == 200 else {}
            load.recalls.append((time.monotonic(), response.status_code, body.get("degraded"),
                                 len(body.get("candidates", []))))
            if n % 5 == 0:
                article = articles[(n // 5) % len(articles)]
                posted = http.post("/v1/events", json={"events": [
                    {"id": f"fault-{uuid.uuid4().hex}", "user_id": clicker, "article_id": article, "kind": "click"}]})
                load.posts.append((time.monotonic(), posted.status_code))
                if posted.status_code == 200:
                    load.clicked.append(article)
            n += 1
            time.sleep(0.01)


@pytest.mark.timeout(300)
def test_redis_outage_and_empty_restart_under_load(tmp_path):
    server = RedisServer()
    server.start()
    try:
        with world_of_its_own(tmp_path, articles=300, users=60, days=3, redis_url=server.url,
                              outbox_interval_seconds=0.5, live_refresh_seconds=0.5,
                              redis_breaker_cooldown_seconds=0.5) as built:
            app = create_app(built.settings)
            known = sorted({e.user_id for e in built.world.events if e.kind == "click"})[:20]
            articles = [a.id for a in built.world.articles[-40:]]
            clicker = f"fault-user-{uuid.uuid4().hex[:6]}"
            load = Load()
            with serving(app) as base:
                driver = threading.Thread(target=drive, args=(base, key_headers(built.engine), known, clicker,
                                                               articles, load), daemon=True)
                driver.start()
                time.sleep(2.0)
                down_at = time.monotonic()
                server.stop()
                time.sleep(OUTAGE_SECONDS)
                breaker = app.state.online.r.breaker
                attempts_during = breaker.attempts
                server.start()  # empty: no persistence
                up_at = time.monotonic()
                whole_at = None
                direct = redis.Redis.from_url(server.url)
                while time.monotonic() - up_at < 60:
                    have = {m.decode() for m in direct.zrange(built.settings.redis_prefix + f"u:{clicker}:clicks", 0, -1)}
                    if load.clicked and set(load.clicked[: len(load.clicked) - 2]) <= have:
                        whole_at = time.monotonic()
                        break
                    time.sleep(0.25)
                time.sleep(1.0)
                load.stop.set()
                driver.join(timeout=10)
    finally:
        server.stop()

    statuses = [s for _, s, _, _ in load.recalls] + [s for _, s in load.posts]
    assert statuses and all(s < 500 for s in statuses), sorted(set(statuses))
    during = [r for r in load.recalls if down_at + 0.5 < r[0] < up_at]
    assert during, "the load loop made no request during the outage"
    assert all(degraded is True for _, _, degraded, _ in during)
    assert all(candidates > 0 for *_, candidates in during), "a known user got an empty list"
    assert breaker.openings >= 1 and breaker.refused > 0
    # Without the breaker each request would try to connect (about one per 10 ms here).
    assert attempts_during <= 20 + 4 * OUTAGE_SECONDS / built.settings.redis_breaker_cooldown_seconds
    assert whole_at is not None, "clicks sent before and during the outage did not come back within 60 s"
    print(f"recalls {len(load.recalls)}, clicks {len(load.clicked)}, during outage {len(during)}, "
          f"breaker attempts {attempts_during}, refused {breaker.refused}, whole after {whole_at - up_at:.1f} s")
