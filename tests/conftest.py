from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests import emulators
from tests.http_source import HttpSource


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


def _stack_params() -> list[str]:
    import os

    amqp, pg = os.environ.get("ARCHIVER_TEST_AMQP_URL"), os.environ.get("ARCHIVER_TEST_DATABASE_URL")
    params = ["redis+sqlite"]
    if amqp:
        params.append("amqp+postgresql" if pg else "amqp+sqlite")
    if pg:
        params.append("redis+postgresql")
    return params


@pytest.fixture(scope="module", params=_stack_params())
def stack_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              moto_url: str, azurite_connection_string: str, gcs_emulator_url: str) -> Iterator[dict]:
    """Config, migrated ledger, empty broker queues and the stand-in CDN for one broker/ledger pair."""
    import contextlib
    import os

    from archiver.ledger.database import create_ledger_engine, upgrade
    from tests.http_source import HttpSource
    from tests.stack import empty_queues, write_config

    broker, database = request.param.split("+")
    root = tmp_path_factory.mktemp(request.param.replace("+", "-"))
    with contextlib.ExitStack() as stack:
        broker_url = (stack.enter_context(emulators.amqp_vhost(os.environ["ARCHIVER_TEST_AMQP_URL"]))
                      if broker == "amqp" else request.getfixturevalue("redis_url"))
        if database == "postgresql":
            database_url = stack.enter_context(emulators.postgres_database(os.environ["ARCHIVER_TEST_DATABASE_URL"]))
        else:
            database_url = f"sqlite:///{root}/ledger.db"
        upgrade(create_ledger_engine(database_url))
        empty_queues(broker_url)
        source = stack.enter_context(HttpSource())
        env, buckets = write_config(root, broker_url=broker_url, database_url=database_url, moto_url=moto_url,
                                    azure_connection=azurite_connection_string, gcs_url=gcs_emulator_url)
        # The test process opens the same destinations, whose secrets come from the environment.
        os.environ.update({k: v for k, v in env.items() if k != "ARCHIVER_CONFIG"})
        yield {"root": root, "broker_url": broker_url, "database_url": database_url, "env": env,
               "source": source, "buckets": buckets, "name": request.param}


@pytest.fixture(scope="module")
def source() -> Iterator[HttpSource]:
    """A stand-in CDN serving generated recordings, one per test module."""
    with HttpSource() as running:
        yield running


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """For tests that run a CLI main(): it points the root logger at the test's captured stderr,
    and the moto server's threads log through it after the capture is gone."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
