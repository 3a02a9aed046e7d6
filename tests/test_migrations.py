"""The migrations build exactly the schema the models describe, on both databases."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from omnicanal.migrate import head_revision, upgrade
from omnicanal.models import metadata
from omnicanal.settings import Settings
from tests.support.postgres import PostgresCluster


def _diff(url: str) -> list[object]:
    engine = create_engine(url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert context.get_current_revision() == head_revision(engine)
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_sqlite_migrations_match_the_models(tmp_path: object) -> None:
    assert _diff(f"sqlite:///{tmp_path}/m.db") == []


def test_postgresql_migrations_match_the_models(postgres_cluster: PostgresCluster) -> None:
    postgres_cluster.drop_database("omnicanal_migrations")
    postgres_cluster.create_database("omnicanal_migrations")
    assert _diff(postgres_cluster.url("omnicanal_migrations")) == []
    assert Settings(database_url=postgres_cluster.url("x")).is_sqlite is False


def _functions(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc AS p"
                " JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
            )
            return {name: definition for name, definition in rows}
    finally:
        engine.dispose()


def test_postgresql_migrations_and_the_models_create_the_same_functions(postgres_cluster: PostgresCluster) -> None:
    for name in ("omnicanal_functions_migrated", "omnicanal_functions_created"):
        postgres_cluster.drop_database(name)
        postgres_cluster.create_database(name)
    migrated = create_engine(postgres_cluster.url("omnicanal_functions_migrated"))
    created = create_engine(postgres_cluster.url("omnicanal_functions_created"))
    try:
        upgrade(migrated)
        metadata.create_all(created)
    finally:
        migrated.dispose()
        created.dispose()
    functions = _functions(postgres_cluster.url("omnicanal_functions_migrated"))
    assert "loyalty_redeem" in functions
    assert functions == _functions(postgres_cluster.url("omnicanal_functions_created"))
