"""Packaging: pyproject.toml declares every package the code imports, with an upper bound where the
code relies on a library's internals (a new major version may move them)."""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib.metadata import distributions, packages_distributions

from tests.emulators import ROOT

# Packages whose private attributes or internal classes the code uses (see the comment in pyproject.toml).
INTERNALS_USED = ("google-cloud-storage", "celery", "kombu", "uvicorn")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, str]:
    """Declared distribution name (normalised) -> its requirement text, extras included."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_normalise(re.match(r"[A-Za-z0-9_.\-]+", r).group(0)): r for r in requirements}  # type: ignore[union-attr]


def _imported_modules() -> dict[str, set[str]]:
    """Top-level third-party modules imported by archiver/, providers/ and celeryconfig.py -> files."""
    files = [*ROOT.joinpath("archiver").rglob("*.py"), *ROOT.joinpath("providers").rglob("*.py"),
             ROOT / "celeryconfig.py"]
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("archiver", "providers", "celeryconfig"):
                    found.setdefault(name if top in ("google", "azure") else top, set()).add(
                        str(path.relative_to(ROOT)))
    return found


def _distributions(module: str) -> set[str]:
    """The installed distributions that provide `module` (namespace packages: the longest known prefix)."""
    owners = packages_distributions()
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        # packages_distributions() knows top-level names only; for namespace packages (google.*, azure.*)
        # the distribution is found from the files it installed.
        prefix = ".".join(parts[:end])
        if end == 1 and prefix in owners and prefix not in ("google", "azure"):
            return {_normalise(d) for d in owners[prefix]}
        if end > 1 and (found := _namespace_owners().get("/".join(parts[:end]))):
            return found
    return set()


@functools.cache
def _namespace_owners() -> dict[str, set[str]]:
    """"google/cloud", "google/auth", "azure/core", ... -> the distributions that installed files there."""
    owners: dict[str, set[str]] = {}
    for dist in distributions():
        for file in dist.files or ():
            parts = file.parts
            if len(parts) > 1 and parts[0] in ("google", "azure"):
                for end in (2, 3):
                    if len(parts) > end:
                        owners.setdefault("/".join(parts[:end]), set()).add(_normalise(dist.metadata["Name"]))
    return owners


def test_every_imported_package_is_declared() -> None:
    declared = _declared()
    missing = {}
    for module, files in sorted(_imported_modules().items()):
        # Not installed (an optional extra such as azure-identity): its distribution name by convention.
        providers = _distributions(module) or {_normalise(module.replace(".", "-"))}
        if not providers & declared.keys():
            missing[module] = f"{sorted(providers)} (imported by {sorted(files)[:2]})"
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_packages_whose_internals_are_used_have_an_upper_bound() -> None:
    declared = _declared()
    for name in INTERNALS_USED:
        assert "<" in declared[name], f"{declared[name]}: the code uses its internals; bound the major version"
