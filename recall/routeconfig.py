"""Route configs in SQL: read them merged over the registry defaults; change them with an audit row.

Weights, quotas and numeric params must be finite: one route weighted ``inf`` or ``nan`` would
make every fused score ``inf`` or ``nan`` (which JSON writes as null). ``update_route_config``
refuses such a change (``InvalidRouteConfig``, a ValueError naming the field), and a value that
reached SQL before this check is read as the route's default (with a warning).
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recall.models import RouteConfig as RouteConfigRow
from recall.models import RouteConfigAudit
from recall.routes import ROUTES, default_configs
from recall.routes.base import RouteConfig


log = logging.getLogger(__name__)


class InvalidRouteConfig(ValueError):
    """A route config change refused: the message names the field and why."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _finite(value: Any) -> bool:
    """False for a non-finite float (inf, nan); True for any other value."""
    return not isinstance(value, float) or math.isfinite(value)


def load_route_configs(session: Session) -> dict[str, RouteConfig]:
    """Every registered route's config: its SQL row where there is one, else the default. A
    non-finite weight or param stored before they were refused is replaced by the default."""
    configs = default_configs()
    for row in session.scalars(select(RouteConfigRow)):
        if row.route in configs:
            default = configs[row.route]
            weight = row.weight if row.weight is not None and _finite(float(row.weight)) else default.weight
            params = {name: value for name, value in (row.params or {}).items() if _finite(value)}
            if weight != row.weight or len(params) != len(row.params or {}):
                log.warning("route %s: a non-finite weight or param in SQL is ignored (default used)", row.route)
            configs[row.route] = RouteConfig(row.route, row.enabled, weight, row.quota,
                                             {**default.params, **params})
    return configs


def _check(weight: float | None, quota: int | None, params: dict[str, Any] | None) -> None:
    if weight is not None:
        try:
            number = float(weight)
        except (TypeError, ValueError) as error:
            raise InvalidRouteConfig(f"weight must be a number, not {weight!r}") from error
        if not math.isfinite(number) or number < 0:
            raise InvalidRouteConfig(f"weight must be a finite number >= 0, not {weight!r}")
    if quota is not None and not (isinstance(quota, int | float) and not isinstance(quota, bool)
                                  and _finite(float(quota)) and quota == int(quota) and quota >= 0):
        raise InvalidRouteConfig(f"quota must be a whole number >= 0, not {quota!r}")
    for name, value in (params or {}).items():
        if not _finite(value):
            raise InvalidRouteConfig(f"param {name} must be a finite number, not {value!r}")


def update_route_config(session: Session, route: str, changed_by: str, *, enabled: bool | None = None,
                        weight: float | None = None, quota: int | None = None,
                        params: dict[str, Any] | None = None) -> RouteConfig:
    """Change one route's config and write who changed what (old -> new) to the audit table."""
    if route not in ROUTES:
        raise KeyError(f"unknown route {route!r}; known: {', '.join(sorted(ROUTES))}")
    _check(weight, quota, params)
    old = load_route_configs(session)[route]
    new = RouteConfig(
        route,
        old.enabled if enabled is None else enabled,
        old.weight if weight is None else float(weight),
        old.quota if quota is None else int(quota),
        {**old.params, **(params or {})},
    )
    now = _utcnow()
    row = session.get(RouteConfigRow, route)
    if row is None:
        row = RouteConfigRow(route=route)
        session.add(row)
    row.enabled, row.weight, row.quota, row.params = new.enabled, new.weight, new.quota, new.params
    row.updated_at, row.updated_by = now, changed_by
    session.add(RouteConfigAudit(route=route, changed_by=changed_by, changed_at=now,
                                 old=old.as_dict(), new=new.as_dict()))
    session.commit()
    return new
