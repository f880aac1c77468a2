"""Shared fixtures: a real PostgreSQL schema per test, a SQLite file per test, and real
HTTP servers on loopback.

PostgreSQL is the machine's (``ETL_TEST_DATABASE_URL`` overrides the default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Outside CI a missing server skips
the PostgreSQL half of the suite; in CI (``CI=true``) it fails it.
"""

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from etl_assets_tests.support import Warehouse

DEFAULT_TEST_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def postgres_url() -> str:
    return os.environ.get("ETL_TEST_DATABASE_URL", DEFAULT_TEST_URL)


@pytest.fixture(scope="session")
def postgres_available() -> str:
    url = postgres_url()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL at {sa.make_url(url).render_as_string(hide_password=True)} is not reachable: {exc.orig}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_warehouse(postgres_available: str) -> Iterator[Warehouse]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    warehouse = Warehouse.create(postgres_available, schema)
    try:
        yield warehouse
    finally:
        warehouse.engine.dispose()
        cleanup = sa.create_engine(postgres_available)
        with cleanup.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        cleanup.dispose()


@pytest.fixture
def sqlite_warehouse(tmp_path) -> Iterator[Warehouse]:
    warehouse = Warehouse.create(f"sqlite:///{tmp_path / 'warehouse.db'}", None)
    try:
        yield warehouse
    finally:
        warehouse.engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse(request: pytest.FixtureRequest) -> Warehouse:
    """Each test that takes ``warehouse`` runs on both backends."""
    return request.getfixturevalue(f"{request.param}_warehouse")
