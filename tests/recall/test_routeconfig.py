"""Route configs in SQL with an audit trail (the ``engine`` fixture runs each test on SQLite and
on PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from recall.models import RouteConfig as RouteConfigRow
from recall.models import RouteConfigAudit
from recall.routeconfig import InvalidRouteConfig, load_route_configs, update_route_config
from recall.routes import ROUTES, default_configs


def audit_rows(sessions) -> list[RouteConfigAudit]:
    with sessions() as session:
        return list(session.scalars(select(RouteConfigAudit).order_by(RouteConfigAudit.id)))


def test_without_rows_every_route_has_its_default(sessions):
    with sessions() as session:
        assert load_route_configs(session) == default_configs()
    assert set(default_configs()) == set(ROUTES)


def test_an_update_writes_the_row_and_an_audit_of_old_and_new(sessions):
    default = ROUTES["hot"].default
    with sessions() as session:
        new = update_route_config(session, "hot", "editor@example.org", weight=default.weight + 1.5,
                                  params={"window_hours": 3.0})
    assert new.weight == default.weight + 1.5 and new.quota == default.quota and new.enabled == default.enabled
    assert new.params == {**default.params, "window_hours": 3.0}

    [audit] = audit_rows(sessions)
    assert audit.route == "hot" and audit.changed_by == "editor@example.org" and audit.changed_at is not None
    assert audit.old == default.as_dict()
    assert audit.new == new.as_dict()
    with sessions() as session:
        row = session.get(RouteConfigRow, "hot")
        assert row.updated_by == "editor@example.org" and row.weight == new.weight
        assert load_route_configs(session)["hot"] == new


def test_successive_updates_chain_in_the_audit(sessions):
    with sessions() as session:
        first = update_route_config(session, "tag2vec", "alice", enabled=False)
        second = update_route_config(session, "tag2vec", "bob", quota=17, params={"cosine_floor": 0.7})
    old, new = [(a.old, a.new, a.changed_by) for a in audit_rows(sessions)]
    assert old[1] == first.as_dict() and old[2] == "alice"
    assert new == (first.as_dict(), second.as_dict(), "bob")
    assert second.enabled is False and second.quota == 17  # earlier changes are kept
    assert second.params["cosine_floor"] == 0.7


def test_loading_merges_rows_over_defaults(sessions):
    with sessions() as session:
        update_route_config(session, "hot", "ops", params={"ctr_power": 0.5})
    # A row for a route that is no longer registered is ignored.
    with sessions.begin() as session:
        session.add(RouteConfigRow(route="retired_route", enabled=True, weight=9.0, quota=1, params={}))
    with sessions() as session:
        configs = load_route_configs(session)
    defaults = default_configs()
    assert set(configs) == set(ROUTES)
    # Params the row does not name come from the default.
    assert configs["hot"].params == {**defaults["hot"].params, "ctr_power": 0.5}
    assert {name: c for name, c in configs.items() if name != "hot"} == \
        {name: c for name, c in defaults.items() if name != "hot"}


def test_unknown_routes_and_negative_values_are_rejected(sessions):
    with sessions() as session:
        with pytest.raises(KeyError, match="no_such_route"):
            update_route_config(session, "no_such_route", "ops", weight=1.0)
        with pytest.raises(ValueError, match="weight"):
            update_route_config(session, "hot", "ops", weight=-0.1)
        with pytest.raises(ValueError, match="quota"):
            update_route_config(session, "hot", "ops", quota=-1)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RouteConfigAudit)) == 0
        assert session.scalar(select(func.count()).select_from(RouteConfigRow)) == 0
        assert load_route_configs(session) == default_configs()


@pytest.mark.parametrize(("change", "named"), [
    ({"weight": float("inf")}, "weight"), ({"weight": float("nan")}, "weight"), ({"weight": float("-inf")}, "weight"),
    ({"weight": "heavy"}, "weight"), ({"quota": 2.5}, "quota"), ({"quota": float("inf")}, "quota"),
    ({"params": {"cosine_floor": float("nan")}}, "cosine_floor"),
    ({"params": {"window_hours": float("inf")}}, "window_hours"),
])
def test_non_finite_values_are_refused_with_the_field_named_and_nothing_written(sessions, change, named):
    """One route weighted inf or nan would make every fused score inf or nan (null in JSON)."""
    with sessions() as session:
        with pytest.raises(InvalidRouteConfig, match=named):
            update_route_config(session, "hot", "ops", **change)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(RouteConfigAudit)) == 0
        assert session.get(RouteConfigRow, "hot") is None
        assert load_route_configs(session) == default_configs()


def test_a_non_finite_weight_stored_before_the_check_is_read_as_the_default(sessions):
    with sessions.begin() as session:
        session.add(RouteConfigRow(route="hot", enabled=True, weight=float("inf"), quota=7, params={}))
    with sessions() as session:
        hot = load_route_configs(session)["hot"]
    assert hot.weight == ROUTES["hot"].default.weight and hot.quota == 7
