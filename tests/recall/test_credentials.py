"""recall/credentials.py on SQLite and PostgreSQL: hashed passwords, API keys, revocation."""

from __future__ import annotations

import pytest

from recall.credentials import (
    CredentialError,
    KeyCheck,
    authenticate,
    check_key,
    create_key,
    create_user,
    find_key,
    hash_password,
    key_label,
    list_keys,
    revoke_key,
    set_disabled,
    verify_password,
)
from recall.models import AdminUser, ApiKey


def test_password_hashes_are_salted_and_verified():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and "correct horse" not in first
    assert first.startswith("scrypt$")
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct horsf", first)


def test_editors_log_in_with_their_password_only(sessions):
    with sessions() as session:
        create_user(session, "ana", "correct horse")
        stored = session.get(AdminUser, "ana")
        assert stored.password_hash != "correct horse" and stored.disabled is False
        assert authenticate(session, "ana", "correct horse").username == "ana"
        assert authenticate(session, "ana", "wrong horse") is None
        assert authenticate(session, "bob", "correct horse") is None

        with pytest.raises(CredentialError, match="already exists"):
            create_user(session, "ana", "another password")
        with pytest.raises(CredentialError, match="8 characters"):
            create_user(session, "cy", "short")

        set_disabled(session, "ana")
        assert authenticate(session, "ana", "correct horse") is None
        create_user(session, "ana", "new password", replace=True)  # also enables again
        assert authenticate(session, "ana", "correct horse") is None
        assert authenticate(session, "ana", "new password").username == "ana"


def test_keys_are_stored_hashed_and_checked(sessions):
    with sessions() as session:
        key, secret = create_key(session, "feed-backend")
        assert secret.startswith(f"nrk_{key.id}_") and len(secret) > 40
        row = session.get(ApiKey, key.id)
        assert secret.split("_", 2)[2] not in (row.secret_sha256, row.name, row.id)
        assert row.last_used_at is None

        assert check_key(session, secret) is KeyCheck.VALID
        assert session.get(ApiKey, key.id).last_used_at is not None
        for wrong in ("", "nrk_", secret + "x", secret.replace(key.id, "ffffffff"), f"nrk_{key.id}_guess"):
            assert check_key(session, wrong) is KeyCheck.UNKNOWN, wrong


def test_revocation_by_id_label_or_key(sessions):
    with sessions() as session:
        keys = [create_key(session, f"client-{i}") for i in range(3)]
        for (key, secret), given in zip(keys, (lambda k, s: k.id, lambda k, s: key_label(k), lambda k, s: s)):
            assert find_key(session, given(key, secret)).id == key.id
            revoked = revoke_key(session, given(key, secret))
            assert revoked.revoked_at is not None
            assert check_key(session, secret) is KeyCheck.REVOKED
        assert [k.name for k in list_keys(session)] == ["client-0", "client-1", "client-2"]
        with pytest.raises(CredentialError, match="no API key"):
            revoke_key(session, "nrk_00000000")
        with pytest.raises(CredentialError, match="needs a name"):
            create_key(session, "  ")
