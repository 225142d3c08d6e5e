"""Credentials: editors' passwords and the feed backends' API keys, both stored only hashed.

Passwords are hashed with scrypt (stdlib ``hashlib``), a salt of their own each, and compared in
constant time. scrypt is slow and memory-hard on purpose: a leaked table must not give back
passwords people chose. An editor's ``session_version`` ends their sessions on the server: every
session cookie carries the version it was made with, and logging out, disabling the editor or
setting a new password moves it on.

An API key reads ``nrk_<id>_<secret>``: the id (8 hex digits) is public, names the key in
listings and revocations and finds its row; the secret is 32 random bytes. Only the secret's
sha256 is stored. A fast hash is enough here (unlike for passwords): 256 random bits cannot be
guessed back from their hash, and the check runs on every request.

Every function that changes something commits: each change is a whole unit of its own.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from recall.models import AdminUser, ApiKey

KEY_PREFIX = "nrk"
# scrypt cost: 16 MiB and ~50 ms per hash, OWASP's minimum for interactive logins.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# A key's last use is written at most this often: a write per request would cost more than the request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# The admin_users.username column; longer names, and names with a NUL (which PostgreSQL text
# cannot hold), are never editors.
USERNAME_MAX_LENGTH = 128
# Passwords hashed at once, at most (16 MiB each): a flood of logins from many addresses queues
# here instead of taking a server's memory (each address and account is throttled on its own,
# api/admin/throttle.py).
_HASHING = threading.BoundedSemaphore(4)


class CredentialError(ValueError):
    """A credential cannot be created or changed as asked (the message says why)."""


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ---- passwords -------------------------------------------------------------------------------
def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    with _HASHING:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash``: the cost travels with the hash, so it can be raised later."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    scheme, n, r, p, salt, digest = encoded.split("$")
    if scheme != "scrypt":
        raise ValueError(f"unknown password hash scheme {scheme!r}")
    return hmac.compare_digest(_scrypt(password, _unb64(salt), int(n), int(r), int(p)), _unb64(digest))


@functools.cache
def _unknown_user_hash() -> str:
    """Checked against when the username is unknown, so that a wrong name takes as long as a
    wrong password and response times do not tell which usernames exist."""
    return hash_password(secrets.token_urlsafe(16))


def _possible_username(username: str) -> bool:
    """Whether a name could be an editor's (a lookup of any other would fail or find nothing)."""
    return 0 < len(username) <= USERNAME_MAX_LENGTH and "\x00" not in username


def create_user(session: Session, username: str, password: str, *, replace: bool = False) -> AdminUser:
    """A new editor; with ``replace``, an existing one gets the new password (and is enabled),
    and every session they had ends."""
    username = username.strip()
    if not username:
        raise CredentialError("a username cannot be empty")
    if not _possible_username(username):
        raise CredentialError(f"a username has at most {USERNAME_MAX_LENGTH} characters and no NUL")
    if len(password) < 8:
        raise CredentialError("a password needs at least 8 characters")
    user = session.get(AdminUser, username)
    if user is not None and not replace:
        raise CredentialError(f"editor {username!r} already exists")
    if user is None:
        user = AdminUser(username=username, created_at=_utcnow(), session_version=0)
        session.add(user)
    else:
        _end_sessions(user)  # a new password: whoever had the old one is logged out
    user.password_hash, user.disabled = hash_password(password), False
    session.commit()
    return user


def _end_sessions(user: AdminUser) -> None:
    """Move the editor's session version on, in SQL (``version + 1``), so that two of these at
    once cannot both write the same number."""
    user.session_version = AdminUser.session_version + 1


def _editor(session: Session, username: str) -> AdminUser:
    user = session.get(AdminUser, username) if _possible_username(username) else None
    if user is None:
        raise CredentialError(f"no editor {username!r}")
    return user


def set_disabled(session: Session, username: str, disabled: bool = True) -> AdminUser:
    """Disabling also ends every session the editor has (enabling again brings none back)."""
    user = _editor(session, username)
    user.disabled = disabled
    if disabled:
        _end_sessions(user)
    session.commit()
    return user


def end_sessions(session: Session, username: str) -> AdminUser:
    """End every session of the editor, wherever it was opened (what logging out does)."""
    user = _editor(session, username)
    _end_sessions(user)
    session.commit()
    return user


def active_user(session: Session, username: str) -> AdminUser | None:
    """The editor if they exist and are not disabled (a session outlives neither)."""
    user = session.get(AdminUser, username) if _possible_username(username) else None
    return user if user is not None and not user.disabled else None


def session_user(session: Session, username: str, version: object) -> AdminUser | None:
    """The editor a session cookie names, if they are active and the session is still theirs:
    made at their current ``session_version`` (none ended it since)."""
    user = active_user(session, username)
    return user if user is not None and type(version) is int and version == user.session_version else None


def authenticate(session: Session, username: str, password: str) -> AdminUser | None:
    user = session.get(AdminUser, username) if _possible_username(username) else None
    if user is None:
        verify_password(password, _unknown_user_hash())
        return None
    if not verify_password(password, user.password_hash) or user.disabled:
        return None
    return user


# ---- API keys --------------------------------------------------------------------------------
class KeyCheck(enum.Enum):
    VALID = "valid"
    UNKNOWN = "unknown"  # malformed, never issued, or a wrong secret
    REVOKED = "revoked"


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split_key(key: str) -> tuple[str, str] | None:
    """``nrk_<id>_<secret>`` -> (id, secret); None when it is not shaped like a key."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def key_label(key: ApiKey) -> str:
    """What listings show of a key: its public part."""
    return f"{KEY_PREFIX}_{key.id}"


def create_key(session: Session, name: str) -> tuple[ApiKey, str]:
    """A new key and its full text, which is shown once and never stored."""
    name = name.strip()
    if not name:
        raise CredentialError("a key needs a name (who uses it)")
    key_id = secrets.token_hex(4)
    while session.get(ApiKey, key_id) is not None:
        key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(id=key_id, name=name, secret_sha256=_sha256(secret), created_at=_utcnow())
    session.add(key)
    session.commit()
    return key, f"{KEY_PREFIX}_{key_id}_{secret}"


def find_key(session: Session, id_or_key: str) -> ApiKey | None:
    """A key by its id, its public part (``nrk_<id>``) or its full text."""
    text = id_or_key.strip()
    if text.startswith(f"{KEY_PREFIX}_"):
        text = text.split("_", 2)[1]
    return session.get(ApiKey, text)


def revoke_key(session: Session, id_or_key: str) -> ApiKey:
    key = find_key(session, id_or_key)
    if key is None:
        raise CredentialError(f"no API key {id_or_key!r}")
    if key.revoked_at is None:
        key.revoked_at = _utcnow()
        session.commit()
    return key


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def verify_key(session: Session, presented: str) -> tuple[KeyCheck, str | None]:
    """Whether a presented key is valid, and its id when it names one."""
    parts = _split_key(presented)
    key = session.get(ApiKey, parts[0]) if parts else None
    if key is None or not hmac.compare_digest(_sha256(parts[1]), key.secret_sha256):
        return KeyCheck.UNKNOWN, None
    return (KeyCheck.REVOKED if key.revoked_at is not None else KeyCheck.VALID), key.id


def record_use(session: Session, key_ids: set[str]) -> None:
    """Stamp ``last_used_at`` of keys used since the last call (to the minute)."""
    now = _utcnow()
    for key in session.scalars(select(ApiKey).where(ApiKey.id.in_(key_ids))):
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            key.last_used_at = now
    session.commit()


def check_key(session: Session, presented: str) -> KeyCheck:
    """Whether a presented key is valid; a valid key's last use is recorded (to the minute)."""
    outcome, key_id = verify_key(session, presented)
    if outcome is KeyCheck.VALID:
        record_use(session, {key_id})
    return outcome


@dataclass(slots=True)
class _Verdict:
    outcome: KeyCheck
    key_id: str | None
    checked_at: float


class KeyCache:
    """API keys verified in memory, so that the read path never touches SQL.

    A key is verified against SQL on its first use and again once its verdict is older than
    ``ttl`` seconds (at most 60); ``refresh`` (every reload tick) re-checks every cached key in
    one query and writes ``last_used_at`` of the keys used since. A revoked key therefore stops
    working within one reload tick, and at the latest after ``ttl``. Verdicts are held by the
    key's sha256, never the key; unknown keys are cached too (a flood of wrong keys costs no
    SQL), and the cache is emptied when it reaches ``max_entries``.
    """

    def __init__(self, sessions, ttl: float = 60.0, max_entries: int = 10_000):
        self.sessions = sessions
        self.ttl = ttl
        self.max_entries = max_entries
        self._verdicts: dict[str, _Verdict] = {}
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def cached(self, presented: str) -> KeyCheck | None:
        """The verdict if a fresh one is cached (no I/O), else None."""
        verdict = self._verdicts.get(_sha256(presented))
        if verdict is None or time.monotonic() - verdict.checked_at > self.ttl:
            return None
        if verdict.outcome is KeyCheck.VALID:
            self._used.add(verdict.key_id)
        return verdict.outcome

    def key_id(self, presented: str) -> str | None:
        """The id of a key verified before (events are namespaced by it)."""
        verdict = self._verdicts.get(_sha256(presented))
        return verdict.key_id if verdict is not None else None

    def check(self, presented: str) -> KeyCheck:
        outcome = self.cached(presented)
        if outcome is not None:
            return outcome
        with self.sessions() as session:
            outcome, key_id = verify_key(session, presented)
        with self._lock:
            if len(self._verdicts) >= self.max_entries:
                self._verdicts.clear()
            self._verdicts[_sha256(presented)] = _Verdict(outcome, key_id, time.monotonic())
            if outcome is KeyCheck.VALID:
                self._used.add(key_id)
        return outcome

    def refresh(self) -> None:
        """Re-check every cached key against SQL and record the keys' last use."""
        with self._lock:
            used, self._used = self._used, set()
            verdicts = dict(self._verdicts)
        ids = {v.key_id for v in verdicts.values() if v.key_id}
        with self.sessions() as session:
            revoked = {key.id: key.revoked_at is not None
                       for key in session.scalars(select(ApiKey).where(ApiKey.id.in_(ids)))} if ids else {}
            if used:
                record_use(session, used)
        now = time.monotonic()
        with self._lock:
            for digest, verdict in verdicts.items():
                if verdict.key_id is None:
                    continue
                outcome = KeyCheck.UNKNOWN if verdict.key_id not in revoked else (
                    KeyCheck.REVOKED if revoked[verdict.key_id] else KeyCheck.VALID)
                self._verdicts[digest] = _Verdict(outcome, verdict.key_id, now)
