"""The storage contract as a test suite: a new backend runs every case with one class.

    from providers.testing import ProviderConformance

    class TestMine(ProviderConformance):
        secrets = ("my-secret-key",)  # must never show in repr or pickles

        @pytest.fixture
        def make(self) -> ProviderFactory:  # make(prefix="pre", **options) on a fresh, empty bucket
            return lambda prefix="pre", **o: open_provider(f"mine://{fresh_bucket()}/{prefix}", **o)

        def listed(self, provider): ...  # every key a lister sees under the prefix (relative)
        def leftovers(self, provider): ...  # what an aborted write may leave billed (multipart uploads)

Each case is a method of ``ContractCases`` (round trips, create-only, stat, check, pickling) or
``AbortCases`` (whatever ends a write early leaves nothing behind), after rclone's shared backend
tests. Lives here: `streams` (test data of any length without holding it), `contract`, `aborts`.
May import: `providers` and pytest (a test dependency: importing this package needs the test extra).
"""

from providers.testing.aborts import AbortCases
from providers.testing.contract import ContractCases, ProviderFactory
from providers.testing.streams import PART, Unsized, pattern_sha256, unsized


class ProviderConformance(ContractCases, AbortCases):
    """Every case of the one contract; subclass it and define the fixture ``make`` (and, for the abort
    cases, ``listed``; ``leftovers`` where a write can leave something billed)."""


__all__ = [
    "PART",
    "AbortCases",
    "ContractCases",
    "ProviderConformance",
    "ProviderFactory",
    "Unsized",
    "pattern_sha256",
    "unsized",
]
