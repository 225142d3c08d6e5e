"""``recall admin ...``: editors and API keys from the command line, on a fresh database."""

from __future__ import annotations

from sqlalchemy.orm import Session
from typer.testing import CliRunner

from jobs.cli import app
from recall.credentials import KeyCheck, authenticate, check_key
from recall.db import make_engine
from recall.models import AdminUser


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["admin", *args], input=stdin)


def test_create_user_from_an_option_or_a_prompt(cli_env):
    assert run("create-user", "ana", "--password", "correct horse").exit_code == 0
    prompted = run("create-user", "bob", stdin="battery staple\nbattery staple\n")
    assert prompted.exit_code == 0, prompted.output
    again = run("create-user", "ana", "--password", "other password")
    assert again.exit_code == 1 and "already exists" in again.output
    assert run("create-user", "ana", "--password", "other password", "--replace").exit_code == 0
    assert run("disable-user", "bob").exit_code == 0
    engine = make_engine(cli_env)
    with Session(engine) as session:
        assert authenticate(session, "ana", "other password") is not None
        assert authenticate(session, "bob", "battery staple") is None  # disabled
    engine.dispose()


def test_disabling_an_editor_ends_their_sessions(cli_env):
    assert run("create-user", "ana", "--password", "correct horse").exit_code == 0
    engine = make_engine(cli_env)
    with Session(engine) as session:
        before = session.get(AdminUser, "ana").session_version
    assert run("disable-user", "ana").exit_code == 0
    with Session(engine) as session:
        # Every signed session cookie carries the version it was made with: none matches now.
        assert session.get(AdminUser, "ana").session_version == before + 1
    engine.dispose()
    odd = run("create-user", "a\x00b", "--password", "correct horse")
    assert odd.exit_code == 1 and "username" in odd.output


def test_keys_are_printed_once_listed_without_secret_and_revoked(cli_env):
    created = run("create-key", "feed-backend")
    assert created.exit_code == 0, created.output
    secret = created.output.strip().splitlines()[-1]
    label = "_".join(secret.split("_")[:2])
    listing = run("list-keys")
    assert label in listing.output and "feed-backend" in listing.output and "never" in listing.output
    assert secret.split("_", 2)[2] not in listing.output

    engine = make_engine(cli_env)
    with Session(engine) as session:
        assert check_key(session, secret) is KeyCheck.VALID
    assert run("revoke-key", label).exit_code == 0
    with Session(engine) as session:
        assert check_key(session, secret) is KeyCheck.REVOKED
    engine.dispose()
    unknown = run("revoke-key", "nrk_00000000")
    assert unknown.exit_code == 1 and "no API key" in unknown.output
