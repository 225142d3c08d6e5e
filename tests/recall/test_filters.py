"""Request filters: each drops for one reason, returns kept and removed, cheapest checks first."""

from __future__ import annotations

from recall.catalog import ItemCatalog, ItemMeta
from recall.domain import Candidate, RequestContext
from recall.filters import apply_filters, request_filters
from recall.online import FilterState

NOW = 1_800_000_000.0

CATALOG = ItemCatalog({
    "ok": ItemMeta(category="sports", published=NOW - 60, expires=NOW + 60),
    "evergreen": ItemMeta(category="sports", published=NOW - 86_400, expires=None),
    "expired": ItemMeta(category="sports", published=NOW - 7200, expires=NOW - 1),
    "expires_now": ItemMeta(category="sports", published=NOW - 7200, expires=NOW),
    "scheduled": ItemMeta(category="sports", published=NOW + 1),
    "published_now": ItemMeta(category="sports", published=NOW),
    "editor_hidden": ItemMeta(category="sports", published=NOW - 60, hidden=True),
    "politics": ItemMeta(category="politics", published=NOW - 60),
    # seen AND expired AND politics: the first filter in order names the reason.
    "many_reasons": ItemMeta(category="politics", published=NOW - 7200, expires=NOW - 5),
})


def run(ids, *, category=None, seen=(), hidden=()):
    ctx = RequestContext(user_id="u", now=NOW, category=category)
    filters = request_filters(ctx, CATALOG, FilterState(set(seen), set(hidden)))
    kept, dropped = apply_filters([Candidate(i, 1.0, "r") for i in ids], filters)
    return [c.item_id for c in kept], {d.candidate.item_id: d.reason for d in dropped}


def test_each_filter_drops_for_its_reason():
    ids = ["ok", "evergreen", "expired", "expires_now", "scheduled", "published_now", "editor_hidden",
           "politics", "redis_hidden", "seen_one", "not_in_catalog"]
    kept, dropped = run(ids, seen={"seen_one"}, hidden={"redis_hidden"})
    assert kept == ["ok", "evergreen", "published_now", "politics", "not_in_catalog"]
    assert dropped == {"expired": "expired", "expires_now": "expired", "scheduled": "unpublished",
                       "editor_hidden": "hidden", "redis_hidden": "hidden", "seen_one": "seen"}


def test_category_filter_only_when_asked():
    kept, dropped = run(["ok", "politics", "not_in_catalog"], category="sports")
    assert kept == ["ok"]
    assert dropped == {"politics": "category", "not_in_catalog": "category"}
    assert run(["ok", "politics"], category="politics")[0] == ["politics"]


def test_the_first_matching_filter_names_the_reason_metadata_before_seen():
    _, dropped = run(["many_reasons"], category="sports", seen={"many_reasons"})
    assert dropped == {"many_reasons": "expired"}
    _, dropped = run(["politics"], category="sports", seen={"politics"})
    assert dropped == {"politics": "category"}


def test_an_item_from_several_routes_is_judged_once_and_dropped_for_each():
    ctx = RequestContext(user_id="u", now=NOW)
    calls = []
    filters = request_filters(ctx, CATALOG, FilterState({"seen_one"}, set()))
    counting = [type(f)(f.reason, lambda i, f=f: calls.append(i) or f.drops(i)) for f in filters]
    candidates = [Candidate("seen_one", 1.0, "a"), Candidate("ok", 1.0, "a"), Candidate("seen_one", 0.5, "b")]
    kept, dropped = apply_filters(candidates, counting)
    assert [c.item_id for c in kept] == ["ok"]
    assert [(d.candidate.route, d.reason) for d in dropped] == [("a", "seen"), ("b", "seen")]
    assert calls.count("seen_one") == len(filters)  # every filter asked once, not once per route
