"""Filters: each drops candidates for one reason and says which, cheapest first.

Like product-mixer's filters they return what they kept and what they removed, so drop counts
by reason (metrics) and the admin page's "why not?" come for free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from recall.catalog import ItemCatalog
from recall.domain import Candidate, Dropped, RequestContext
from recall.online import FilterState


@dataclass(frozen=True, slots=True)
class Filter:
    reason: str
    drops: Callable[[str], bool]


def request_filters(ctx: RequestContext, catalog: ItemCatalog, state: FilterState) -> list[Filter]:
    """The filters of one request, in order: metadata checks first, then the user's seen set.

    Articles missing from the catalog (clicked before any build described them) pass the
    metadata checks: nothing says they are unpublished, expired or hidden.
    """
    get = catalog.get
    now = ctx.now
    filters = [
        Filter("unpublished", lambda i: (m := get(i)) is not None and m.published is not None
               and m.published > now),
        Filter("expired", lambda i: (m := get(i)) is not None and m.expires is not None
               and m.expires <= now),
        Filter("hidden", lambda i: i in state.hidden or ((m := get(i)) is not None and m.hidden)),
    ]
    if ctx.category:
        want = ctx.category
        filters.append(Filter("category", lambda i: getattr(get(i), "category", None) != want))
    filters.append(Filter("seen", state.seen.__contains__))
    return filters


def apply_filters(candidates: list[Candidate], filters: list[Filter]) -> tuple[list[Candidate], list[Dropped]]:
    kept, dropped = [], []
    verdict: dict[str, str | None] = {}  # the same item reached by several routes is judged once
    for c in candidates:
        if c.item_id not in verdict:
            verdict[c.item_id] = next((f.reason for f in filters if f.drops(c.item_id)), None)
        reason = verdict[c.item_id]
        if reason is None:
            kept.append(c)
        else:
            dropped.append(Dropped(c, reason))
    return kept, dropped

