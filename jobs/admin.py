"""``recall admin ...``: editors of the admin pages and the feed backends' API keys.

Each command migrates the configured database first, so it works on a fresh machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from recall.credentials import (
    CredentialError,
    create_key,
    create_user,
    key_label,
    list_keys,
    revoke_key,
    set_disabled,
)
from recall.db import make_engine, make_sessionmaker, upgrade
from recall.settings import Settings

admin_app = typer.Typer(help="Editors (admin pages) and API keys (feed backends).", no_args_is_help=True)


@contextmanager
def database() -> Iterator[Session]:
    """A session on the configured, migrated database; a credential error ends the command."""
    engine = make_engine(Settings().sqlalchemy_url)
    try:
        upgrade(engine)
        with make_sessionmaker(engine)() as session:
            yield session
    except CredentialError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()


@admin_app.command("create-user")
def create_user_command(
    username: Annotated[str, typer.Argument(help="the editor's login name")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True,
                                          help="asked for when not given")],
    replace: Annotated[bool, typer.Option(help="set a new password for an existing editor "
                                                "(their open sessions end)")] = False,
) -> None:
    """Create an editor who may log in to the admin pages (/admin)."""
    with database() as session:
        create_user(session, username, password, replace=replace)
    Console().print(f"editor [bold]{username}[/bold] can log in at /admin/login")


@admin_app.command("disable-user")
def disable_user_command(username: Annotated[str, typer.Argument()]) -> None:
    """Stop an editor from logging in; every session they have open ends at its next page."""
    with database() as session:
        set_disabled(session, username)
    Console().print(f"editor [bold]{username}[/bold] disabled; their sessions are ended")


@admin_app.command("create-key")
def create_key_command(
    name: Annotated[str, typer.Argument(help="who uses the key, e.g. feed-backend")],
) -> None:
    """Create an API key and print it: it is shown this once and stored only hashed."""
    with database() as session:
        key, secret = create_key(session, name)
    console = Console()
    console.print(f"API key [bold]{key_label(key)}[/bold] for {name}; keep it now, it is not shown again:")
    # Plain print: the key alone on its line, unwrapped and unstyled, so scripts can capture it.
    print(secret)


@admin_app.command("revoke-key")
def revoke_key_command(
    key: Annotated[str, typer.Argument(help="the key's id, nrk_<id>, or the whole key")],
) -> None:
    """Revoke an API key: requests with it are refused (403) from now on."""
    with database() as session:
        revoked = revoke_key(session, key)
    Console().print(f"API key [bold]{key_label(revoked)}[/bold] ({revoked.name}) revoked "
                    f"at {revoked.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


@admin_app.command("list-keys")
def list_keys_command() -> None:
    """Every API key: id, name, when created, last used and revoked (never the secret)."""
    with database() as session:
        keys = list_keys(session)
    table = Table("key", "name", "created (UTC)", "last used", "revoked")
    for key in keys:
        table.add_row(key_label(key), key.name, f"{key.created_at:%Y-%m-%d %H:%M}",
                      f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never",
                      f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "")
    Console().print(table)
