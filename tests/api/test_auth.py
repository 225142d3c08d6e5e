"""Credentials at the HTTP edge: API keys on /v1, editors' sessions and CSRF on /admin.

The protected endpoints are enumerated from the app's own routes, so an endpoint added later
is checked from the day it lands: under /v1 it must refuse a request without a key, under
/admin it must send an anonymous browser to the login page, and anywhere else it must be one of
the few public paths listed here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.routing import Mount

from api.app import create_app
from recall.credentials import create_key, create_user, revoke_key, set_disabled
from recall.models import ApiKey, RouteConfigAudit
from tests.api.conftest import csrf_of, log_in

# Open to anyone: probes, the scrape endpoint and the API's own documentation.
PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# The admin pages an anonymous browser may load: the login form and the stylesheet/script.
ADMIN_PUBLIC_PATHS = {"/admin/login", "/admin/static"}
PASSWORD = "correct horse battery"


def endpoints(app) -> list[tuple[str, str, str]]:
    """(method, path template, a concrete path) for every endpoint of the app."""
    found = []
    for route in iter_route_contexts(app.routes):  # routers included in routers, flattened
        if isinstance(route.route, APIRoute):
            concrete = re.sub(r"\{[^}]+\}", "x1", route.path)
            found += [(method, route.path, concrete) for method in sorted(route.methods)]
    return found


def v1_endpoints(app) -> list[tuple[str, str]]:
    return [(method, concrete) for method, path, concrete in endpoints(app) if path.startswith("/v1/")]


def admin_pages(app) -> list[tuple[str, str]]:
    return [(method, concrete) for method, path, concrete in endpoints(app)
            if path.startswith("/admin") and path not in ADMIN_PUBLIC_PATHS]


@pytest.fixture
def anonymous(client) -> TestClient:
    """The session app, reached without credentials (its lifespan already ran)."""
    return TestClient(client.app)


def test_every_endpoint_is_public_on_purpose_or_protected(client):
    routes = list(iter_route_contexts(client.app.routes))
    unexplained = {route.path for route in routes
                   if not route.path.startswith(("/v1/", "/admin")) and route.path not in PUBLIC_PATHS}
    assert unexplained == set()
    mounts = {route.path for route in routes if isinstance(route.route, Mount)}
    assert mounts <= ADMIN_PUBLIC_PATHS
    # What the tests below walk through: the feed endpoints and the admin pages all exist.
    assert {("GET", "/v1/routes"), ("POST", "/v1/events")} <= set(v1_endpoints(client.app))
    assert {"/admin/users/x1", "/admin/routes", "/admin/jobs", "/admin/clusters"} <= \
        {path for _, path in admin_pages(client.app)}


def test_every_v1_endpoint_refuses_a_missing_key(client, anonymous):
    for method, path in v1_endpoints(client.app):
        response = anonymous.request(method, path, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert set(response.json()) == {"detail"} and "API key" in response.json()["detail"]


def test_every_v1_endpoint_refuses_a_wrong_key(client, anonymous, built):
    with Session(built.engine) as session:
        _, real = create_key(session, "wrong-key-test")
    for wrong in ("not-a-key", real[:-2] + "xx", "nrk_00000000_" + real.split("_", 2)[2]):
        for method, path in v1_endpoints(client.app):
            response = anonymous.request(method, path, json={}, headers={"X-API-Key": wrong})
            assert response.status_code == 401, (method, path, wrong)
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
            assert response.json() == {"detail": "invalid API key"}


def test_a_key_works_in_either_header_until_revoked(client, anonymous, built):
    with Session(built.engine) as session:
        key, secret = create_key(session, "revocation-test")
        key_id = key.id
    for headers in ({"Authorization": f"Bearer {secret}"}, {"X-API-Key": secret}):
        assert anonymous.get("/v1/recall/u1", headers=headers).status_code == 200
    keys = client.app.state.keys
    with Session(built.engine) as session:
        assert session.get(ApiKey, key_id).last_used_at is None  # no SQL write on the read path
    keys.refresh()  # the reload tick: the key's use is recorded there
    with Session(built.engine) as session:
        assert session.get(ApiKey, key_id).last_used_at is not None
        revoke_key(session, f"nrk_{key_id}")
    # Verdicts are cached: the revoked key works until the next reload tick re-checks it.
    assert anonymous.get("/v1/recall/u1", headers={"X-API-Key": secret}).status_code == 200
    keys.refresh()
    for method, path in v1_endpoints(client.app):
        response = anonymous.request(method, path, json={}, headers={"X-API-Key": secret})
        assert response.status_code == 403, (method, path)
        assert response.json() == {"detail": "this API key has been revoked"}


def test_open_recall_opens_reads_but_never_writes(built):
    open_settings = built.settings.model_copy(update={"open_recall": True})
    with TestClient(create_app(open_settings)) as open_client:
        recall = open_client.get("/v1/recall/u1")
        assert recall.status_code == 200 and recall.json()["candidates"]
        assert open_client.get("/v1/routes").status_code == 200
        for method, path in v1_endpoints(open_client.app):
            if method not in ("GET", "HEAD"):
                assert open_client.request(method, path, json={}).status_code == 401, (method, path)


def test_the_api_documentation_offers_both_key_headers(client):
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert {(s["type"], s.get("scheme"), s.get("name")) for s in schemes.values()} == {
        ("http", "bearer", None), ("apiKey", None, "X-API-Key")}


def test_probes_stay_open(anonymous):
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 200


# ---- editors -------------------------------------------------------------------------------
@pytest.fixture
def editor(built) -> str:
    username = f"editor-{uuid.uuid4().hex[:6]}"
    with Session(built.engine) as session:
        create_user(session, username, PASSWORD)
    return username


@pytest.fixture
def logged_in(client, editor) -> Iterator[TestClient]:
    browser = TestClient(client.app)
    assert log_in(browser, editor, PASSWORD).status_code == 303
    yield browser


def test_admin_pages_send_anonymous_browsers_to_the_login_page(client, anonymous):
    for method, path in admin_pages(client.app):
        response = anonymous.request(method, path, follow_redirects=False)
        if method == "GET":
            assert response.status_code == 303, path
            assert response.headers["location"] == f"/admin/login?next={path}"
        else:  # a POST without a session has no CSRF token either
            assert response.status_code == 403, (method, path)
        assert "<table" not in response.text and "candidates" not in response.text


def test_a_form_with_a_token_but_no_login_still_goes_to_the_login_page(anonymous):
    token = csrf_of(anonymous.get("/admin/login").text)
    response = anonymous.post("/admin/routes/hot", data={"csrf_token": token, "weight": 5, "quota": 1},
                              follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/admin/login")


def test_a_wrong_password_or_user_is_refused_alike(anonymous, editor):
    for username, password in ((editor, "wrong password"), ("nobody-" + editor, PASSWORD)):
        response = log_in(anonymous, username, password)
        assert response.status_code == 401
        assert "wrong username or password" in response.text
        assert anonymous.get("/admin/users", follow_redirects=False).status_code == 303


def test_login_lands_where_asked_but_never_off_site(anonymous, editor):
    response = log_in(anonymous, editor, PASSWORD, wanted="/admin/routes")
    assert response.headers["location"] == "/admin/routes"
    assert anonymous.get("/admin/routes").status_code == 200
    for elsewhere in ("https://evil.example/", "//evil.example/admin/", "/v1/routes"):
        browser = TestClient(anonymous.app)
        assert log_in(browser, editor, PASSWORD, wanted=elsewhere).headers["location"] == "/admin/users"


def test_logout_and_disabling_end_the_session(client, built, editor, logged_in):
    assert logged_in.get("/admin/jobs").status_code == 200
    with Session(built.engine) as session:
        set_disabled(session, editor)
    assert logged_in.get("/admin/jobs", follow_redirects=False).status_code == 303
    with Session(built.engine) as session:
        create_user(session, editor, PASSWORD, replace=True)  # enabled again, new password
    browser = TestClient(client.app)
    log_in(browser, editor, PASSWORD)
    token = csrf_of(browser.get("/admin/jobs").text)
    assert browser.post("/admin/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert browser.get("/admin/jobs", follow_redirects=False).status_code == 303


def audit_rows(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(RouteConfigAudit))


def test_admin_forms_need_the_sessions_csrf_token(client, built, logged_in):
    before = audit_rows(built.engine)
    def hot_config() -> dict:
        return next(r for r in client.get("/v1/routes").json()["routes"] if r["name"] == "hot")

    hot = hot_config()
    change = {"weight": hot["weight"] + 1, "quota": hot["quota"], "enabled": "on"}
    another_sessions_token = csrf_of(TestClient(client.app).get("/admin/login").text)
    for token in ({}, {"csrf_token": "forged"}, {"csrf_token": another_sessions_token}):
        response = logged_in.post("/admin/routes/hot", data={**change, **token}, follow_redirects=False)
        assert response.status_code == 403
        assert "CSRF" in response.json()["detail"]
    assert audit_rows(built.engine) == before
    assert hot_config()["weight"] == hot["weight"]

    # The page's own token passes; sending the current values changes (and audits) nothing.
    token = csrf_of(logged_in.get("/admin/routes").text)
    same = {"weight": hot["weight"], "quota": hot["quota"], "enabled": "on", "csrf_token": token}
    response = logged_in.post("/admin/routes/hot", data=same, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].endswith("/admin/routes")
    assert "hot: nothing changed" in logged_in.get("/admin/routes").text
    assert audit_rows(built.engine) == before
