"""The README documents exactly the options the providers accept."""

from __future__ import annotations

from providers.docs import options_markdown
from tests.emulators import ROOT


def test_readme_provider_options_match_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- provider-options:start -->\n", "<!-- provider-options:end -->"
    documented = readme[readme.index(start) + len(start):readme.index(end)]
    assert documented.strip() == options_markdown().strip(), "run: python -m providers.docs and paste into README"


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
