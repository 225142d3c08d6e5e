"""Filters: each drops candidates for one reason and says which, cheapest first.

Like product-mixer's filters they return what they kept and what they removed, so drop counts
by reason (metrics) and the admin page's "why not?" come for free. A filter is a boolean mask
over catalog rows, computed from the catalog's columns, the live snapshot and the user's seen
rows: one vectorised expression per filter over every route's candidates at once.

Articles the build does not describe (placeholder rows: clicked or listed online before any
metadata reached this process) pass the metadata checks: nothing says they are unpublished,
expired or hidden.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recall.catalog import ItemCatalog
from recall.domain import Candidates, RequestContext


@dataclass(frozen=True, slots=True)
class Filter:
    reason: str
    drops: Callable[[np.ndarray], np.ndarray]  # catalog rows -> True where the row is dropped


def request_filters(ctx: RequestContext, catalog: ItemCatalog) -> list[Filter]:
    """The filters of one request, in order: metadata checks first, then the user's seen set."""
    now = ctx.now
    published, expires, hidden = catalog.published, catalog.expires, catalog.hidden
    hidden_live = ctx.live.hidden_rows if ctx.live is not None else np.zeros(0, np.int32)
    filters = [
        Filter("unpublished", lambda rows: published[rows] > now),
        Filter("expired", lambda rows: expires[rows] <= now),
        Filter("hidden", lambda rows: hidden[rows] | np.isin(rows, hidden_live)),
    ]
    if ctx.category:
        codes, want = catalog.category, catalog.category_code(ctx.category)
        filters.append(Filter("category", lambda rows: codes[rows] != want))
    seen = ctx.seen_rows
    filters.append(Filter("seen", lambda rows: np.isin(rows, seen)))
    return filters


@dataclass(slots=True)
class Filtered:
    kept: dict[str, Candidates]
    dropped: Counter  # reason -> candidates dropped, over every route
    # route -> (the removed candidates, each one's reason as an index into ``reasons``), for
    # explain and the admin pages
    removed: dict[str, tuple[Candidates, np.ndarray]]
    reasons: list[str]


def judge(rows: np.ndarray, filters: list[Filter]) -> np.ndarray:
    """Each row's first filter that drops it (its index in ``filters``), -1 where none does."""
    reason = np.full(len(rows), -1, np.int8)
    for code, f in enumerate(filters):
        undecided = np.flatnonzero(reason < 0)
        if not len(undecided):
            break
        reason[undecided[f.drops(rows[undecided])]] = code
    return reason


def apply_filters(per_route: dict[str, Candidates], filters: list[Filter]) -> Filtered:
    """Judge every route's candidates at once; each dropped one gets the first filter that
    drops it."""
    names = list(per_route)
    sizes = [len(per_route[name]) for name in names]
    rows = np.concatenate([per_route[name].rows for name in names]) if names else np.zeros(0, np.int32)
    reason = judge(rows, filters)
    counts = np.bincount(reason[reason >= 0], minlength=len(filters))
    dropped = Counter({f.reason: int(c) for f, c in zip(filters, counts) if c})
    kept, removed = {}, {}
    for name, part in zip(names, np.split(reason, np.cumsum(sizes)[:-1]) if names else []):
        candidates = per_route[name]
        kept[name] = candidates.take(part < 0)
        gone = part >= 0
        removed[name] = (candidates.take(gone), part[gone])
    return Filtered(kept, dropped, removed, [f.reason for f in filters])
