"""The ``omnicanal`` command."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from omnicanal.channels.email.cli import email_app
from omnicanal.settings import Settings

app = typer.Typer(
    help="omnicanal: one shared, real-time customer record for every channel.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
user_app = typer.Typer(help="Staff users of the console.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for integrations.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.add_typer(email_app, name="email")


def _add_loyalty() -> None:
    from omnicanal.loyalty.commands import loyalty_app

    app.add_typer(loyalty_app, name="loyalty")


_add_loyalty()
catalog_app = typer.Typer(help="The product catalog as CSV.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
err = Console(stderr=True)


def _settings() -> Settings:
    try:
        return Settings()
    except ValueError as exc:
        err.print(f"[red]Configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _database(settings: Settings, *, migrate_if_empty: bool) -> object:
    from omnicanal.db import create_database
    from omnicanal.migrate import ensure_schema

    db = create_database(settings)
    if migrate_if_empty:
        try:
            outcome = ensure_schema(db.write_engine)
        except RuntimeError as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
        if outcome == "created":
            err.print("Created the database schema.")
    return db


@app.command()
def migrate() -> None:
    """Apply the database migrations."""
    from omnicanal.db import create_database
    from omnicanal.migrate import upgrade

    db = create_database(_settings())
    upgrade(db.write_engine)
    err.print("The database schema is up to date.")
    db.dispose()


def _serve(settings: Settings, host: str, port: int, database: object, *, workers: int = 1) -> None:
    from omnicanal.db import Database

    assert isinstance(database, Database)
    log_level = os.environ.get("OMNICANAL_LOG_LEVEL", "warning")
    if workers > 1:
        from omnicanal.serving import port_in_use

        database.dispose()  # each serving process opens its own
        if port_in_use(host, port):
            err.print(f"[red]Something already serves {host}:{port}.[/red] Pick another --port.")
            raise typer.Exit(2)
        sys.stderr.flush()
        # the supervisor only starts and watches the serving processes: a fresh interpreter without this one's imports
        supervisor = [sys.executable, "-m", "omnicanal.serving", host, str(port), str(workers), log_level]
        os.execv(sys.executable, supervisor)  # noqa: S606 - our own interpreter and module, no shell
    import uvicorn

    from omnicanal import longlived
    from omnicanal.app import create_app

    application = create_app(settings, database=database)
    longlived.enable()
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="serving processes sharing the port", envvar="OMNICANAL_WORKERS")
    ] = 1,
) -> None:
    """Serve the API and the console (migrates an empty database first)."""
    from omnicanal.db import sqlite_file

    settings = _settings()
    if workers > 1 and settings.is_sqlite and sqlite_file(settings.database_url) is None:
        err.print("[red]--workers needs a database file or PostgreSQL:[/red] each process would have its own memory.")
        raise typer.Exit(2)
    db = _database(settings, migrate_if_empty=True)
    err.print(f"omnicanal on http://{host}:{port}  (console /console, API docs /docs)")
    if workers > 1 and not settings.redis_url:
        err.print(
            f"[yellow]{workers} processes without OMNICANAL_REDIS_URL:[/yellow] a console or stream sees only the "
            "changes made by the process it is connected to."
        )
    _serve(settings, host, port, db, workers=workers)


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="create the sample data and exit")] = False,
) -> None:
    """Create realistic sample data, then serve it."""
    from omnicanal.db import Database
    from omnicanal.demo import load_demo

    settings = _settings()
    db = _database(settings, migrate_if_empty=True)
    assert isinstance(db, Database)
    summary = load_demo(db, settings)
    for line in summary:
        err.print(line)
    if not no_serve:
        err.print(f"Open http://{host}:{port}/console  (API docs: http://{host}:{port}/docs)")
        _serve(settings, host, port, db)


@app.command()
def worker() -> None:
    """Deliver the outbox (and run background jobs) in this process, until interrupted."""
    import signal
    import threading

    from omnicanal.app import build_runtime
    from omnicanal.db import Database
    from omnicanal.handlers import register

    settings = _settings()
    db = _database(settings, migrate_if_empty=True)
    assert isinstance(db, Database)
    register()
    runtime, outbox = build_runtime(settings, db)
    runtime.broadcaster.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    outbox.start()
    err.print("omnicanal worker delivering the outbox (Ctrl-C to stop)")
    stop.wait()
    outbox.stop()
    runtime.broadcaster.stop()
    db.dispose()


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="login email")],
    role: Annotated[str, typer.Option(help="admin, supervisor, agent, store_clerk, marketer or analyst")],
    name: Annotated[str, typer.Option(help="display name")] = "",
    language: Annotated[str, typer.Option(help="console language: es or en")] = "es",
    password: Annotated[
        str,
        typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, envvar="OMNICANAL_NEW_USER_PASSWORD"),
    ] = "",
) -> None:
    """Create a staff user (asks for the password)."""
    from omnicanal.access.service import create_user
    from omnicanal.db import Database
    from omnicanal.errors import DomainError

    settings = _settings()
    db = _database(settings, migrate_if_empty=True)
    assert isinstance(db, Database)
    try:
        with db.write() as session:
            user = create_user(session, email=email, role=role, password=password, display_name=name, language=language)
            err.print(f"Created {user.role} {user.email}")
    except DomainError as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None


@apikey_app.command("create")
def apikey_create(
    role: Annotated[str, typer.Option(help="the role the key acts with")],
    name: Annotated[str, typer.Option(help="what the key is for, e.g. 'web shop'")],
) -> None:
    """Create an API key; prints only the key, once."""
    from omnicanal.access.service import create_api_key
    from omnicanal.db import Database
    from omnicanal.errors import DomainError

    settings = _settings()
    db = _database(settings, migrate_if_empty=True)
    assert isinstance(db, Database)
    try:
        with db.write() as session:
            _, token = create_api_key(session, name=name, role=role)
    except DomainError as exc:
        err.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from None
    sys.stdout.write(token + "\n")


@catalog_app.command("import")
def catalog_import(path: Annotated[str, typer.Argument(help="CSV file, one row per variant")]) -> None:
    """Import products from CSV (see commerce/catalog_csv.py); reports the rows it rejected and why."""
    from rich.progress import Progress

    from omnicanal.commerce.catalog_csv import import_csv
    from omnicanal.db import create_database

    db = create_database(_settings())
    try:
        source = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as exc:
        err.print(f"[red]Cannot read {path}: {exc}[/red]")
        raise typer.Exit(2) from None
    with source, Progress(console=err) as progress, db.write() as session:
        task = progress.add_task("Importing products", total=None)
        report = import_csv(
            session, source, progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    err.print(f"Imported {report.products} products ({report.variants} rows).")
    for row in report.rejected:
        err.print(f"[yellow]line {row.line}:[/yellow] {row.reason}")
    db.dispose()
    if report.rejected:
        err.print(f"[red]{len(report.rejected)} rows rejected.[/red]")
        raise typer.Exit(1)


@catalog_app.command("export")
def catalog_export(path: Annotated[str, typer.Argument(help="CSV file to write ('-' for stdout)")]) -> None:
    """Export every product as CSV, in the format ``catalog import`` reads."""
    from omnicanal.commerce.catalog_csv import export_csv
    from omnicanal.db import create_database

    db = create_database(_settings())
    with db.read() as session:
        if path == "-":
            count = export_csv(session, sys.stdout)
        else:
            with open(path, "w", newline="", encoding="utf-8") as target:
                count = export_csv(session, target)
    err.print(f"Exported {count} rows.")
    db.dispose()


def main() -> None:
    app()
