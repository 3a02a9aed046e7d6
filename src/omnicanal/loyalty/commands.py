"""``omnicanal loyalty ...``: the loyalty jobs on demand (the worker also runs them on its schedule)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

loyalty_app = typer.Typer(help="Loyalty jobs and purchase codes.", no_args_is_help=True)


def _database() -> object:
    from omnicanal.cli import _database as open_database
    from omnicanal.cli import _settings
    from omnicanal.models import metadata

    assert metadata.tables  # every table known, so foreign keys resolve
    return open_database(_settings(), migrate_if_empty=True)


@loyalty_app.command("expire")
def expire() -> None:
    """Expire every lot past its date, exactly what each lot still holds."""
    from omnicanal.db import Database
    from omnicanal.loyalty.ledger import expire_due

    db = _database()
    assert isinstance(db, Database)
    total = 0
    while True:
        with db.write() as session:
            done = expire_due(session, limit=500)
        total += done
        if not done:
            break
    sys.stdout.write(f"expired {total} points\n")


@loyalty_app.command("jobs")
def jobs() -> None:
    """Run every loyalty job once: expiry, end-of-period tier review, birthdays, expiry notices."""
    from omnicanal.db import Database
    from omnicanal.handlers import register
    from omnicanal.loyalty.jobs import run

    db = _database()
    assert isinstance(db, Database)
    register()
    with db.write() as session:
        done = run(session)
    sys.stdout.write(" ".join(f"{k}={v}" for k, v in done.items()) + "\n")


@loyalty_app.command("codes")
def codes(
    batch: Annotated[str, typer.Option(help="Name of the batch (printed run, product line)")],
    count: Annotated[int, typer.Option(help="How many codes")],
    points: Annotated[int, typer.Option(help="Points each code is worth")],
) -> None:
    """Generate purchase codes, one per line on stdout (only their hashes are stored)."""
    from omnicanal.db import Database
    from omnicanal.errors import DomainError
    from omnicanal.loyalty.codes import generate

    db = _database()
    assert isinstance(db, Database)
    try:
        with db.write() as session:
            made = generate(session, batch=batch, count=count, points=points)
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    sys.stdout.write("\n".join(made) + "\n")
