"""The admin pages in a real browser: login, the user inspector's route columns and toggles, a
weight changed on the routes page (audited, and the fused list changes), titles as text."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session

from recall.online import OnlineStore, connect_redis
from recall.routeconfig import load_route_configs
from recall.service import RecallService
from recall.serving import ServingState
from tests.api.admin.conftest import (
    EDITOR,
    LINKED_ID,
    LINKED_URL,
    XSS_ID,
    XSS_TITLE,
    XSS_URL,
    AdminWorld,
    fill_login,
)


def served_routes(world: AdminWorld) -> list[str]:
    """The routes the server's build serves, computed the way the server does."""
    client = connect_redis(world.settings)
    try:
        return list(RecallService(OnlineStore(client, world.settings), ServingState.load(world.settings)).routes)
    finally:
        client.close()


def fused_items(page: Page) -> list[str]:
    return page.locator("#fused tbody a.article").evaluate_all(
        "links => links.filter(a => !a.closest('li')).map(a => a.getAttribute('title'))")


def test_login_then_every_route_column_is_filled_and_routes_toggle(page: Page, admin_world: AdminWorld):
    inspector = f"/admin/users/{admin_world.reader}"
    page.goto(inspector)
    expect(page).to_have_url(re.compile(r"/admin/login\?next="))  # no session: the login form
    fill_login(page, password="wrong password")
    expect(page.get_by_role("alert")).to_have_text("wrong username or password")
    fill_login(page)
    expect(page).to_have_url(re.compile(re.escape(inspector) + "$"))

    routes = served_routes(admin_world)
    assert "tag2vec" in routes and "hot" in routes
    columns = page.locator("section.column")
    assert columns.evaluate_all("cs => cs.map(c => c.dataset.route)") == routes
    for route in routes:
        rows = page.locator(f"section.column[data-route='{route}'] tbody tr")
        assert rows.count() >= 1 and rows.first.locator("a.article").count() >= 1, f"{route} is empty"
    assert page.locator("#clicks li a.article").count() >= 1
    assert len(fused_items(page)) >= 1
    assert page.locator("#fused li.route[data-route='hot']").count() >= 1

    # Unticking hot re-fuses without it (the form submits itself on change).
    page.locator("section.column[data-route='hot'] input[type=checkbox]").uncheck()
    expect(page).to_have_url(re.compile(r"picked=true"))
    assert not re.search(r"route=hot(&|$)", page.url)
    expect(page.locator("section.column[data-route='hot'] input[type=checkbox]")).not_to_be_checked()
    assert page.locator("#fused li.route[data-route='hot']").count() == 0
    assert len(fused_items(page)) >= 1


def test_a_weight_changed_on_the_routes_page_is_audited_and_refuses_the_list(page: Page, admin_world: AdminWorld):
    inspector = f"/admin/users/{admin_world.reader}"
    page.goto(inspector)
    fill_login(page)
    before = fused_items(page)
    assert before

    page.goto("/admin/routes")
    page.get_by_label("tag2vec weight").fill("50")
    page.locator("form#route-tag2vec button").click()
    expect(page.get_by_role("status")).to_have_text("tag2vec: weight changed")
    audit = page.locator("#audit tbody tr").first
    expect(audit).to_contain_text(EDITOR)
    expect(audit).to_contain_text("tag2vec")
    expect(audit).to_contain_text("weight 1.0 → 50.0")
    expect(page.get_by_label("tag2vec weight")).to_have_value("50.0")

    page.goto(inspector)
    after = fused_items(page)
    assert after != before
    # At weight 50 the top of the fused list is tag2vec's own top.
    top = page.locator("#fused tbody tr").first
    expect(top.locator("li.route[data-route='tag2vec']")).to_have_count(1)
    tag2vec_column = page.locator("section.column[data-route='tag2vec'] tbody tr a.article")
    assert after[0] == tag2vec_column.first.get_attribute("title")
    with Session(admin_world.engine) as session:
        assert load_route_configs(session)["tag2vec"].weight == 50.0


def test_a_title_with_markup_is_shown_as_text(page: Page, admin_world: AdminWorld):
    page.goto(f"/admin/articles/{XSS_ID}")
    fill_login(page)
    expect(page.locator("#article-title")).to_have_text(XSS_TITLE)
    # Its twin's page lists it as a neighbour: as text there too.
    page.goto(f"/admin/articles/{admin_world.world.articles[0].id}")
    neighbour = page.locator(f"section.column[data-route='tag2vec'] a.article[title='{XSS_ID}']")
    expect(neighbour).to_have_text(XSS_TITLE)
    assert page.evaluate("window.__xss") is None
    assert page.locator("script:not([src])").count() == 0 and page.locator("img[src=x]").count() == 0


def test_only_web_addresses_are_links_and_odd_ids_are_found(page: Page):
    page.goto(f"/admin/articles/{XSS_ID}")
    fill_login(page)
    expect(page.locator("#article-title")).to_have_text(XSS_TITLE)
    # Its javascript: address is shown, as text: nothing to click, nothing run.
    expect(page.locator("code", has_text=XSS_URL)).to_be_visible()
    assert page.locator("a[href^='javascript:' i], a[href*='__xss']").count() == 0
    # The search box finds an id with a slash, a query and a fragment in it; its web page is a link.
    page.locator("form.search input[name=article_id]").fill(LINKED_ID)
    page.locator("form.search button").click()
    expect(page.locator("h2 code").first).to_have_text(LINKED_ID)
    expect(page.locator(f"a[href='{LINKED_URL}']")).to_have_text(LINKED_URL)
    assert page.evaluate("window.__xss") is None


def test_the_pages_refuse_inline_script_and_framing(browser: Browser, base_url: str):
    context = browser.new_context(base_url=base_url)
    try:
        page = context.new_page()
        reported: list[str] = []
        context.on("console", lambda message: reported.append(message.text))
        response = page.goto("/admin/login")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        # Script that got into a page some other way (markup an escape missed) does not run.
        page.evaluate("""() => {
            const script = document.createElement("script");
            script.textContent = "window.__inline = 1";
            document.head.appendChild(script);
        }""")
        assert page.evaluate("window.__inline") is None
        # Another site cannot frame an admin page (clickjacking): the frame stays empty.
        other = context.new_page()
        other.set_content(f'<iframe src="{base_url}/admin/login"></iframe>')  # waits for the frame's load
        framed = [frame for frame in other.frames if frame != other.main_frame]
        assert len(framed) == 1 and framed[0].locator("form.login").count() == 0
        # Chromium says so on the console, as the page fixture expects to read it.
        assert any("Content Security Policy" in text for text in reported), reported
    finally:
        context.close()
