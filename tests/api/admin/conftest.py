"""Browser tests: a real uvicorn server in a thread over a world of their own (they change route
weights, which the other API tests must not see), driven by Playwright in Debian's headless
Chromium. One browser for the whole session; each test gets a fresh, logged-in context.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy.orm import Session

from api.app import create_app
from api.thread_server import serving
from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import run_nightly
from recall.credentials import create_user
from recall.db import make_engine, upgrade
from recall.online import OnlineStore
from recall.routeconfig import update_route_config
from recall.settings import Settings
from recall.synthetic import generate
from tests.api.conftest import REDIS_URL, BuiltWorld

# Debian's package, never a browser downloaded by `playwright install` (.ci/run installs it).
CHROMIUM = "/usr/bin/chromium"
EDITOR, PASSWORD = "browser-editor", "correct horse battery"
# An article whose title would run script if a page ever printed it as markup.
XSS_ID = "xss-1"
XSS_TITLE = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> Storm warning'
# Its address would run script if a page ever linked it (an ingest file or the API may carry any).
XSS_URL = "javascript:window.__xss = 3"
# An article whose address is a web page: linked. Its id holds what a path must quote.
LINKED_ID, LINKED_URL = "wire/2024?#% 1", "https://news.example.org/storm?id=1&lang=en"


@dataclasses.dataclass
class AdminWorld(BuiltWorld):
    reader: str  # the user with most clicks: every route has seeds for them


@pytest.fixture(scope="session")
def admin_world(tmp_path_factory) -> Iterator[AdminWorld]:
    tmp = tmp_path_factory.mktemp("admin-world")
    # Served over plain http on 127.0.0.1: the session cookie must not be HTTPS-only here.
    settings = Settings(_env_file=None, var_dir=tmp / "var", database_url=f"sqlite:///{tmp / 'recall.db'}",
                        redis_url=REDIS_URL, redis_prefix=f"t{uuid.uuid4().hex[:10]}:", build_encoders="tag2vec",
                        admin_cookie_https_only=False)
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    now = datetime.now(UTC).replace(tzinfo=None)
    world = generate(200, 40, 3, seed=5, start=now - timedelta(days=3))
    # The script-titled article says what a real one says, so it is in the build and a neighbour.
    twin = world.articles[0]
    world.articles.append(dataclasses.replace(twin, id=XSS_ID, title=XSS_TITLE, url=XSS_URL))
    world.articles.append(dataclasses.replace(world.articles[1], id=LINKED_ID, url=LINKED_URL))
    ingest_synthetic(engine, world)
    client = redis.Redis.from_url(REDIS_URL)
    online = OnlineStore(client, settings)
    build = run_nightly(settings, engine, online)
    with Session(engine) as session:
        create_user(session, EDITOR, PASSWORD)
        # The generated world's last hour may show nothing: "shown" counts hot's 6 hours here.
        update_route_config(session, "shown", "tests", params={"window_hours": 6.0})
    clicks = Counter(e.user_id for e in world.events if e.kind == "click")
    yield AdminWorld(settings, engine, world, build, reader=clicks.most_common(1)[0][0])
    online.flush_namespace()
    client.close()
    engine.dispose()


@pytest.fixture(scope="session")
def base_url(admin_world: AdminWorld) -> Iterator[str]:
    with serving(create_app(admin_world.settings)) as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"install Debian's chromium package ({CHROMIUM}); .ci/run does"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


def fill_login(page: Page, username: str = EDITOR, password: str = PASSWORD) -> None:
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh browser context (no cookies) that fails the test on any JavaScript dialog."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1500, "height": 1000})
    # Generous waits: the inspector runs every route per page load, on 2 cores that may be busy.
    context.set_default_timeout(30_000)
    expect.set_options(timeout=30_000)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    # The pages run under a strict Content-Security-Policy: anything it blocks (a script, a
    # style, a frame) is a page that no longer works as written.
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text)
            if "Content Security Policy" in message.text else None)
    yield page
    context.close()
    assert dialogs == [], f"a page opened dialogs: {dialogs}"
    assert blocked == [], f"the Content-Security-Policy blocked: {blocked}"
