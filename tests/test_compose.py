"""docker-compose.yml is right by construction: no Docker engine runs here, so every part of it that the
application interprets is checked against the application itself.

- every `archiver ...` command parses with the real CLI parser (a typo'd verb or flag fails);
- every environment variable set on an application container is one the code reads, and its value
  parses (ARCHIVER_* through archiver.settings.config, secrets named by `*_env` options in the mounted configs);
- every mounted archiver.toml passes `archiver config validate` with exactly the container's environment;
- the broker and ledger URLs name the Redis and PostgreSQL services with their credentials;
- healthchecks, depends_on conditions, profiles, volumes, ports and the Dockerfile fit together;
- deploy/trial_buckets.py makes every destination of the trial config pass `archiver check` (emulators);
- the README's commands parse, its TOML examples load, and its configuration reference has a row for
  every setting with its ARCHIVER_* variable and every variable docker-compose.yml interpolates.

`test_each_check_catches_a_mistake` breaks a copy of the file in one way per check and asserts the
checks notice, so none of them can silently pass everything.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import click
import pytest
import yaml

from archiver.cli import cli
from archiver.cli.app import parse as parse_command
from archiver.settings.config import ENVIRONMENT
from tests.emulators import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
README = ROOT / "README.md"

# What `docker compose` is given in the tests: the variables docker-compose.yml requires (${X:?...}).
REQUIRED = {"POSTGRES_PASSWORD": "compose0test0password", "REDIS_PASSWORD": "compose0redis0password"}
# Each deploy/*.toml is one way to run the file (ARCHIVER_CONFIG_NAME picks it).
CONFIG_CHOICES = [{}, {"ARCHIVER_CONFIG_NAME": "archiver.trial.toml"}]

# Read by the code outside archiver.settings.config.ENVIRONMENT (grep: os.environ / os.getenv), or by the SDKs.
EXTRA_VARIABLES = {
    "ARCHIVER_CONFIG",  # archiver.settings.config.config_path
    "VIDEOSDK_SECRET_KEY",  # archiver.videosdk.api.VideoSDKClient.from_settings
    "STORAGE_EMULATOR_HOST",  # providers.gcs.provider (and google-cloud-storage)
    "PROMETHEUS_MULTIPROC_DIR",  # prometheus_client, set by `archiver worker --metrics-port`
    "AZURE_STORAGE_CONNECTION_STRING",  # providers.azure.options
    "GOOGLE_APPLICATION_CREDENTIALS",  # google.auth.default (Application Default Credentials)
}
# The standard variables boto3/botocore read (an explicit list: a misspelt AWS_* must not pass).
AWS_VARIABLES = {
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION",
    "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CA_BUNDLE", "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE", "AWS_STS_REGIONAL_ENDPOINTS", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS", "AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT", "AWS_EC2_METADATA_DISABLED",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION",
}  # fmt: skip
INFRASTRUCTURE_HEALTHCHECKS = {  # service -> words its healthcheck must contain
    "redis": ("redis-cli", "ping"),
    "postgres": ("pg_isready",),
    "azurite": ("10000",),
    "fake-gcs-server": ("4443",),
    "moto": ("5000",),
}
ROLES = {"receiver": ("serve",), "worker": ("worker",), "beat": ("beat",), "migrate": ("db", "upgrade")}


# ---- reading the file the way docker compose does ---------------------------------------------------

_INTERPOLATION = re.compile(r"\$(?:(?P<dollar>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                            r"(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, env: dict[str, str], problems: list[str], where: str) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR:+alt}, $VAR and $$."""

    def one(m: re.Match[str]) -> str:
        if m["dollar"]:
            return "$"
        name = m["name"] or m["bare"]
        op, arg = m["op"] or "", m["arg"] or ""
        value = env.get(name)
        empty = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return arg if empty else str(value)
        if op.endswith("?"):
            if empty:
                problems.append(f"{where}: docker compose stops here: {name} is required ({arg})")
                return ""
            return str(value)
        if op.endswith("+"):
            return "" if empty else arg
        if value is None:
            problems.append(f"{where}: ${{{name}}} is unset and has no default (compose substitutes '')")
            return ""
        return value

    return _INTERPOLATION.sub(one, text)


def resolve(node: Any, env: dict[str, str], problems: list[str], where: str = "") -> Any:
    if isinstance(node, str):
        return interpolate(node, env, problems, where)
    if isinstance(node, dict):
        return {k: resolve(v, env, problems, f"{where}.{k}" if where else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(v, env, problems, f"{where}[{i}]") for i, v in enumerate(node)]
    return node


def load_raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # merge keys (<<: *archiver) are resolved here


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services running the application image (built from this repository)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def environment_of(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", "PASSED_THROUGH"]
        return {k: (v if sep else None) for k, sep, v in (item.partition("=") for item in env)}
    return dict(env)


def container_environment(service: dict[str, Any]) -> dict[str, str]:
    """What the process sees: values as strings; pass-through variables (no value) unset, as on a host
    where they are not exported."""
    return {k: str(v) for k, v in environment_of(service).items() if v is not None}


def argv_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    entry = service.get("entrypoint") or []
    return (shlex.split(entry) if isinstance(entry, str) else list(entry)) + argv


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str, bool]]:
    """(host path, container path, read-only) of each bind mount; named volumes are skipped."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((ROOT / volume["source"], volume["target"], bool(volume.get("read_only"))))
            continue
        source, target, *mode = volume.split(":")
        if source.startswith((".", "/")):
            mounts.append(((ROOT / source).resolve(), target, "ro" in mode))
    return mounts


def all_mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, container path, read-only) of every volume, named or bind."""
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            out.append((str(volume.get("source")), volume["target"], bool(volume.get("read_only"))))
        else:
            source, target, *mode = volume.split(":")
            out.append((source, target, "ro" in mode))
    return out


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    for host, target, _ in bind_mounts(service):
        target = target.rstrip("/")
        if container_path == target:
            return host
        if container_path.startswith(target + "/"):
            return host / container_path[len(target) + 1:]
    return None


def under_writable_volume(service: dict[str, Any], path: str) -> bool:
    return any(not ro and (path == t.rstrip("/") or path.startswith(t.rstrip("/") + "/"))
               for _, t, ro in all_mounts(service))


def mounted_configs() -> list[Path]:
    return sorted((ROOT / "deploy").glob("*.toml"))


def config_env_variables(paths: list[Path]) -> set[str]:
    """Variables named by `*_env` options of the destinations in these configs."""
    names = set()
    for path in paths:
        for table in tomllib.loads(path.read_text()).get("destinations", []):
            names |= {v for k, v in table.items() if k.endswith("_env") and isinstance(v, str)}
    return names


def allowed_variables() -> set[str]:
    return ({variable for variable, _ in ENVIRONMENT.values()} | EXTRA_VARIABLES | AWS_VARIABLES
            | config_env_variables(mounted_configs()))


def seconds(text: str | int | float) -> float:
    if isinstance(text, int | float):
        return float(text)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    total, rest = 0.0, text.strip()
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", rest):
        total += float(number) * units[unit]
    return total


@contextlib.contextmanager
def process_environment(env: dict[str, str]) -> Iterator[None]:
    """Run as inside the container: exactly its variables (plus PATH/HOME for the interpreter)."""
    keep = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    with mock.patch.dict(os.environ, {**keep, **env}, clear=True):
        yield


# ---- the checks: each returns a list of problems ------------------------------------------------------

def parse_archiver(argv: list[str]) -> tuple[Any, str | None]:
    """(namespace with .verb/.db_verb, None) if `archiver argv...` is a real command, else (None, why)."""
    if any(a in ("-h", "--help") for a in argv):
        return None, "asks for --help: click would print it and exit"
    try:
        path, params = parse_command(cli, argv)
    except click.ClickException as exc:
        return None, exc.format_message().strip().splitlines()[-1] if exc.format_message().strip() else "click exited"
    return SimpleNamespace(verb=path[0], db_verb=path[1] if len(path) > 1 else None, **params), None


def command_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    services = compose["services"]
    for name, svc in app_services(compose).items():
        argv = argv_of(svc)
        if not argv:
            problems.append(f"{name}: no command (the image's default only prints --help)")
            continue
        if argv[0] == "archiver":
            _, why = parse_archiver(argv[1:])
            if why:
                problems.append(f"{name}: `{shlex.join(argv)}`: {why}")
        elif argv[0] in ("python", "python3") and len(argv) > 1:
            script = host_path(svc, argv[1])
            if script is None or not script.is_file():
                problems.append(f"{name}: {argv[1]} is not a file mounted from this repository")
        else:
            problems.append(f"{name}: runs {argv[0]!r}, neither archiver nor a mounted Python script")
    for role, verb in ROLES.items():
        argv = argv_of(services.get(role, {}))
        args, _ = parse_archiver(argv[1:]) if argv[:1] == ["archiver"] else (None, None)
        runs = (getattr(args, "verb", None), getattr(args, "db_verb", None))[:len(verb)]
        if runs != verb:
            problems.append(f"{role}: must run `archiver {' '.join(verb)}`, runs {argv}")
    return problems


def environment_problems(compose: dict[str, Any]) -> list[str]:
    problems, allowed = [], allowed_variables()
    for name, svc in app_services(compose).items():
        for key, value in environment_of(svc).items():
            if key not in allowed:
                problems.append(f"{name}: {key} is not read by the archiver, its SDKs or a mounted config")
            if isinstance(value, bool) or not isinstance(value, str | int | float | None):
                problems.append(f"{name}: {key} must be a string (compose refuses {type(value).__name__})")
        env = container_environment(svc)
        for (_, _), (variable, parse) in ENVIRONMENT.items():
            if variable in env:
                try:
                    parse(env[variable])
                except ValueError as exc:
                    problems.append(f"{name}: {variable}={env[variable]!r} does not parse: {exc}")
    return problems


def validate_config(svc: dict[str, Any]) -> tuple[int, str]:
    """Run `archiver config validate` as the container would: its variables only."""
    from archiver.cli import main

    env = container_environment(svc)
    config = env.get("ARCHIVER_CONFIG")
    path = host_path(svc, config) if config else None
    if path is None:
        return 2, f"ARCHIVER_CONFIG={config!r} is not a file mounted from this repository"
    if not path.is_file():
        return 2, f"ARCHIVER_CONFIG={config} is {path}, which does not exist"
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # main() configures logging for a process of its own
    try:
        with process_environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--config", str(path), "config", "validate"])
    finally:
        root.handlers[:], root.level = handlers, level
    return code, (out.getvalue() + err.getvalue()).strip()


def config_problems(compose: dict[str, Any]) -> list[str]:
    from archiver.settings.config import load_settings

    problems = []
    for name, svc in app_services(compose).items():
        code, output = validate_config(svc)
        if code != 0:
            problems.append(f"{name}: archiver config validate: {output}")
            continue
        if name == "worker":  # the one role that opens destinations: it needs every secret they name
            problems += [f"worker: archiver config validate: {line}" for line in output.splitlines()
                         if line.startswith("warning:")]
        env = container_environment(svc)
        with process_environment(env):
            settings = load_settings(host_path(svc, env["ARCHIVER_CONFIG"]), environ=env)
        if name != "worker":
            continue
        for dest in settings.destinations:  # workers write file:// copies: they must outlive the container
            if dest.provider_url.startswith("file:"):
                folder = dest.provider_url.removeprefix("file://").removeprefix("file:")
                if not folder.startswith("/") or not under_writable_volume(svc, folder):
                    problems.append(f"worker: destination {dest.name} writes to {folder}, which is not on a "
                                    "writable volume: copies would vanish with the container")
    return problems


def url_problems(compose: dict[str, Any]) -> list[str]:
    from sqlalchemy.engine import make_url

    problems = []
    services = compose["services"]
    postgres = services.get("postgres", {}).get("environment", {})
    for name, svc in app_services(compose).items():
        env = container_environment(svc)
        db = make_url(env.get("ARCHIVER_DATABASE_URL", "sqlite://"))
        if db.drivername != "postgresql+psycopg":
            problems.append(f"{name}: ARCHIVER_DATABASE_URL must be postgresql+psycopg://, got {db.drivername}")
        elif (db.host not in services or not str(services[db.host].get("image", "")).startswith("postgres")
              or (db.port or 5432) != 5432):
            problems.append(f"{name}: ARCHIVER_DATABASE_URL names {db.host}:{db.port}, not the postgres service")
        elif (db.username, db.password, db.database) != tuple(
                postgres.get(k) for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")):
            problems.append(f"{name}: ARCHIVER_DATABASE_URL user/password/database differ from the postgres service's")
        broker = urlsplit(env.get("ARCHIVER_BROKER_URL", ""))
        if broker.scheme != "redis" or broker.hostname not in services or (broker.port or 6379) != 6379 \
                or not str(services[broker.hostname].get("image", "")).startswith("redis"):
            problems.append(f"{name}: ARCHIVER_BROKER_URL {env.get('ARCHIVER_BROKER_URL')!r} is not the redis service")
    return problems


def healthcheck_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    services = compose["services"]
    for name, words in INFRASTRUCTURE_HEALTHCHECKS.items():
        test = (services.get(name, {}).get("healthcheck") or {}).get("test")
        text = " ".join(test) if isinstance(test, list) else str(test or "")
        if not test or test in (["NONE"], "NONE") or not all(w in text for w in words):
            problems.append(f"{name}: needs a healthcheck using {' '.join(words)}, has {test!r}")
    receiver = services.get("receiver", {})
    args, _ = parse_archiver(argv_of(receiver)[1:])
    test = " ".join((receiver.get("healthcheck") or {}).get("test") or [])
    port = getattr(args, "port", None)
    if args is None or f"127.0.0.1:{port}/healthz" not in test:
        problems.append(f"receiver: healthcheck must GET http://127.0.0.1:{port}/healthz, is {test!r}")
    if args is not None and args.host != "0.0.0.0":
        problems.append(f"receiver: listens on {args.host}, unreachable from outside the container")
    if not any(str(p).endswith(f":{port}") for p in receiver.get("ports") or []):
        problems.append(f"receiver: publishes {receiver.get('ports')}, not the port it serves ({port})")
    worker = services.get("worker", {})
    wargs, _ = parse_archiver(argv_of(worker)[1:])
    metrics = getattr(wargs, "metrics_port", None)
    if metrics is None or str(metrics) not in [str(p) for p in worker.get("expose") or []]:
        problems.append(f"worker: serves metrics on {metrics} but exposes {worker.get('expose')}")
    return problems


def dependency_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    services = compose["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        deps = {key: {"condition": "service_started"} for key in deps} if isinstance(deps, list) else deps
        for target, spec in deps.items():
            if target not in services:
                problems.append(f"{name}: depends on {target}, which is not a service")
                continue
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_healthy" and not services[target].get("healthcheck"):
                problems.append(f"{name}: waits for {target} to be healthy, but {target} has no healthcheck")
            if condition == "service_completed_successfully" and services[target].get("restart", "no") != "no":
                problems.append(f"{name}: waits for {target} to complete, but {target} restarts")
            needs = set(services[target].get("profiles") or [])
            if needs and not needs & set(svc.get("profiles") or []):
                problems.append(f"{name}: depends on {target}, which only exists under profile(s) "
                                f"{services[target]['profiles']}")
    for role in ("receiver", "worker", "beat"):
        deps = services.get(role, {}).get("depends_on") or {}
        if (deps.get("migrate") or {}).get("condition") != "service_completed_successfully":
            problems.append(f"{role}: must wait for migrate (condition: service_completed_successfully)")
        if (deps.get("redis") or {}).get("condition") != "service_healthy":
            problems.append(f"{role}: must wait for redis to be healthy")
    if ((services.get("migrate", {}).get("depends_on") or {}).get("postgres") or {}).get("condition") \
            != "service_healthy":
        problems.append("migrate: must wait for postgres to be healthy")
    return problems


def volume_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    declared = set(compose.get("volumes") or {})
    for name, svc in compose["services"].items():
        for source, _target, _ in all_mounts(svc):
            if source.startswith((".", "/")):
                if not (ROOT / source).exists():
                    problems.append(f"{name}: bind mount {source} does not exist in the repository")
            elif source not in declared:
                problems.append(f"{name}: volume {source} is not declared under top-level volumes")
    worker = compose["services"].get("worker", {})
    from archiver.settings.config import Settings
    from celeryconfig import build

    soft = build(Settings())["worker_soft_shutdown_timeout"]
    if seconds(worker.get("stop_grace_period", "10s")) <= soft:
        problems.append(f"worker: stop_grace_period {worker.get('stop_grace_period', '10s')} is shorter than "
                        f"the worker's own shutdown allowance ({soft:.0f} s): copies in flight get killed sooner")
    return problems


CHECKS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "commands": command_problems, "environment": environment_problems, "configs": config_problems,
    "urls": url_problems, "healthchecks": healthcheck_problems, "dependencies": dependency_problems,
    "volumes": volume_problems,
}


def resolved(raw: dict[str, Any], extra: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    problems: list[str] = []
    return resolve(raw, {**REQUIRED, **extra}, problems), problems


# ---- the tests ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return load_raw()


@pytest.mark.parametrize("choice", CONFIG_CHOICES, ids=lambda c: c.get("ARCHIVER_CONFIG_NAME", "default"))
def test_interpolation_needs_only_the_documented_variables(raw: dict[str, Any], choice: dict[str, str]) -> None:
    _, problems = resolved(raw, choice)
    assert problems == []


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("choice", CONFIG_CHOICES, ids=lambda c: c.get("ARCHIVER_CONFIG_NAME", "default"))
def test_compose_file(raw: dict[str, Any], check: str, choice: dict[str, str]) -> None:
    compose, _ = resolved(raw, choice)
    assert CHECKS[check](compose) == []


def test_the_required_variables_stop_compose_when_missing(raw: dict[str, Any]) -> None:
    problems: list[str] = []
    resolve(raw, {}, problems)
    assert any("POSTGRES_PASSWORD is required" in p for p in problems)
    assert any("REDIS_PASSWORD is required" in p for p in problems)


def test_the_receiver_serves_its_healthcheck_path(raw: dict[str, Any]) -> None:
    from archiver.intake.receiver import create_receiver
    from archiver.ledger.database import create_ledger_engine
    from archiver.ledger.store import Ledger
    from archiver.settings.config import Settings

    class _Publisher:
        def copies(self, *_: Any, **__: Any) -> None: ...
        def lookups(self, *_: Any, **__: Any) -> None: ...
        def ping(self, *_: Any) -> None: ...

    app = create_receiver(Settings(), Ledger(create_ledger_engine("sqlite://")), publisher=_Publisher())
    test = " ".join(raw["services"]["receiver"]["healthcheck"]["test"])
    path = re.search(r"127\.0\.0\.1:\d+(/[^'\" ]*)", test)
    assert path is not None and path[1] in {route.path for route in app.routes}


# Variables whose README rows are in a branch's report for the integrator to merge (helpers do not edit
# README.md). Once the README has the row this test fails until the name is removed here.
def test_every_compose_variable_is_documented_in_the_readme() -> None:
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    readme = README.read_text()
    assert names and sorted(n for n in names if f"`{n}`" not in readme) == []


def test_dockerfile_builds_a_non_root_image_of_this_package() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip()
             and not line.lstrip().startswith("#")]
    froms = [line.split()[1] for line in lines if line.upper().startswith("FROM ")]
    users = [line.split()[1] for line in lines if line.upper().startswith("USER ")]
    assert froms[-1:] == ["python:3.11-slim"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(re.search(r"pip install (--[a-z-]+ )*[\"']?\.", line) for line in lines)
    for line in lines:
        if line.upper().startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".git", ".venv", "node_modules", ".env", "archiver.toml"} <= ignored
    copied = {s for line in lines if line.upper().startswith("COPY ") for s in line.split()[1:-1]}
    assert not copied & ignored, "a COPY source is excluded by .dockerignore"
    for name, svc in app_services(load_raw()).items():
        build = svc["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context / "Dockerfile").is_file(), name


MUTATIONS: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "typo'd verb": ("commands", lambda c: c["services"]["receiver"].update(command=["archiver", "serv"])),
    "typo'd flag": ("commands", lambda c: c["services"]["worker"].update(
        command=["archiver", "worker", "--metric-port", "9100"])),
    "--help": ("commands", lambda c: c["services"]["beat"].update(command=["archiver", "beat", "--help"])),
    "db verb missing": ("commands", lambda c: c["services"]["migrate"].update(command=["archiver", "db"])),
    "typo'd variable": ("environment", lambda c: c["services"]["worker"]["environment"].update(
        ARCHIVER_BROKER_ULR="redis://redis:6379/0")),
    "unparseable value": ("environment", lambda c: c["services"]["worker"]["environment"].update(
        ARCHIVER_VISIBILITY_TIMEOUT="one hour")),
    "made-up AWS variable": ("environment", lambda c: c["services"]["worker"]["environment"].update(
        AWS_SECRET_KEY="x")),
    "config not mounted": ("configs", lambda c: c["services"]["worker"].update(volumes=[])),
    "copies not on a volume": ("configs", lambda c: c["services"]["worker"].update(
        volumes=["./deploy:/etc/archiver:ro"])),
    "boolean value": ("environment", lambda c: c["services"]["receiver"]["environment"].update(
        ARCHIVER_VERIFY_SIGNATURES=True)),
    "config setting wrong": ("configs", lambda c: c["services"]["receiver"]["environment"].update(
        ARCHIVER_RECEIVER_PATH="webhooks")),
    "secret variable missing": ("configs", lambda c: [c["services"][s]["environment"].pop(
        "TRIAL_AZURE_CONNECTION_STRING") for s in ("worker",)]),
    "database host typo": ("urls", lambda c: c["services"]["beat"]["environment"].update(
        ARCHIVER_DATABASE_URL="postgresql+psycopg://archiver:x@postgre:5432/archiver")),
    "broker host typo": ("urls", lambda c: c["services"]["beat"]["environment"].update(
        ARCHIVER_BROKER_URL="redis://redsi:6379/0")),
    "no redis healthcheck": ("healthchecks", lambda c: c["services"]["redis"].pop("healthcheck")),
    "receiver healthcheck path": ("healthchecks", lambda c: c["services"]["receiver"]["healthcheck"].update(
        test=["CMD", "true"])),
    "missing dependency": ("dependencies", lambda c: c["services"]["worker"]["depends_on"].update(
        {"rabbitmq": {"condition": "service_healthy"}})),
    "migrate not awaited": ("dependencies", lambda c: c["services"]["receiver"]["depends_on"].pop("migrate")),
    "depends on a trial service": ("dependencies", lambda c: c["services"]["worker"]["depends_on"].update(
        {"moto": {"condition": "service_healthy"}})),
    "short grace period": ("volumes", lambda c: c["services"]["worker"].update(stop_grace_period="10s")),
    "undeclared volume": ("volumes", lambda c: c["services"]["worker"]["volumes"].append("cache:/cache")),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_each_check_catches_a_mistake(raw: dict[str, Any], mutation: str) -> None:
    check, mutate = MUTATIONS[mutation]
    compose, _ = resolved(raw, CONFIG_CHOICES[-1])
    compose = copy.deepcopy(compose)
    mutate(compose)
    assert CHECKS[check](compose) != []


def test_trial_buckets_make_every_trial_destination_pass_its_probe(
        tmp_path: Path, moto_url: str, azurite_connection_string: str, gcs_emulator_url: str) -> None:
    """deploy/trial_buckets.py against the same emulators the suite runs, with the trial config's
    endpoints pointed at them: afterwards `archiver check` passes for every destination."""
    import importlib.util
    import secrets

    from archiver.settings.config import load_settings

    compose, _ = resolved(load_raw(), CONFIG_CHOICES[-1])
    worker = compose["services"]["worker"]
    env = container_environment(worker)
    conn = dict(part.split("=", 1) for part in azurite_connection_string.split(";") if "=" in part)
    bucket = f"t-{secrets.token_hex(4)}"
    text = (ROOT / "deploy" / "archiver.trial.toml").read_text()
    text = (text.replace("http://moto:5000", moto_url).replace("http://fake-gcs-server:4443", gcs_emulator_url)
            .replace("file:///var/lib/archiver/archive", f"file://{tmp_path}/archive")
            .replace("://archive/", f"://{bucket}/"))
    config = tmp_path / "archiver.toml"
    config.write_text(text)
    env.update(ARCHIVER_CONFIG=str(config), TRIAL_AZURE_CONNECTION_STRING=env["TRIAL_AZURE_CONNECTION_STRING"]
               .replace("http://azurite:10000/devstoreaccount1", conn["BlobEndpoint"].rstrip("/")))
    spec = importlib.util.spec_from_file_location("trial_buckets", ROOT / "deploy" / "trial_buckets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with process_environment(env), contextlib.redirect_stdout(io.StringIO()):
        assert module.main() == 0
        assert module.main() == 0  # a second run (compose restarted) finds the buckets and is fine
        settings = load_settings(config, environ=env)
        assert {d.name for d in settings.destinations} == {"local", "s3", "azure", "gcs"}
        for dest in settings.destinations:
            report = dest.open().check()
            assert all(step.ok for step in report.steps), (dest.name, report)


def readme_commands() -> list[list[str]]:
    """argv (after `archiver`) of every archiver command in the README's shell blocks."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s#.*$", "", line)
            for part in re.split(r";|\|\||&&|\||>", line):
                words = shlex.split(part)
                while words:
                    word = words.pop(0)
                    if word == "archiver" or (word.endswith("/bin/archiver") and "=" not in word):
                        commands.append(words)
                        break
                    if word.startswith("archiver "):  # sh -c 'archiver ...'
                        commands.append(shlex.split(word)[1:])
                        break
    return commands


def test_every_command_in_the_readme_is_real() -> None:
    commands = readme_commands()
    assert len(commands) > 20 and ["demo"] in commands
    bad = {shlex.join(argv): why for argv in commands if (why := parse_archiver(argv)[1])}
    assert bad == {}


def _readme_section(heading: str) -> str:
    text = README.read_text()
    start = text.index(heading)
    following = re.search(r"^#{2,3} ", text[start + len(heading):], flags=re.M)
    return text[start:start + len(heading) + (following.start() if following else len(text))]


def test_readme_documents_every_setting_and_its_variable() -> None:
    """The configuration reference has a row for every setting, naming its ARCHIVER_* variable."""
    import dataclasses

    from archiver.domain.templates import VARIABLES
    from archiver.settings.config import Settings
    from archiver.settings.destinations import _DESTINATION_KEYS

    variables = {key: variable for key, (variable, _) in ENVIRONMENT.items()}
    missing = []
    for field in dataclasses.fields(Settings):
        if field.name in ("destinations", "notifications", "origin", "warnings"):
            continue
        section = field.default if dataclasses.is_dataclass(field.default) else None
        keys = [(field.name, f.name) for f in dataclasses.fields(section)
                if f.metadata.get("setting", True)] if section else [(None, field.name)]
        text = _readme_section(f"### `[{field.name}]`" if section else "### Top level")
        for section_name, key in keys:
            row = next((line for line in text.splitlines() if line.startswith(f"| `{key}` |")), None)
            variable = variables.get((section_name, key))
            if row is None or (variable and f"`{variable}`" not in row) or (not variable and "none" not in row):
                missing.append(f"{section_name or 'top level'}.{key} ({variable or 'no variable'})")
    destinations = _readme_section("### Destinations")
    missing += [f"destinations.{k}" for k in sorted(_DESTINATION_KEYS) if f"| `{k}` |" not in destinations]
    from archiver.settings.notifications import _KEYS as NOTIFICATION_KEYS

    notifications = _readme_section("## Notifications")
    missing += [f"notifications.{k}" for k in sorted(NOTIFICATION_KEYS) if k not in notifications]
    templates = _readme_section("### Key templates")
    missing += [f"{{{v}}}" for v in sorted(VARIABLES) if f"`{v}`" not in templates]
    assert missing == []


def test_every_config_example_in_the_readme_loads(tmp_path: Path) -> None:
    from archiver.settings.config import load_settings

    compose, _ = resolved(load_raw(), CONFIG_CHOICES[-1])
    azure = container_environment(compose["services"]["worker"])["TRIAL_AZURE_CONNECTION_STRING"]
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for i, block in enumerate(blocks):
        path = tmp_path / f"example{i}.toml"
        path.write_text(block)
        env = {name: azure if "CONNECTION_STRING" in name else "example-secret"
               for name in config_env_variables([path])}
        with process_environment(env):
            load_settings(path, environ=env)  # raises ConfigError listing every problem
