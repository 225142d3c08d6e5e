"""The registry of build versions with keys in Redis, and dropping one version's keys only."""

from __future__ import annotations

import numpy as np

from recall import buildkeys
from recall.clusterstore import ClusterStore


def keys_of(online, version: str) -> set[bytes]:
    return set(online.r.scan_iter(match=online.build_key(version, "*")))


def write(online, version: str) -> None:
    buildkeys.register(online, version, 1_000.0)
    online.set_user_vectors(version, "tag", [("u1", np.ones(4, np.float32)), ("u2", np.ones(4, np.float32))])
    ClusterStore(online, version).set_memberships({"u1": {"rule": ["sports"]}})
    buildkeys.mark_complete(online, version, "tests")


def test_a_version_is_registered_completed_and_dropped_alone(online):
    for version in ("v1", "v2", "v[12]*"):  # a folder name with glob characters drops only itself
        write(online, version)
    assert buildkeys.registered(online) == {"v1": 1_000.0, "v2": 1_000.0, "v[12]*": 1_000.0}
    assert all(buildkeys.is_complete(online, v) for v in ("v1", "v2", "v[12]*"))
    assert len(keys_of(online, "v1")) == 4  # two vectors, one membership, the marker

    assert buildkeys.drop(online, "v[12]*") == 3  # and the marker before them
    assert buildkeys.registered(online) == {"v1": 1_000.0, "v2": 1_000.0}
    assert len(keys_of(online, "v1")) == len(keys_of(online, "v2")) == 4

    assert buildkeys.drop_unless(online, ["v2", "v3"]) == ["v1"]
    assert not keys_of(online, "v1") and not buildkeys.is_complete(online, "v1")
    assert list(buildkeys.registered(online)) == ["v2"] and len(keys_of(online, "v2")) == 4
    assert online.r.exists(online.k("meta:whole"))  # the online state's own keys are not a build's
