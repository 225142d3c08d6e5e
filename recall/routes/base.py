"""What a route is, and what it is built from.

A route is a candidate source: ``retrieve(ctx, n)`` returns at most ``n`` candidates, best first,
as arrays (``Candidates``: catalog rows, scores, seeds), reading only the request context and the
in-memory artefacts it was built with; it does no I/O. What it reads of the user's Redis state it
declares in ``needs`` (the request prefetches the union), and ``windows`` names the hot windows
it reads from the live snapshot. Between its steps it calls ``ctx.deadline.check()``.

Routes are built per published build and per route config by the ``factory`` of their
``RouteSpec``; a factory returns ``None`` when the build lacks what the route needs (no index for
it, say), and the route is then simply not available.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from recall.domain import Candidates, ContextNeeds, RequestContext

KINDS = ("i2i", "u2i", "cluster", "fallback")
# Kinds whose raw score is a cosine similarity: the scorer reweights these by hotness, CTR, age.
SIMILARITY_KINDS = ("i2i", "u2i")


class Route(Protocol):
    name: str
    kind: str
    needs: ContextNeeds
    windows: tuple[float, ...]

    def retrieve(self, ctx: RequestContext, n: int) -> Candidates: ...


NO_NEEDS = ContextNeeds()


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """One row of ``route_configs`` (or the registry default when the row is absent)."""

    route: str
    enabled: bool = True
    weight: float = 1.0
    quota: int = 200
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "weight": self.weight, "quota": self.quota,
                "params": dict(self.params)}


@dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str
    kind: str
    # (serving state, config) -> route, or None when the build cannot serve it
    factory: Callable[[Any, RouteConfig], Route | None]
    default: RouteConfig
    # For i2i/u2i routes: the encoder whose vectors fill the route's index.
    encoder: str | None = None
    # For u2i routes: the kind of user vector the request context must prefetch from Redis.
    user_vector: str | None = None
    # The index a route searches by vector at request time (an HNSW one when it is large).
    searches: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"route {self.name}: kind must be one of {KINDS}, not {self.kind!r}")
