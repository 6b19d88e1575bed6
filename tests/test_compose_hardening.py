"""docker-compose.yml runs every production service with least privilege, checked statically (no Docker
engine here), with the helpers of tests/test_compose.py:

- hardening: no capabilities beyond an entrypoint's needs, no privilege escalation, a read-only root
  with /tmp and the paths a role writes (copies, the beat schedule) on volumes or tmpfs, memory and
  process limits, rotated logs;
- secrets: only the worker (and the trial's bucket maker) gets storage or VideoSDK secrets;
- exposure: the receiver is published on loopback by default, nothing else is published, Redis asks
  for a password that the broker URL carries.

`test_each_check_catches_a_mistake` breaks a copy of the file once per check.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tests.test_compose import (
    CONFIG_CHOICES,
    DOCKERFILE,
    app_services,
    argv_of,
    config_env_variables,
    container_environment,
    environment_of,
    load_raw,
    mounted_configs,
    parse_archiver,
    resolve,
    resolved,
)

# Capabilities an official image's entrypoint needs to prepare its data folder and drop to its user.
ENTRYPOINT_CAPABILITIES = {"redis": {"CHOWN", "SETGID", "SETUID"},
                           "postgres": {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"}}
# Roles that open destinations or call the VideoSDK REST API with its secret.
SECRET_HOLDERS = {"worker", "trial-buckets"}
CREDENTIAL_VARIABLES = {"VIDEOSDK_SECRET_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                        "AWS_SECURITY_TOKEN", "AZURE_STORAGE_CONNECTION_STRING", "GOOGLE_APPLICATION_CREDENTIALS"}


def production(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if not svc.get("profiles")}


def workdir() -> PurePosixPath:
    lines = [line.split(None, 1)[1].strip() for line in DOCKERFILE.read_text().splitlines()
             if line.upper().startswith("WORKDIR ")]
    return PurePosixPath(lines[-1])


def writable_targets(svc: dict[str, Any]) -> list[PurePosixPath]:
    targets = []
    for volume in svc.get("volumes") or []:
        _source, target, *mode = volume.split(":") if isinstance(volume, str) else (
            volume.get("source"), volume["target"], "ro" if volume.get("read_only") else "rw")
        if "ro" not in mode:
            targets.append(PurePosixPath(target))
    targets += [PurePosixPath(str(t).split(":")[0]) for t in svc.get("tmpfs") or []]
    return targets


def is_writable(svc: dict[str, Any], path: PurePosixPath) -> bool:
    return any(path == t or t in path.parents for t in writable_targets(svc))


def hardening_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, svc in production(compose).items():
        if svc.get("cap_drop") != ["ALL"]:
            problems.append(f"{name}: must drop every capability (cap_drop: [ALL]), has {svc.get('cap_drop')}")
        extra = set(svc.get("cap_add") or []) - ENTRYPOINT_CAPABILITIES.get(name, set())
        if extra:
            problems.append(f"{name}: adds capabilities it does not need: {sorted(extra)}")
        if "no-new-privileges:true" not in (svc.get("security_opt") or []):
            problems.append(f"{name}: needs security_opt no-new-privileges:true")
        if svc.get("read_only") is not True:
            problems.append(f"{name}: the root file system must be read-only (read_only: true)")
        logging = svc.get("logging") or {}
        options = logging.get("options") or {}
        if logging.get("driver") != "json-file" or not options.get("max-size") or not options.get("max-file"):
            problems.append(f"{name}: logs must rotate (json-file with max-size and max-file), has {logging}")
        for limit in ("mem_limit", "pids_limit"):
            if not svc.get(limit):
                problems.append(f"{name}: needs {limit}")
        if name in app_services(compose) and not is_writable(svc, PurePosixPath("/tmp")):
            problems.append(f"{name}: needs a writable /tmp (tmpfs) under its read-only root")
    beat = compose["services"].get("beat", {})
    args, _ = parse_archiver(argv_of(beat)[1:])
    schedule = PurePosixPath(getattr(args, "schedule", None) or ".archiver/celerybeat-schedule")
    schedule = schedule if schedule.is_absolute() else workdir() / schedule
    if not is_writable(beat, schedule.parent):
        problems.append(f"beat: its schedule {schedule} is on the read-only root: mount a volume at {schedule.parent}")
    return problems


def secret_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    secrets = CREDENTIAL_VARIABLES | config_env_variables(mounted_configs())
    for name, svc in app_services(compose).items():
        held = sorted(set(environment_of(svc)) & secrets)
        if held and name not in SECRET_HOLDERS:
            problems.append(f"{name}: is given {', '.join(held)}; only the worker opens destinations")
    worker = set(environment_of(compose["services"].get("worker", {})))
    missing = sorted(secrets - worker - {"GOOGLE_APPLICATION_CREDENTIALS", "AWS_SECURITY_TOKEN"})
    if missing:
        problems.append(f"worker: is not given {', '.join(missing)}")
    return problems


def _published(entry: Any) -> tuple[str | None, str]:
    """(host address or None for every interface, container port) of a `ports` entry."""
    if isinstance(entry, dict):
        return entry.get("host_ip"), str(entry.get("target"))
    parts = str(entry).rsplit(":", 2)
    return (parts[0] if len(parts) == 3 else None), parts[-1]


def exposure_problems(compose: dict[str, Any]) -> list[str]:
    problems = []
    for name, svc in compose["services"].items():
        for entry in svc.get("ports") or []:
            host, target = _published(entry)
            if host in (None, "", "0.0.0.0", "::", "[::]"):
                problems.append(f"{name}: publishes {target} on every interface ({entry!r}); give 127.0.0.1")
            elif name != "receiver" and not svc.get("profiles"):
                problems.append(f"{name}: publishes {entry!r}; only the receiver is published")
    worker = compose["services"].get("worker", {})
    args, _ = parse_archiver(argv_of(worker)[1:])
    if getattr(args, "metrics_port", None) and getattr(args, "metrics_host", None) != "0.0.0.0":
        problems.append("worker: metrics listen on loopback inside the container: a scraper on the compose network "
                        "cannot reach them (--metrics-host 0.0.0.0)")
    redis = compose["services"].get("redis", {})
    argv = argv_of(redis)
    password = argv[argv.index("--requirepass") + 1] if "--requirepass" in argv[:-1] else ""
    if not password:
        problems.append("redis: runs without a password (--requirepass)")
    for name, svc in app_services(compose).items():
        broker = urlsplit(container_environment(svc).get("ARCHIVER_BROKER_URL", ""))
        if not password or unquote(broker.password or "") != password:
            problems.append(f"{name}: ARCHIVER_BROKER_URL does not carry Redis's password")
    healthcheck = " ".join((redis.get("healthcheck") or {}).get("test") or [])
    if "redis-cli" in healthcheck and (redis.get("environment") or {}).get("REDISCLI_AUTH") != password:
        problems.append("redis: the healthcheck's redis-cli has no password (REDISCLI_AUTH)")
    return problems


CHECKS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "hardening": hardening_problems, "secrets": secret_problems, "exposure": exposure_problems}


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("choice", CONFIG_CHOICES, ids=lambda c: c.get("ARCHIVER_CONFIG_NAME", "default"))
def test_compose_file_is_hardened(check: str, choice: dict[str, str]) -> None:
    compose, _ = resolved(load_raw(), choice)
    assert CHECKS[check](compose) == []


def test_the_receiver_bind_address_is_a_variable_defaulting_to_loopback() -> None:
    compose, _ = resolved(load_raw(), {})
    assert compose["services"]["receiver"]["ports"] == ["127.0.0.1:8000:8000"]
    moved, _ = resolved(load_raw(), {"ARCHIVER_RECEIVER_BIND": "10.0.0.5"})
    assert moved["services"]["receiver"]["ports"] == ["10.0.0.5:8000:8000"]


def test_redis_password_is_required() -> None:
    problems: list[str] = []
    resolve(load_raw(), {"POSTGRES_PASSWORD": "x"}, problems)
    assert any("REDIS_PASSWORD is required" in p for p in problems)


def _drop(service: str, key: str) -> Callable[[dict[str, Any]], None]:
    return lambda c: c["services"][service].pop(key, None)


MUTATIONS: dict[str, tuple[str, Callable[[dict[str, Any]], None]]] = {
    "capabilities kept": ("hardening", _drop("receiver", "cap_drop")),
    "a capability added": ("hardening", lambda c: c["services"]["worker"].update(cap_add=["NET_ADMIN"])),
    "privilege escalation": ("hardening", _drop("postgres", "security_opt")),
    "writable root": ("hardening", lambda c: c["services"]["beat"].update(read_only=False)),
    "no log rotation": ("hardening", lambda c: c["services"]["redis"].update(logging={"driver": "json-file"})),
    "no memory limit": ("hardening", _drop("worker", "mem_limit")),
    "no pids limit": ("hardening", _drop("migrate", "pids_limit")),
    "no /tmp": ("hardening", _drop("receiver", "tmpfs")),
    "beat schedule on the root": ("hardening", lambda c: c["services"]["beat"].update(
        volumes=["./deploy:/etc/archiver:ro"])),
    "receiver holds a secret": ("secrets", lambda c: c["services"]["receiver"]["environment"].update(
        AWS_SECRET_ACCESS_KEY=None)),
    "beat holds a config secret": ("secrets", lambda c: c["services"]["beat"]["environment"].update(
        TRIAL_AZURE_CONNECTION_STRING="x")),
    "worker lacks a secret": ("secrets", lambda c: c["services"]["worker"]["environment"].pop("VIDEOSDK_SECRET_KEY")),
    "published everywhere": ("exposure", lambda c: c["services"]["receiver"].update(ports=["8000:8000"])),
    "metrics published": ("exposure", lambda c: c["services"]["worker"].update(ports=["127.0.0.1:9100:9100"])),
    "metrics unreachable": ("exposure", lambda c: c["services"]["worker"].update(
        command=["archiver", "worker", "--metrics-port", "9100"])),
    "redis without password": ("exposure", lambda c: c["services"]["redis"].update(
        command=["redis-server", "--appendonly", "yes"])),
    "broker URL without password": ("exposure", lambda c: c["services"]["beat"]["environment"].update(
        ARCHIVER_BROKER_URL="redis://redis:6379/0")),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_each_check_catches_a_mistake(mutation: str) -> None:
    check, mutate = MUTATIONS[mutation]
    compose, _ = resolved(load_raw(), CONFIG_CHOICES[-1])
    compose = copy.deepcopy(compose)
    mutate(compose)
    assert CHECKS[check](compose) != []


# ---- the image installs exactly the locked, hashed dependencies ----------------------------------------

def _requirement_name(text: str) -> str:
    return re.split(r"[\s<>=!~;\[]", text.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _locked(path: str) -> dict[str, str]:
    from tests.emulators import ROOT

    text = (ROOT / path).read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, flags=re.M))
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    unhashed = [b.split()[0] for b in blocks if "==" in b.split("\n")[0] and "--hash=sha256:" not in b]
    assert unhashed == [], f"{path}: pins without a hash: {unhashed}"
    return {name.lower().replace("_", "-"): version for name, version in pins.items()}


@pytest.mark.parametrize(("lock", "extras"), [("requirements.lock", ()),
                                              ("requirements.azure-identity.lock", ("azure-identity",))])
def test_the_lock_pins_every_declared_dependency_with_hashes(lock: str, extras: tuple[str, ...]) -> None:
    import tomllib

    from packaging.requirements import Requirement

    from tests.emulators import ROOT

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"]) + [d for e in extras for d in project["optional-dependencies"][e]]
    pins = _locked(lock)
    for text in declared:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{lock} does not pin {name}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"{lock} pins {name}=={pins[name]}, outside {requirement.specifier}: run `make lock`"
        for extra in requirement.extras:  # psycopg[binary] needs psycopg-binary
            assert f"{name}-{extra}" in pins, f"{lock} lacks {name}[{extra}]'s {name}-{extra}"


def test_the_image_installs_the_lock_with_hashes_then_the_package_alone() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines() if line.strip().startswith("RUN ")]
    installs = [shlex.split(line[4:].split("&&")[0]) for line in lines if "pip install" in line]
    assert len(installs) == 2, installs
    first, second = installs
    assert "--require-hashes" in first and "-r" in first
    assert "--no-deps" in second and "." in second


# ---- `make lint`'s dependency audit: failing on a vulnerability, never on an unreachable database -------

def _report(*deps: dict[str, Any]) -> str:
    import json

    return json.dumps({"dependencies": list(deps), "fixes": []})


AUDITS = {
    "clean": ((0, _report({"name": "a", "version": "1", "vulns": []}), ""), 0, "no known vulnerabilities in 1"),
    "vulnerable": ((1, _report({"name": "a", "version": "1", "vulns": [
        {"id": "PYSEC-1", "fix_versions": ["1.1"]}]}), ""), 1, "1 known vulnerabilities"),
    "index without the database": ((0, _report({"name": "a", "skip_reason": "Dependency not found on PyPI"}), ""),
                                   0, "skipped: no vulnerability database answered"),
    "no network": ((1, None, "requests.exceptions.ConnectionError: Max retries exceeded (NameResolutionError)"),
                   0, "skipped: no vulnerability database reachable"),
    "too slow": ((-1, None, "no answer within 120 s"), 0, "skipped"),
    "broken lock": ((1, None, "pip_audit: error: requirement file is malformed"), 2, "dependency audit failed"),
}


@pytest.mark.parametrize("case", list(AUDITS))
def test_the_dependency_audit_fails_only_on_known_vulnerabilities(case: str) -> None:
    from tests.dependency_audit import verdict

    (returncode, report, stderr), expected, words = AUDITS[case]
    code, lines = verdict(returncode, report, stderr)
    assert code == expected and words in lines[0], lines
    assert len(lines) == (2 if case == "vulnerable" else 1)  # a skip is one line
