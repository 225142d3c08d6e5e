"""Screenshots of every admin page, written to docs/admin/*.png.

    python -m scripts.admin_screenshots [--articles 2000 --users 500 --days 7 --encoders all]

Builds a demo-sized world in a scratch directory (synthetic data, SQLite, embedded Redis, the
nightly build), serves it on a free local port, logs in as an editor in Debian's headless
Chromium (driven by Playwright) and photographs each page. Nothing of the configured database,
Redis or var directory is touched.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.sync_api import Page, sync_playwright
from sqlalchemy.orm import Session

from api.app import create_app
from api.thread_server import serving
from jobs.ingest.synthetic import ingest_synthetic
from jobs.nightly import run_nightly
from recall.credentials import create_user
from recall.db import make_engine, upgrade
from recall.online import OnlineStore, connect_redis
from recall.settings import Settings
from recall.synthetic import generate

CHROMIUM = "/usr/bin/chromium"
EDITOR, PASSWORD = "editor", "screenshots only"
VIEWPORT = {"width": 1440, "height": 1000}


def build(scratch: Path, articles: int, users: int, days: int, encoders: str) -> tuple[Settings, str, str]:
    """A world ending now, built and published; (settings, the keenest reader, the most read article)."""
    settings = Settings(_env_file=None, var_dir=scratch / "var", build_encoders=encoders)
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine)
    today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    world = generate(articles, users, days, settings.seed, start=today - timedelta(days=days - 1))
    ingest_synthetic(engine, world)
    redis_client = connect_redis(settings)
    run_nightly(settings, engine, OnlineStore(redis_client, settings))
    with Session(engine) as session:
        create_user(session, EDITOR, PASSWORD, replace=True)
    engine.dispose()
    clicks = [e for e in world.events if e.kind == "click"]
    reader = Counter(e.user_id for e in clicks).most_common(1)[0][0]
    article = Counter(e.article_id for e in clicks).most_common(1)[0][0]  # a vector in every route
    return settings, reader, article


def shoot(page: Page, out: Path, name: str, path: str | None = None, full_page: bool = False) -> None:
    if path:
        page.goto(path)
    page.screenshot(path=out / f"{name}.png", full_page=full_page)
    print(f"{out / name}.png  <- {page.url}")


def photograph(settings: Settings, reader: str, article: str, out: Path) -> None:
    with serving(create_app(settings)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(base_url=url, viewport=VIEWPORT)
        shoot(page, out, "login", "/admin/login")
        page.fill("input[name=username]", EDITOR)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        shoot(page, out, "user", f"/admin/users/{reader}")
        page.evaluate("document.getElementById('fused').scrollIntoView()")
        shoot(page, out, "user-fused")
        shoot(page, out, "article", f"/admin/articles/{article}")
        shoot(page, out, "clusters", "/admin/clusters")
        first_cluster = page.locator("#clusters tbody a").first
        if first_cluster.count():
            first_cluster.click()
            shoot(page, out, "cluster")
        # One change, so that the routes page shows its audit table in use.
        page.goto("/admin/routes")
        page.get_by_label("fresh weight").fill("0.4")
        page.locator("form#route-fresh button").click()
        shoot(page, out, "routes", full_page=True)  # down to the audit table
        shoot(page, out, "jobs", "/admin/jobs")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=2000)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--encoders", default="all", help="what the nightly build trains (RECALL_BUILD_ENCODERS)")
    parser.add_argument("--out", type=Path, default=Path("docs/admin"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="recall-screenshots-"))
    try:
        settings, reader, article = build(scratch, args.articles, args.users, args.days, args.encoders)
        photograph(settings, reader, article, args.out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
