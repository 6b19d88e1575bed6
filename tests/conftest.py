from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import emulators


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with emulators.moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def azurite_connection_string() -> Iterator[str]:
    with emulators.azurite() as conn:
        yield conn


@pytest.fixture(scope="session")
def gcs_emulator_url() -> Iterator[str]:
    with emulators.fake_gcs() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with emulators.redis() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_server_url() -> str | None:
    import os

    return os.environ.get("ARCHIVER_TEST_DATABASE_URL")


def _database_params() -> list[str]:
    import os

    return ["sqlite"] + (["postgresql"] if os.environ.get("ARCHIVER_TEST_DATABASE_URL") else [])


@pytest.fixture(params=_database_params())
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, migrated ledger database: SQLite in a temp folder, or a new PostgreSQL database on the
    server ARCHIVER_TEST_DATABASE_URL names (created and dropped around the test)."""
    from archiver.ledger.database import create_ledger_engine, upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('ledger')}/ledger.db"
        upgrade(create_ledger_engine(url))
        yield url
        return
    with emulators.postgres_database(request.getfixturevalue("postgres_server_url")) as url:
        upgrade(create_ledger_engine(url))
        yield url
