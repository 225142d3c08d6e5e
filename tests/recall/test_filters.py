"""Request filters: each drops for one reason, returns kept and removed, cheapest checks first."""

from __future__ import annotations

import numpy as np

from recall.catalog import ItemCatalog, ItemMeta
from recall.domain import Candidates, RequestContext
from recall.filters import Filter, apply_filters, request_filters
from recall.live import LiveSnapshot

NOW = 1_800_000_000.0


def catalog() -> ItemCatalog:
    return ItemCatalog({
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
        "redis_hidden": ItemMeta(category="sports", published=NOW - 60),
        "seen_one": ItemMeta(category="sports", published=NOW - 60),
    })


def context(cat: ItemCatalog, *, category=None, seen=(), hidden=()) -> RequestContext:
    live = LiveSnapshot(NOW, hidden_rows=np.unique(cat.ensure(list(hidden))))
    return RequestContext(user_id="u", now=NOW, category=category, seen_rows=cat.ensure(list(seen)), live=live)


def run(ids, *, category=None, seen=(), hidden=()):
    cat = catalog()
    ctx = context(cat, category=category, seen=seen, hidden=hidden)
    rows = cat.ensure(ids)  # ids the build does not describe get a placeholder row
    out = apply_filters({"r": Candidates.of(rows, np.ones(len(rows)))}, request_filters(ctx, cat))
    removed, reasons = out.removed["r"]
    return ([cat.ids[r] for r in out.kept["r"].rows],
            {cat.ids[r]: out.reasons[k] for r, k in zip(removed.rows, reasons)})


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
    # A category no article has keeps nothing (and never matches the articles without one).
    kept, dropped = run(["ok", "not_in_catalog"], category="weather")
    assert kept == [] and set(dropped.values()) == {"category"}


def test_the_first_matching_filter_names_the_reason_metadata_before_seen():
    _, dropped = run(["many_reasons"], category="sports", seen={"many_reasons"})
    assert dropped == {"many_reasons": "expired"}
    _, dropped = run(["politics"], category="sports", seen={"politics"})
    assert dropped == {"politics": "category"}


def test_hidden_and_seen_ids_unknown_to_the_build_are_still_dropped():
    """An id first met online (clicked, hidden) gets a row; the filters match it by that row."""
    kept, dropped = run(["new_one", "new_two", "ok"], seen={"new_one"}, hidden={"new_two"})
    assert kept == ["ok"] and dropped == {"new_one": "seen", "new_two": "hidden"}


def test_an_item_from_several_routes_is_judged_once_and_dropped_for_each():
    cat = catalog()
    ctx = context(cat, seen={"seen_one"})
    calls = []
    filters = request_filters(ctx, cat)
    counting = [Filter(f.reason, lambda rows, f=f: calls.append((f.reason, rows.copy())) or f.drops(rows))
                for f in filters]
    seen_one, ok = cat.rows(["seen_one", "ok"])
    per_route = {"a": Candidates.of([seen_one, ok], [1.0, 0.9], [0, 0], None, ["a-seed"]),
                 "b": Candidates.of([seen_one], [0.5], [0], None, ["b-seed"])}
    out = apply_filters(per_route, counting)
    assert [cat.ids[r] for r in out.kept["a"].rows] == ["ok"] and len(out.kept["b"]) == 0
    assert out.kept["a"].seed_labels == ["a-seed"]  # kept candidates keep their provenance
    removed = [(route, cat.ids[r], out.reasons[k]) for route, (gone, reasons) in out.removed.items()
               for r, k in zip(gone.rows, reasons)]
    assert removed == [("a", "seen_one", "seen"), ("b", "seen_one", "seen")]
    assert out.dropped == {"seen": 2}
    # Every filter is asked once per request, over every route's candidates, not once per route.
    assert [reason for reason, _ in calls] == [f.reason for f in filters]
    assert all(len(rows) == 3 for _, rows in calls)


def test_later_filters_are_asked_only_about_what_is_still_undecided():
    cat = catalog()
    calls = []
    filters = [Filter(f.reason, lambda rows, f=f: calls.append((f.reason, len(rows))) or f.drops(rows))
               for f in request_filters(context(cat), cat)]
    out = apply_filters({"r": Candidates.of(cat.rows(["expired", "scheduled", "ok"]), [3.0, 2.0, 1.0])}, filters)
    assert out.dropped == {"expired": 1, "unpublished": 1}
    assert calls == [("unpublished", 3), ("expired", 2), ("hidden", 1), ("seen", 1)]
    # Nothing left to judge: the remaining filters are not asked at all.
    calls.clear()
    apply_filters({"r": Candidates.of(cat.rows(["scheduled"]), [1.0])}, filters)
    assert calls == [("unpublished", 1)]
    assert apply_filters({}, filters).dropped == {}


def test_filters_without_a_live_snapshot_still_apply_the_catalogs_hidden_flag():
    cat = catalog()
    ctx = RequestContext(user_id="", now=NOW)
    out = apply_filters({"r": Candidates.of(cat.rows(["editor_hidden", "ok"]), [2.0, 1.0])},
                        request_filters(ctx, cat))
    assert [cat.ids[r] for r in out.kept["r"].rows] == ["ok"] and out.dropped == {"hidden": 1}
