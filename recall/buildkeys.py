"""The Redis keys a build derives, one namespace per build version.

A build's user vectors live in its vector spaces (its tag2vec vectors, click LSTM and DSSM user
tower), and its memberships, cluster profiles, centre and CF lists are labelled by its cluster
models: read next to another build's indexes they are wrong without any error. So they live
under ``b:{version}:`` (``OnlineStore.build_key``), and a serving process reads those of the
build it holds. The nightly job writes the new version's keys before it flips
``builds/ACTIVE``, so publishing is that one flip: a worker still on the old build reads the
old keys, one that loaded the new build the new ones.

=========================  ======  ==========================================================
key                        type    meaning
=========================  ======  ==========================================================
``builds``                 hash    version -> the reference time of its CF lists (the build's
                                   cutoff, unix s): every version with keys in Redis,
                                   complete or being written
``b:{version}:whole``      string  the version's keys are complete (who made them, when)
=========================  ======  ==========================================================

A version is registered before its first key is written and marked complete after its last.
Its keys are dropped when its build folder is pruned (``drop_unless``: the nightly job keeps the
keys of every published build on disk, which is every build a fallback or a rollback can reach)
or when the run that wrote them fails before publishing. A version registered but not on disk
belongs to a killed run or a pruned build, and goes at the next nightly run.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable

from recall.online import BUILD_WHOLE, OnlineStore

REGISTRY = "builds"
DELETE_BATCH = 1000


def register(online: OnlineStore, version: str, cutoff_ts: float) -> None:
    online.r.hset(online.k(REGISTRY), version, repr(float(cutoff_ts)))


def mark_complete(online: OnlineStore, version: str, by: str) -> None:
    online.r.set(online.build_key(version, BUILD_WHOLE), json.dumps({"by": by, "at": time.time()}))


def is_complete(online: OnlineStore, version: str) -> bool:
    return bool(online.r.exists(online.build_key(version, BUILD_WHOLE)))


def registered(online: OnlineStore) -> dict[str, float]:
    """Every version with keys in Redis -> the reference time of its CF lists."""
    return {version.decode(): float(ref) for version, ref in online.r.hgetall(online.k(REGISTRY)).items()}


def drop(online: OnlineStore, version: str) -> int:
    """Delete every key of ``version``; returns how many. The completeness marker goes first, so
    a request of that build meanwhile says it is degraded rather than reading half its keys."""
    online.r.delete(online.build_key(version, BUILD_WHOLE))
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", online.build_key(version, "")) + "*"
    deleted, batch = 0, []
    for key in online.r.scan_iter(match=pattern, count=DELETE_BATCH):
        batch.append(key)
        if len(batch) == DELETE_BATCH:
            deleted += online.r.unlink(*batch)
            batch = []
    if batch:
        deleted += online.r.unlink(*batch)
    online.r.hdel(online.k(REGISTRY), version)
    return deleted


def drop_unless(online: OnlineStore, keep: Iterable[str]) -> list[str]:
    """Drop the keys of every registered version not in ``keep`` (the builds on disk); returns
    the versions dropped."""
    keep = set(keep)
    gone = sorted(v for v in registered(online) if v not in keep)
    for version in gone:
        drop(online, version)
    return gone
