"""The admin pages against hostile input and hostile browsers (no browser here; test_pages.py runs
the same pages in Chromium): only web addresses become links, every admin answer carries a strict
Content-Security-Policy and no-framing, no-sniffing headers; logins are throttled per client and
per account; a session ends on the server (logout, disabling); odd ids are a 4xx, never a 5xx.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy.orm import Session

import recall.credentials
from api.admin.editors import SESSION_COOKIE
from api.admin.templating import environment, web_url
from api.app import create_app
from recall.credentials import create_user, set_disabled
from recall.settings import Settings
from tests.api.admin.conftest import EDITOR, LINKED_ID, LINKED_URL, PASSWORD, XSS_ID, XSS_URL, AdminWorld
from tests.api.conftest import csrf_of, log_in


@pytest.fixture(scope="module")
def app(admin_world: AdminWorld) -> Iterator:
    """The browser tests' world behind an app of this module's own (its own login counts)."""
    with TestClient(create_app(admin_world.settings)) as started:
        yield started.app


@pytest.fixture
def editor(app) -> TestClient:
    browser = TestClient(app)
    assert log_in(browser, EDITOR, PASSWORD).status_code == 303
    return browser


@pytest.fixture
def new_editor(admin_world: AdminWorld) -> str:
    """An editor of this test's own: login counts per account start at nothing."""
    username = f"editor-{uuid.uuid4().hex[:8]}"
    with Session(admin_world.engine) as session:
        create_user(session, username, PASSWORD)
    return username


def from_address(app, address: str) -> TestClient:
    """A browser of the app at a client address of its own (login counts are per address too)."""
    return TestClient(app, client=(address, 50000))


def new_address() -> str:
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


# ---- 1. links, Content-Security-Policy, framing ----------------------------------------------
HOSTILE_URLS = [
    "javascript:alert(1)", "JavaScript:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)",
    "java\nscript:alert(1)", "\x01javascript:alert(1)", "javascript://example.org/%0Aalert(1)",
    "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)", "file:///etc/passwd",
    "//evil.example/x", "/admin/users", "http:alert(1)", "https:///nohost", "http://exa mple.org/", "",
]
WEB_URLS = ["http://example.org", "https://example.org/a?b=1&c=<2>#f", "HTTPS://Example.org/x"]


def test_only_web_addresses_are_links():
    link = environment.from_string('{% from "macros.html" import web_link %}{{ web_link(url) }}')
    for url in HOSTILE_URLS:
        assert web_url(url) is None, repr(url)
        shown = link.render(url=url)
        assert "<a" not in shown and "href" not in shown, repr(url)
        assert str(escape(url)) in shown, repr(url)  # still shown, as text
    for url in (None, 42):
        assert web_url(url) is None
    for url in WEB_URLS:
        assert web_url(url) == url
        assert f'<a href="{escape(url)}" rel="noopener noreferrer">{escape(url)}</a>' in link.render(url=url)


def test_an_articles_javascript_url_is_shown_as_text(editor):
    page = editor.get(f"/admin/articles/{XSS_ID}")
    assert page.status_code == 200
    assert not re.search(r"""href\s*=\s*["']?\s*javascript:""", page.text, re.I)
    assert f"<code>{escape(XSS_URL)}</code>" in page.text
    linked = editor.get(f"/admin/articles/{quote(LINKED_ID, safe='')}")
    assert linked.status_code == 200
    assert f'<a href="{escape(LINKED_URL)}" rel="noopener noreferrer">' in linked.text


def csp_directives(response) -> dict[str, list[str]]:
    policy = response.headers.get("content-security-policy", "")
    return {words[0]: words[1:] for part in policy.split(";") if (words := part.split())}


def assert_hardened(response) -> None:
    where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    csp = csp_directives(response)
    assert csp.get("default-src") == ["'self'"], where
    assert csp.get("frame-ancestors") == ["'none'"], where
    assert csp.get("object-src") == ["'none'"] and csp.get("base-uri") == ["'none'"], where
    # No inline script or style anywhere: the pages load one script and one stylesheet of ours.
    for directive in ("script-src", "style-src"):
        assert csp.get(directive, ["'self'"]) == ["'self'"], where
    assert not any("'unsafe-inline'" in v or "'unsafe-eval'" in v or "*" in v for v in csp.values()), where
    assert response.headers.get("x-frame-options") == "DENY", where
    assert response.headers.get("x-content-type-options") == "nosniff", where


def test_every_admin_answer_carries_the_security_headers(app, editor):
    anonymous = TestClient(app)
    answers = [anonymous.get(path, follow_redirects=False) for path in (
        "/admin/login", "/admin", "/admin/", "/admin/users", f"/admin/articles/{XSS_ID}",
        "/admin/static/admin.css", "/admin/static/admin.js", "/admin/static/missing.js", "/admin/nowhere")]
    answers.append(anonymous.post("/admin/routes/hot", data={"weight": 1, "quota": 1}))  # 403: no token
    answers += [editor.get(path) for path in (
        "/admin/users", f"/admin/articles/{XSS_ID}", "/admin/articles/no-such-article", "/admin/routes",
        "/admin/jobs", "/admin/clusters", "/admin/clusters/no-such-scheme/c0", "/admin/users/" + "x" * 200)]
    assert {a.status_code for a in answers} >= {200, 303, 403, 404, 422}
    for answer in answers:
        assert_hardened(answer)
    # The static files are what they say they are.
    assert anonymous.get("/admin/static/admin.js").headers["content-type"].startswith("text/javascript")
    # The feed API is not a page: it keeps its own headers.
    assert "content-security-policy" not in anonymous.get("/healthz").headers


def test_the_pages_need_no_inline_script_or_style(editor, admin_world: AdminWorld):
    """What the policy forbids, the templates do not use (test_pages.py checks it in Chromium)."""
    for path in ("/admin/users", f"/admin/users/{admin_world.reader}", f"/admin/articles/{XSS_ID}",
                 "/admin/routes", "/admin/jobs", "/admin/clusters", "/admin/login"):
        html = editor.get(path).text
        tags = re.findall(r"<[a-zA-Z][^>]*>", html)  # markup only: escaped titles are text
        assert tags and all(re.match(r"<script\s[^>]*\bsrc=", tag) for tag in tags if tag.startswith("<script"))
        for tag in tags:
            assert not re.search(r"^<style|\sstyle=|\son[a-z]+=|javascript:", tag, re.I), (path, tag)


# ---- 2. login throttling, server-side session ends, HTTPS-only cookie ------------------------
@pytest.fixture
def scrypt_calls(monkeypatch) -> list[int]:
    """Counts the password hashes computed (the real scrypt still runs)."""
    calls: list[int] = []
    real = recall.credentials._scrypt

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(recall.credentials, "_scrypt", counting)
    return calls


def assert_throttled(response) -> None:
    assert response.status_code == 429, response.text
    assert 0 < int(response.headers["retry-after"]) <= 15 * 60
    assert "too many failed logins" in response.text
    assert_hardened(response)


def test_wrong_passwords_from_one_address_are_throttled(app, new_editor, scrypt_calls):
    browser = from_address(app, new_address())
    for _ in range(5):
        assert log_in(browser, new_editor, "wrong password").status_code == 401
    assert len(scrypt_calls) == 5
    # The sixth attempt is refused before any password is hashed, even the right password...
    assert_throttled(log_in(browser, new_editor, PASSWORD))
    # ...and for any account from that address.
    assert_throttled(log_in(browser, EDITOR, PASSWORD))
    assert len(scrypt_calls) == 5
    assert browser.get("/admin/users", follow_redirects=False).status_code == 303  # not logged in
    # Another address logs in to another account as usual.
    assert log_in(from_address(app, new_address()), EDITOR, PASSWORD).status_code == 303


def test_wrong_passwords_for_one_account_are_throttled_from_any_address(app, new_editor, scrypt_calls):
    for _ in range(5):
        assert log_in(from_address(app, new_address()), new_editor, "wrong password").status_code == 401
    elsewhere = from_address(app, new_address())
    assert_throttled(log_in(elsewhere, new_editor, PASSWORD))
    assert len(scrypt_calls) == 5
    assert log_in(elsewhere, EDITOR, PASSWORD).status_code == 303  # the address itself is fine


def test_a_successful_login_clears_the_accounts_failures(app, new_editor):
    for _ in range(4):
        assert log_in(from_address(app, new_address()), new_editor, "wrong password").status_code == 401
    assert log_in(from_address(app, new_address()), new_editor, PASSWORD).status_code == 303
    browser = from_address(app, new_address())
    for _ in range(4):  # without the reset, the account's fifth and sixth failure would block these
        assert log_in(browser, new_editor, "wrong password").status_code == 401
    assert log_in(browser, new_editor, PASSWORD).status_code == 303


def session_cookie(browser: TestClient) -> str:
    return next(cookie.value for cookie in browser.cookies.jar if cookie.name == SESSION_COOKIE)


def with_cookie(app, cookie: str) -> TestClient:
    """A browser that sends a copy of someone's session cookie."""
    return TestClient(app, headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})


def test_logging_out_ends_every_session_of_the_editor(app, new_editor):
    laptop, phone = TestClient(app), TestClient(app)
    assert log_in(laptop, new_editor, PASSWORD).status_code == 303
    assert log_in(phone, new_editor, PASSWORD).status_code == 303
    copied = session_cookie(laptop)
    assert with_cookie(app, copied).get("/admin/jobs", follow_redirects=False).status_code == 200

    token = csrf_of(laptop.get("/admin/jobs").text)
    assert laptop.post("/admin/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    # The old cookie, sent again, is no session any more; nor is the other device's.
    replayed = with_cookie(app, copied).get("/admin/jobs", follow_redirects=False)
    assert replayed.status_code == 303 and replayed.headers["location"].startswith("/admin/login")
    assert phone.get("/admin/jobs", follow_redirects=False).status_code == 303
    # Logging in again starts a session that works.
    assert log_in(laptop, new_editor, PASSWORD).status_code == 303
    assert laptop.get("/admin/jobs", follow_redirects=False).status_code == 200


def test_a_stale_cookie_cannot_log_out_the_current_session(app, new_editor):
    old = TestClient(app)
    assert log_in(old, new_editor, PASSWORD).status_code == 303
    token, stale = csrf_of(old.get("/admin/jobs").text), session_cookie(old)
    old.post("/admin/logout", data={"csrf_token": token})
    current = TestClient(app)
    assert log_in(current, new_editor, PASSWORD).status_code == 303
    with_cookie(app, stale).post("/admin/logout", data={"csrf_token": token}, follow_redirects=False)
    assert current.get("/admin/jobs", follow_redirects=False).status_code == 200


def test_a_disabled_editors_sessions_stay_ended_when_enabled_again(app, admin_world: AdminWorld, new_editor):
    browser = TestClient(app)
    assert log_in(browser, new_editor, PASSWORD).status_code == 303
    copied = session_cookie(browser)
    with Session(admin_world.engine) as session:
        set_disabled(session, new_editor)
        create_user(session, new_editor, PASSWORD, replace=True)  # enabled again
    assert with_cookie(app, copied).get("/admin/jobs", follow_redirects=False).status_code == 303


def test_the_session_cookie_is_https_only_unless_turned_off(admin_world: AdminWorld):
    assert Settings(_env_file=None).admin_cookie_https_only is True
    secure = admin_world.settings.model_copy(update={"admin_cookie_https_only": True})
    cookie = TestClient(create_app(secure)).get("/admin/login").headers["set-cookie"]
    assert SESSION_COOKIE in cookie and re.search(r";\s*secure", cookie, re.I)
    plain = TestClient(create_app(admin_world.settings)).get("/admin/login").headers["set-cookie"]
    assert not re.search(r";\s*secure", plain, re.I)


# ---- 3. odd ids ------------------------------------------------------------------------------
def test_search_boxes_quote_ids_into_the_path(editor):
    for odd in ("a/b", "a?b#c", "50% off", "x/../routes"):
        found = editor.get("/admin/users", params={"user_id": odd}, follow_redirects=False)
        assert found.status_code == 303
        assert found.headers["location"].endswith("/admin/users/" + quote(odd, safe=""))
        page = editor.get(found.headers["location"])
        assert page.status_code == 200 and f"<code>{escape(odd)}</code>" in page.text, odd
    found = editor.get("/admin/articles", params={"article_id": LINKED_ID}, follow_redirects=False)
    assert found.headers["location"].endswith("/admin/articles/" + quote(LINKED_ID, safe=""))
    assert f'href="{escape(LINKED_URL)}"' in editor.get(found.headers["location"]).text
    missing = editor.get("/admin/articles", params={"article_id": "no/such/article"})
    assert missing.status_code == 404 and "No article" in missing.text


@pytest.fixture
def any_database_app(engine, settings: Settings, online) -> Iterator[tuple[TestClient, TestClient]]:
    """An app over an empty SQLite or PostgreSQL database (no build), and a logged-in browser."""
    url = engine.url.render_as_string(hide_password=False)
    app_settings = settings.model_copy(update={"database_url": url, "admin_cookie_https_only": False})
    with Session(engine) as session:
        create_user(session, EDITOR, PASSWORD)
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as anonymous:
        browser = TestClient(anonymous.app, raise_server_exceptions=False)
        assert log_in(browser, EDITOR, PASSWORD).status_code == 303
        yield anonymous, browser


def test_ids_with_nul_bytes_or_too_long_are_4xx_never_5xx(any_database_app):
    anonymous, browser = any_database_app
    long_id = "x" * 129
    answers = {path: browser.get(path, follow_redirects=False) for path in (
        "/admin/users/a%00b", "/admin/articles/a%00b", f"/admin/users/{long_id}", f"/admin/articles/{long_id}",
        "/admin/clusters/a%00b/c0", f"/admin/clusters/kmeans-tag/{long_id}",
        "/admin/users?user_id=a%00b", "/admin/articles?article_id=a%00b", f"/admin/articles?article_id={long_id}",
        "/admin/clusters?scheme=a%00b", "/admin/articles/a%2Fb")}
    token = csrf_of(browser.get("/admin/routes").text)
    answers["POST /admin/routes/a%00b"] = browser.post(
        "/admin/routes/a%00b", data={"csrf_token": token, "weight": 1, "quota": 1}, follow_redirects=False)
    for username in ("a\x00b", "x" * 5000):
        answers[f"login {username[:5]!r}"] = log_in(anonymous, username, PASSWORD)
    for what, answer in answers.items():
        assert 400 <= answer.status_code < 500, (what, answer.status_code, answer.text[:300])
    # The search boxes say what is wrong in the page itself.
    refused = answers["/admin/users?user_id=a%00b"]
    assert refused.status_code == 422 and 'name="user_id"' in refused.text and "NUL" in refused.text
    assert "128" in answers[f"/admin/articles?article_id={long_id}"].text
