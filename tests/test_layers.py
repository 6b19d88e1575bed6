"""The layers each package's __init__ docstring promises, read from the source (every import, also
those inside functions): Celery and kombu only in archiver/worker, storage SDKs only in providers,
SQL only in the ledger, a pure domain, and no stage reaching into another's private names."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDKS = ("boto3", "botocore", "azure", "google")


def imports(package: str) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(file relative to the root, imported module, names taken from it) for every import in a package."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield str(path.relative_to(ROOT)), alias.name, ()
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                yield str(path.relative_to(ROOT)), node.module, tuple(a.name for a in node.names)


def top(module: str) -> str:
    return module.split(".")[0]


def stage(path_or_module: str) -> str:
    """archiver/copy/job.py and archiver.copy.job -> "copy"; archiver/runtime.py -> "runtime"."""
    parts = path_or_module.replace("/", ".").removesuffix(".py").split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_celery_and_kombu_only_in_the_worker_package() -> None:
    found = [(f, m) for f, m, _ in imports("archiver") if top(m) in ("celery", "kombu")
             and not f.startswith("archiver/worker/")]
    assert found == []


def test_storage_sdks_only_in_providers() -> None:
    found = [(f, m) for f, m, _ in imports("archiver") if top(m) in SDKS]
    assert found == []


def test_sql_only_in_the_ledger() -> None:
    # field_limits reads column lengths from the ledger's models (no SQL runs there)
    allowed = ("archiver/ledger/", "archiver/migrations/", "archiver/intake/field_limits.py")
    found = [(f, m) for f, m, _ in imports("archiver") if top(m) in ("sqlalchemy", "alembic")
             and not f.startswith(allowed)]
    assert found == []


def test_the_domain_imports_the_standard_library_and_itself_only() -> None:
    found = [(f, m) for f, m, _ in imports("archiver/domain")
             if top(m) not in sys.stdlib_module_names and not m.startswith("archiver.domain")]
    assert found == []


def test_no_stage_imports_another_stages_private_names() -> None:
    found = []
    for f, module, names in imports("archiver"):
        if top(module) != "archiver" or stage(module) == stage(f):
            continue
        private = [n for n in names if n.startswith("_")] + [p for p in module.split(".") if p.startswith("_")]
        if private:
            found.append((f, module, private))
    assert found == []


def test_providers_import_nothing_of_archiver() -> None:
    assert [(f, m) for f, m, _ in imports("providers") if top(m) == "archiver"] == []


def test_providers_use_no_private_attribute_of_an_sdk_object() -> None:
    # An underscore attribute is reached only on our own objects (self, super(), a writer's provider,
    # the suite's writer) or the standard library's (os._exit, hashlib._Hash).
    ours = ("self", "cls", "super()", "provider", "self.provider", "writer", "os", "hashlib")
    found = []
    for path in sorted((ROOT / "providers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and ast.unparse(node.value) not in ours):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert found == []


def test_only_the_publisher_puts_messages_on_the_broker() -> None:
    # Publisher sets each message's queue and time limits; a task that sends by itself skips them.
    found = []
    for path in sorted((ROOT / "archiver").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("apply_async", "send_task", "signature"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert [f for f in found if not f.startswith("archiver/worker/app.py:")] == []


def test_the_ledger_depends_on_no_stage_that_writes_through_it() -> None:
    later = ("intake", "copy", "videosdk", "maintenance", "worker", "cli")
    found = [(f, m) for f, m, _ in imports("archiver/ledger") if top(m) == "archiver" and stage(m) in later]
    assert found == []
