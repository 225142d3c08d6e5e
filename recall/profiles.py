"""User interest profiles: time-decayed weights of the tags, topics and categories a user clicked.

A profile is one Redis hash, ``u:{user}:profile``. Its fields are ``tag\\t{category}\\t{tag}``
(a tag is kept with the category it was read in, which crosstag groups by), ``topic\\t{topic}``
(the article's subcategory) and ``cat\\t{category}``, plus ``_t``, the time the weights are
decayed to. A click adds the clicked article's tag weights and 1 to its topic and category.

Decay and addition happen in one Lua script, so two API workers applying clicks of the same user
never lose an update, and an event older than the profile (a late delivery, a replay) counts
decayed by its age. The same script rebuilds every profile from SQL in the nightly job, so the
online and batch profiles cannot drift apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from recall.catalog import ItemMeta

TIME_FIELD = "_t"

# KEYS[1] profile; ARGV: event time, half-life (s), cap, then field/weight pairs.
APPLY_CLICK = """
local key = KEYS[1]
local ts = tonumber(ARGV[1])
local half_life = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local t = tonumber(redis.call('HGET', key, '_t') or ARGV[1])
if ts > t then
  local factor = 2 ^ (-(ts - t) / half_life)
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if all[i] ~= '_t' then redis.call('HSET', key, all[i], tonumber(all[i + 1]) * factor) end
  end
  t = ts
end
local gain = 2 ^ (-(t - ts) / half_life)
for i = 4, #ARGV, 2 do redis.call('HINCRBYFLOAT', key, ARGV[i], tonumber(ARGV[i + 1]) * gain) end
redis.call('HSET', key, '_t', t)
local n = redis.call('HLEN', key) - 1
if n > cap + cap / 4 then
  local all = redis.call('HGETALL', key)
  local entries = {}
  for i = 1, #all, 2 do
    if all[i] ~= '_t' then table.insert(entries, {all[i], tonumber(all[i + 1])}) end
  end
  table.sort(entries, function(a, b) return a[2] < b[2] end)
  for i = 1, n - cap do redis.call('HDEL', key, entries[i][1]) end
end
return n
"""


def click_fields(meta: ItemMeta) -> dict[str, float]:
    """What one click on an article adds to its reader's profile."""
    category = meta.category or ""
    fields = {f"tag\t{category}\t{tag}": weight for tag, weight in meta.tags if weight > 0}
    if meta.subcategory or meta.category:
        fields[f"topic\t{meta.subcategory or meta.category}"] = 1.0
    if meta.category:
        fields[f"cat\t{meta.category}"] = 1.0
    return fields


@dataclass(slots=True)
class UserProfile:
    tags: dict[tuple[str, str], float] = field(default_factory=dict)  # (category, tag) -> weight
    topics: dict[str, float] = field(default_factory=dict)
    categories: dict[str, float] = field(default_factory=dict)
    updated: float | None = None

    @classmethod
    def parse(cls, raw: Mapping[bytes | str, bytes | str]) -> UserProfile:
        profile = cls()
        for key, value in raw.items():
            key = key.decode() if isinstance(key, bytes) else key
            weight = float(value)
            kind, _, rest = key.partition("\t")
            if key == TIME_FIELD:
                profile.updated = weight
            elif kind == "tag":
                category, _, tag = rest.partition("\t")
                profile.tags[(category, tag)] = weight
            elif kind == "topic":
                profile.topics[rest] = weight
            elif kind == "cat":
                profile.categories[rest] = weight
        return profile

    def __bool__(self) -> bool:
        return bool(self.tags or self.topics or self.categories)

    def top_tags(self, n: int) -> list[tuple[str, float]]:
        """Tags by weight, summed over the categories they were read in."""
        totals: dict[str, float] = defaultdict(float)
        for (_, tag), weight in self.tags.items():
            totals[tag] += weight
        return _top(totals, n)

    def top_topics(self, n: int) -> list[tuple[str, float]]:
        return _top(self.topics, n)

    def top_categories(self, n: int) -> list[tuple[str, float]]:
        return _top(self.categories, n)

    def tags_by_category(self) -> dict[str, dict[str, float]]:
        groups: dict[str, dict[str, float]] = defaultdict(dict)
        for (category, tag), weight in self.tags.items():
            groups[category][tag] = weight
        return groups

    def interests(self, k: int) -> list[str]:
        """The top-k topics, the rule clusters' interests."""
        return [topic for topic, _ in self.top_topics(k)]

    def share(self) -> UserProfile:
        """Each part scaled to sum to 1: how members count equally in a group profile."""
        return UserProfile(_scaled(self.tags), _scaled(self.topics), _scaled(self.categories), self.updated)

    def add(self, other: UserProfile) -> None:
        """Add ``other``'s weights to this profile's (a group profile adding a member's share)."""
        for part, total in ((other.tags, self.tags), (other.topics, self.topics),
                            (other.categories, self.categories)):
            for key, weight in part.items():
                total[key] = total.get(key, 0.0) + weight


def merge_profiles(profiles: Iterable[UserProfile]) -> UserProfile:
    """A group profile: the members' shares summed, so each member weighs the same."""
    group = UserProfile()
    for profile in profiles:
        group.add(profile.share())
    return group


def _top(weights: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    return sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _scaled(weights: dict) -> dict:
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()} if total > 0 else {}
