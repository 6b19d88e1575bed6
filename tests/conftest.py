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
