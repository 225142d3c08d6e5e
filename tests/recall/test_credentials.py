"""recall/credentials.py on SQLite and PostgreSQL: hashed passwords, sessions that end on the
server, API keys, revocation."""

from __future__ import annotations

import pytest

from recall.credentials import (
    CredentialError,
    KeyCheck,
    authenticate,
    check_key,
    create_key,
    create_user,
    end_sessions,
    find_key,
    hash_password,
    key_label,
    list_keys,
    revoke_key,
    session_user,
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


def test_logout_disabling_and_a_new_password_end_every_session(sessions):
    with sessions() as session:
        first = create_user(session, "ana", "correct horse").session_version
        assert session_user(session, "ana", first).username == "ana"
        assert session_user(session, "ana", first + 1) is None and session_user(session, "ana", None) is None

        assert end_sessions(session, "ana").session_version == first + 1  # logout: every session ends
        assert session_user(session, "ana", first) is None
        assert session_user(session, "ana", first + 1).username == "ana"

        disabled = set_disabled(session, "ana").session_version
        assert disabled == first + 2 and session_user(session, "ana", disabled) is None
        renewed = create_user(session, "ana", "new password", replace=True).session_version  # enabled again
        assert renewed == first + 3
        assert session_user(session, "ana", disabled) is None and session_user(session, "ana", renewed) is not None
        assert set_disabled(session, "ana", False).session_version == renewed  # enabling ends nothing
        with pytest.raises(CredentialError, match="no editor"):
            end_sessions(session, "bob")
        assert session_user(session, "bob", 0) is None


def test_odd_usernames_are_refused_never_an_error(sessions):
    with sessions() as session:
        create_user(session, "ana", "correct horse")
        for odd in ("ana\x00", "\x00", "a" * 129, "a" * 10_000, ""):
            assert authenticate(session, odd, "correct horse") is None
            assert session_user(session, odd, 0) is None
        for odd in ("a\x00b", "a" * 129):
            with pytest.raises(CredentialError, match="username"):
                create_user(session, odd, "correct horse")


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
