"""One contract, four providers: providers.testing's suite against each live emulator (rclone's
fstests model). A new backend adds one class here."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest

from providers import StorageProvider, open_provider
from providers.testing import ProviderConformance, ProviderFactory
from tests.backends import billed_leftovers, create_s3_bucket, provider_factory, unique_name, visible_keys

AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq"


class _OnEmulator(ProviderConformance):
    kind = ""
    secrets = ("moto-secret-key", AZURITE_KEY)

    @pytest.fixture
    def make(self, request: pytest.FixtureRequest, tmp_path: Path) -> ProviderFactory:
        return provider_factory(self.kind, request, tmp_path)

    def listed(self, provider: StorageProvider) -> list[str]:
        return visible_keys(provider)

    def leftovers(self, provider: StorageProvider) -> list[str]:
        return billed_leftovers(provider)


class TestS3(_OnEmulator):
    kind = "s3"


class TestAzure(_OnEmulator):
    kind = "az"


class TestGCS(_OnEmulator):
    kind = "gs"


class TestLocal(_OnEmulator):
    kind = "file"


def test_a_secret_from_the_environment_is_not_pickled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      moto_url: str) -> None:
    bucket = unique_name()
    create_s3_bucket(moto_url, bucket)
    monkeypatch.setenv("PICKLE_TEST_SECRET", "env-only-secret-value")
    provider = open_provider(f"s3://{bucket}", endpoint_url=moto_url, region="us-east-1", access_key_id="testing",
                             secret_access_key_env="PICKLE_TEST_SECRET", addressing_style="path")
    data = pickle.dumps(provider)
    assert b"env-only-secret-value" not in data
    clone = pickle.loads(data)
    clone.upload("a.bin", io.BytesIO(b"a"))
    assert provider.exists("a.bin")
