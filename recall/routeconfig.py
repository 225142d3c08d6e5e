"""Route configs in SQL: read them merged over the registry defaults; change them with an audit row."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from recall.models import RouteConfig as RouteConfigRow
from recall.models import RouteConfigAudit
from recall.routes import ROUTES, default_configs
from recall.routes.base import RouteConfig


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def load_route_configs(session: Session) -> dict[str, RouteConfig]:
    """Every registered route's config: its SQL row where there is one, else the default."""
    configs = default_configs()
    for row in session.scalars(select(RouteConfigRow)):
        if row.route in configs:
            default = configs[row.route]
            configs[row.route] = RouteConfig(row.route, row.enabled, row.weight, row.quota,
                                             {**default.params, **(row.params or {})})
    return configs


def update_route_config(session: Session, route: str, changed_by: str, *, enabled: bool | None = None,
                        weight: float | None = None, quota: int | None = None,
                        params: dict[str, Any] | None = None) -> RouteConfig:
    """Change one route's config and write who changed what (old -> new) to the audit table."""
    if route not in ROUTES:
        raise KeyError(f"unknown route {route!r}; known: {', '.join(sorted(ROUTES))}")
    if weight is not None and weight < 0:
        raise ValueError("weight must be >= 0")
    if quota is not None and quota < 0:
        raise ValueError("quota must be >= 0")
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
