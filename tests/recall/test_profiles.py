"""User profiles: the Lua script's decay and addition on a real Redis, and profile arithmetic."""

from __future__ import annotations

import pytest

from recall.catalog import ItemMeta
from recall.profiles import UserProfile, click_fields, merge_profiles

DAY = 86400.0
FOOTBALL = ItemMeta(category="sports", subcategory="football", tags=(("goal", 1.0), ("derby", 0.5)))
ELECTION = ItemMeta(category="politics", subcategory="election", tags=(("ballot", 1.0),))


def profile(online, user="u1") -> UserProfile:
    return online.profiles([user])[user]


def test_a_click_adds_its_tags_topic_and_category(online):
    online.apply_clicks_to_profiles([("u1", 1000.0, FOOTBALL)])
    p = profile(online)
    assert p.tags == {("sports", "goal"): 1.0, ("sports", "derby"): 0.5}
    assert p.topics == {"football": 1.0} and p.categories == {"sports": 1.0}
    assert p.updated == 1000.0


def test_weights_halve_every_half_life(online, settings):
    half_life = settings.profile_half_life_days * DAY
    online.apply_clicks_to_profiles([("u1", 0.0, FOOTBALL), ("u1", half_life, ELECTION)])
    p = profile(online)
    assert p.categories["sports"] == pytest.approx(0.5)
    assert p.categories["politics"] == pytest.approx(1.0)
    # A late event (older than the profile) counts decayed by its age, and moves no clock back.
    online.apply_clicks_to_profiles([("u1", 0.0, FOOTBALL)])
    p = profile(online)
    assert p.categories["sports"] == pytest.approx(1.0)
    assert p.updated == pytest.approx(half_life)


def test_profiles_keep_the_strongest_entries_up_to_the_cap(online, settings):
    cap = settings.profile_cap
    articles = [ItemMeta(category="c", subcategory="s", tags=((f"t{n}", 1.0 + n),)) for n in range(cap + 100)]
    online.apply_clicks_to_profiles([("u1", 0.0, meta) for meta in articles])
    p = profile(online)
    entries = len(p.tags) + len(p.topics) + len(p.categories)
    assert entries <= cap + cap // 4
    assert ("c", f"t{cap + 99}") in p.tags  # the strongest tag stays
    assert ("c", "t0") not in p.tags  # the weakest went


def test_profiles_of_users_are_separate_and_missing_ones_empty(online):
    online.apply_clicks_to_profiles([("u1", 0.0, FOOTBALL), ("u2", 0.0, ELECTION)])
    profiles = online.profiles(["u1", "u2", "nobody"])
    assert set(profiles["u1"].categories) == {"sports"}
    assert set(profiles["u2"].categories) == {"politics"}
    assert not profiles["nobody"]


def test_user_profile_summary_for_the_admin_page(online):
    online.apply_clicks_to_profiles([("u1", 0.0, FOOTBALL), ("u1", 0.0, FOOTBALL), ("u1", 0.0, ELECTION)])
    summary = online.user_profile("u1", n=2)
    assert summary.tags == [("goal", 2.0), ("ballot", 1.0)]
    assert summary.categories[0] == ("sports", 2.0)


def test_profile_arithmetic():
    p = UserProfile(tags={("sports", "goal"): 3.0, ("news", "goal"): 1.0, ("sports", "derby"): 2.0},
                    topics={"football": 3.0, "tennis": 1.0, "golf": 2.0})
    assert p.top_tags(1) == [("goal", 4.0)]
    assert p.interests(2) == ["football", "golf"]
    assert p.tags_by_category() == {"sports": {"goal": 3.0, "derby": 2.0}, "news": {"goal": 1.0}}
    # Members weigh the same in a group, however much each of them reads.
    heavy = UserProfile(topics={"football": 100.0})
    light = UserProfile(topics={"tennis": 1.0})
    assert merge_profiles([heavy, light]).topics == {"football": 1.0, "tennis": 1.0}


def test_click_fields_of_an_article_without_tags_or_category():
    assert click_fields(ItemMeta()) == {}
    assert click_fields(ItemMeta(category="news")) == {"topic\tnews": 1.0, "cat\tnews": 1.0}
