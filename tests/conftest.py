"""Test fixtures: every API test runs on SQLite and on a real throwaway PostgreSQL."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from omnicanal.access.service import create_api_key
from omnicanal.app import create_app
from omnicanal.db import Base, Database, create_database
from omnicanal.models import metadata
from omnicanal.settings import Settings
from tests.support.postgres import PostgresCluster

BACKENDS = ["sqlite", "postgresql"]


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(external_url=os.environ.get("OMNICANAL_TEST_POSTGRES_URL"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file with the schema, copied for each test (much faster than building it each time).

    Tests build the schema from the models; tests/test_migrations.py proves the migrations build the same.
    """
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = create_database(Settings(database_url=f"sqlite:///{path}", environment="test"))
    metadata.create_all(db.write_engine)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_database(request: pytest.FixtureRequest) -> str:
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = f"omnicanal_test_{_worker()}"
    cluster.drop_database(name)
    cluster.create_database(name)
    url = cluster.url(name)
    db = create_database(Settings(database_url=url, environment="test"))
    metadata.create_all(db.write_engine)
    db.dispose()
    return url


def _truncate_all(db: Database) -> None:
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.write_engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    backend_name: str = request.param
    if backend_name == "postgresql":
        request.applymarker(pytest.mark.postgres)
    return backend_name


@pytest.fixture
def settings(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "omnicanal.db"
        shutil.copy(template, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_database")
    return Settings(database_url=url, environment="test", db_pool_size=5)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = create_database(settings)
    if not settings.is_sqlite:
        _truncate_all(database)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def app(settings: Settings, db: Database) -> Any:
    return create_app(settings, database=db)


@pytest.fixture
def make_key(db: Database) -> Callable[[str], str]:
    def make(role: str) -> str:
        with db.write() as session:
            _, token = create_api_key(session, name=f"test {role}", role=role)
        return token

    return make


@pytest.fixture
def client(app: Any, make_key: Callable[[str], str]) -> Iterator[TestClient]:
    """An API client acting as an admin integration."""
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {make_key('admin')}"
        yield test_client


@pytest.fixture
def client_as(app: Any, make_key: Callable[[str], str], client: TestClient) -> Callable[[str], TestClient]:
    """Another client on the same running app, acting with the given role."""

    def make(role: str) -> TestClient:
        other = TestClient(app)
        other.headers["Authorization"] = f"Bearer {make_key(role)}"
        return other

    return make
