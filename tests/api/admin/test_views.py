"""The admin pages over HTTP (no browser): search boxes, missing things, Redis down, paging.

They share the browser tests' world (its own database and Redis prefix) through a second app.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
import ray
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.app import create_app
from recall.models import JobRun
from recall.routeconfig import update_route_config
from tests.api.admin.conftest import EDITOR, PASSWORD, AdminWorld
from tests.api.conftest import log_in, unused_redis_url

PAGE_SIZE = 2


@pytest.fixture(scope="module")
def editor(admin_world: AdminWorld) -> Iterator[TestClient]:
    """An app with two rows a page, and a logged-in browser of it."""
    settings = admin_world.settings.model_copy(update={"admin_page_size": PAGE_SIZE})
    with TestClient(create_app(settings)) as browser:
        assert log_in(browser, EDITOR, PASSWORD).status_code == 303
        yield browser


def test_search_boxes_lead_to_the_inspectors(editor):
    response = editor.get("/admin/users", params={"user_id": " u3 "}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("/admin/users/u3")
    response = editor.get("/admin/articles", params={"article_id": "a7"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("/admin/articles/a7")
    assert 'name="user_id"' in editor.get("/admin/users").text


def test_unknown_articles_and_clusters_are_404_pages(editor):
    article = editor.get("/admin/articles/no-such-article")
    assert article.status_code == 404 and "No article" in article.text
    cluster = editor.get("/admin/clusters/no-such-scheme/c0")
    assert cluster.status_code == 404 and "No cluster" in cluster.text


def test_the_user_page_without_redis_still_shows_the_routes(admin_world: AdminWorld):
    settings = admin_world.settings.model_copy(update={"redis_url": unused_redis_url()})
    with TestClient(create_app(settings)) as browser:
        log_in(browser, EDITOR, PASSWORD)
        page = browser.get(f"/admin/users/{admin_world.reader}")
    assert page.status_code == 200
    assert page.text.count("Redis does not answer") == 2  # profile and clusters
    assert 'data-route="tag2vec"' in page.text and "cold: no clicks" in page.text


def rows(html: str, table_id: str) -> int:
    body = re.search(rf'<table id="{table_id}">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return body.count("<tr")


def test_the_audit_is_paginated_newest_first(editor, admin_world: AdminWorld):
    marker = f"pager-{uuid.uuid4().hex[:6]}"
    with Session(admin_world.engine) as session:
        for quota in (101, 102, 103):
            update_route_config(session, "fresh", changed_by=marker, quota=quota)
    first = editor.get("/admin/routes").text
    assert rows(first, "audit") == PAGE_SIZE and "quota 102 → 103" in first and "page 1 of" in first
    second = editor.get("/admin/routes", params={"page": 2}).text
    assert "quota 100 → 101" in second and "quota 102 → 103" not in second


def test_jobs_are_paginated_and_show_evaluation_figures_and_nodes(editor, admin_world: AdminWorld):
    later = datetime.now() + timedelta(days=1)  # newer than the world's nightly run
    with Session(admin_world.engine) as session:
        for n, status in enumerate(("ok", "failed")):
            started = later + timedelta(minutes=n)
            session.add(JobRun(run_id=f"eval-{n}", job="eval", step="replay", status=status,
                               started_at=started, finished_at=started + timedelta(seconds=3),
                               metrics={"clicks": 40, "recall": {"fused": {"50": 0.41, "100": 0.52}},
                                        "nodes": [f"{n}a1b2c3d4e5f6", f"{n}f6e5d4c3b2a1"]},
                               error="Traceback: boom" if status == "failed" else None))
        session.commit()
    first = editor.get("/admin/jobs").text
    assert first.index('data-run="eval-1"') < first.index('data-run="eval-0"')  # newest first
    assert 'data-run="' + admin_world.build.version not in first
    assert "<th>@50</th>" in first and "0.41" in first and "Traceback: boom" in first
    assert 'class="status failed">failed' in first
    assert '<code title="1a1b2c3d4e5f6">1a1b2c3d</code> <code title="1f6e5d4c3b2a1">1f6e5d4c</code>' in first
    second = editor.get("/admin/jobs", params={"page": 2}).text
    assert 'data-run="' + admin_world.build.version in second and "publish" in second
    # Every step of the nightly names the Ray node that ran it (the test session's one node).
    nightly = second[second.index('data-run="' + admin_world.build.version):]
    node = ray.get_runtime_context().get_node_id()
    assert nightly.count(f'<td class="nodes"><code title="{node}">{node[:8]}</code>') == nightly.count("<tr>") - 1


def test_clusters_are_paginated_biggest_first(editor):
    page = editor.get("/admin/clusters").text
    assert rows(page, "clusters") == PAGE_SIZE
    sizes = [int(s) for s in re.findall(r'<td class="num">(\d+)</td>\s*<td><ul class="chips">', page)]
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == PAGE_SIZE
    assert "page 1 of" in page and 'rel="next"' in page
