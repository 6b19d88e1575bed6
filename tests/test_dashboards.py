"""deploy/prometheus and deploy/grafana: valid for promtool (rules, config and the rules' own unit tests),
wired to the services of the compose `monitoring` profile, and naming only metrics, labels and label
values the archiver exports, as scraped from a live receiver and a live worker after real work."""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.emulators import ROOT, free_port
from tests.promql_names import names
from tests.receiver_harness import new_key, running_receiver, write_receiver_config
from tests.stack import Stack, write_config
from tests.test_compose import argv_of, bind_mounts, load_raw, parse_archiver

PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# Labels Prometheus itself puts on every scraped series.
TARGET_LABELS = {"job", "instance"}


# Where `make test` unpacks promtool when it is not on PATH (see the Makefile's promtool target).
UNPACKED_PROMTOOL = ROOT / ".make-stamps" / "promtool" / "promtool"


def promtool() -> str:
    path = shutil.which("promtool") or (str(UNPACKED_PROMTOOL) if UNPACKED_PROMTOOL.is_file() else None)
    if path is None:
        pytest.fail("promtool is not installed: `make promtool` (run by `make test`) fetches it from Debian's "
                    "prometheus package; or put promtool from https://prometheus.io/download/ on PATH")
    return path


def rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]


def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def panels(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        yield node
        yield from panels(node.get("panels") or [])


def expressions() -> list[tuple[str, str, set[str]]]:
    """(where, PromQL, labels its legend or annotations print) of every rule and dashboard panel."""
    found = [(f"alert {r['alert']}", r["expr"], set(re.findall(r"\$labels\.(\w+)", json.dumps(r.get("annotations")))))
             for r in rules()]
    for path in DASHBOARDS:
        for panel in panels(json.loads(path.read_text())["panels"]):
            for target in panel.get("targets") or []:
                found.append((f"{path.name}: {panel['title']}", target["expr"],
                              set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))))
    return found


# ---- promtool -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["check", "rules", "alerts.yml"], ["check", "config", "prometheus.yml"],
                                  ["test", "rules", "alerts.test.yml"]], ids=lambda a: " ".join(a[:2]))
def test_promtool_accepts_the_rules_the_config_and_the_rule_tests(argv: list[str]) -> None:
    done = subprocess.run([promtool(), *argv], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_names_of_an_expression_are_read_right() -> None:
    found = names('histogram_quantile(0.9, sum by (le, destination) (rate(archiver_copy_seconds_bucket'
                  '{destination=~"s3|gcs"}[$__rate_interval]))) > on (instance) group_left up{job="w"} * 60')
    assert found.metrics == {"archiver_copy_seconds_bucket", "up"}
    assert found.grouped == {"le", "destination", "instance"}
    assert found.matched == {"archiver_copy_seconds_bucket": {"destination"}, "up": {"job"}}
    assert found.expected == {("archiver_copy_seconds_bucket", "destination"): {"s3", "gcs"}, ("up", "job"): {"w"}}
    assert len(expressions()) >= 20 and all(names(expr).metrics for _, expr, _ in expressions())


# ---- the monitoring profile is wired to these files -------------------------------------------------------

def test_the_monitoring_profile_serves_these_files_and_scrapes_every_receiver_and_worker() -> None:
    services = load_raw()["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["monitoring"]
    mounts = {target: host for host, target, _ro in bind_mounts(prometheus)}
    config = next(a.split("=", 1)[1] for a in argv_of(prometheus) if a.startswith("--config.file="))
    assert mounts[str(Path(config).parent)] == PROMETHEUS and (PROMETHEUS / Path(config).name).is_file()
    port = next(a.rsplit(":", 1)[1] for a in argv_of(prometheus) if a.startswith("--web.listen-address="))

    receiver_args, _ = parse_archiver(argv_of(services["receiver"])[1:])
    worker_args, _ = parse_archiver(argv_of(services["worker"])[1:])
    jobs = scrape_jobs()
    for job, service, served in (("archiver-receiver", "receiver", receiver_args.port),
                                 ("archiver-worker", "worker", worker_args.metrics_port)):
        [sd] = jobs[job]["dns_sd_configs"]
        assert (sd["names"], sd["port"]) == ([service], served), job
    named_jobs = {v for _, expr, _ in expressions() for (_m, label), vs in names(expr).expected.items()
                  if label == "job" for v in vs}
    assert named_jobs and named_jobs <= set(jobs)

    mounts = {target: host for host, target, _ro in bind_mounts(grafana)}
    assert mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    [provider] = yaml.safe_load((GRAFANA / "provisioning/dashboards/archiver.yml").read_text())["providers"]
    assert mounts[provider["options"]["path"]] == GRAFANA / "dashboards"
    [source] = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert source["url"] == f"http://prometheus:{port}"
    uids = {t["datasource"]["uid"] for path in DASHBOARDS for p in panels(json.loads(path.read_text())["panels"])
            for t in p.get("targets") or []}
    assert uids == {source["uid"]}
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"


# ---- every name is exported --------------------------------------------------------------------------------

def exported(*texts: str) -> dict[str, dict[str, set[str]]]:
    """sample name -> label -> values seen, over several /metrics texts."""
    out: dict[str, dict[str, set[str]]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = out.setdefault(sample.name, {})
                for label, value in sample.labels.items():
                    labels.setdefault(label, set()).add(value)
    return out


def naming_problems(metrics: dict[str, dict[str, set[str]]]) -> list[str]:
    problems = []
    for where, expr, printed in expressions():
        found = names(expr)
        missing = sorted(found.metrics - set(metrics))
        if missing:
            problems.append(f"{where}: {', '.join(missing)} not exported")
            continue
        available = TARGET_LABELS.union(*(metrics[m] for m in found.metrics))
        for metric, labels in found.matched.items():
            if unknown := labels - set(metrics[metric]) - TARGET_LABELS:
                problems.append(f"{where}: {metric} has no label {sorted(unknown)}")
        if unknown := (found.grouped | printed) - available:
            problems.append(f"{where}: groups by or prints {sorted(unknown)}, which no metric of it has")
        for (metric, label), values in found.expected.items():
            if unseen := values - metrics[metric].get(label, set()):
                problems.append(f"{where}: {metric}{{{label}}} never takes the value(s) {sorted(unseen)}")
    return problems


@pytest.fixture
def worker_stack(stack_env: dict[str, Any], tmp_path: Path, moto_url: str, azurite_connection_string: str,
                 gcs_emulator_url: str) -> Iterator[Stack]:
    env, buckets = write_config(tmp_path, broker_url=stack_env["broker_url"], database_url=stack_env["database_url"],
                                moto_url=moto_url, azure_connection=azurite_connection_string, gcs_url=gcs_emulator_url)
    stack = Stack(root=tmp_path, broker_url=stack_env["broker_url"], database_url=stack_env["database_url"],
                  env=env, source=stack_env["source"], buckets=buckets)
    stack.metrics_port = free_port()  # type: ignore[attr-defined]
    stack.start_worker(concurrency=2, metrics_port=stack.metrics_port)  # type: ignore[attr-defined]
    yield stack
    stack.stop()


def test_every_metric_label_and_value_the_dashboard_and_rules_name_is_exported(
        worker_stack: Stack, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    # The worker: a copy to each destination, one of them retried (the source fails its first request).
    mid = f"dash-{secrets.token_hex(3)}"
    size = (3 << 20) + 5
    worker_stack.send_event({"webhookType": "recording-stopped", "data": {
        "meetingId": mid, "sessionId": "s1", "filePath": "/encoded/videos/dash.mp4",
        "fileUrl": worker_stack.source.file_url(f"{mid}.mp4", size=size, fail=1)}})
    jobs = worker_stack.wait_for_jobs(mid, 3)
    assert {j.state for j in jobs} == {"succeeded"} and sum(j.attempts for j in jobs) == 4
    worker = httpx.get(f"http://127.0.0.1:{worker_stack.metrics_port}/metrics", timeout=30).text  # type: ignore[attr-defined]

    # The receiver: one signed webhook accepted, one unsigned refused. Its own broker database, so the
    # worker above never sees the job ids of the receiver's ledger.
    root = tmp_path_factory.mktemp("receiver")
    private, pem = new_key()
    (root / "webhook.pem").write_text(pem)
    broker = urlsplit(redis_url)._replace(path="/9").geturl()
    config = write_receiver_config(root, broker, f'[videosdk]\nwebhook_public_key = "{root}/webhook.pem"')
    body = {"webhookType": "recording-stopped", "data": {"meetingId": mid, "sessionId": "s1",
                                                         "filePath": "/encoded/videos/r.mp4",
                                                         "fileUrl": "https://cdn.videosdk.live/r.mp4"}}
    with running_receiver(config, private) as receiver:
        assert receiver.post(body).status_code == 202
        assert receiver.post(body, sign=False).status_code == 401
        served = httpx.get(receiver.url + "/metrics", timeout=30).text

    metrics = exported(worker, served)
    metrics["up"] = {"job": set(scrape_jobs()), "instance": {"-"}}  # made by Prometheus for each target
    assert naming_problems(metrics) == []

    # The new gauges say what the ledger holds, and the bytes moved while copying were counted.
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(worker + served) for s in f.samples}
    for destination in ("s3", "azure", "gcs"):
        assert samples[("archiver_jobs", (("destination", destination), ("state", "pending")))] == 0
        assert samples[("archiver_oldest_pending_job_age_seconds", (("destination", destination),))] == 0
        assert samples[("archiver_copy_progress_bytes_total", (("destination", destination),))] >= size
    assert samples[("archiver_ledger_metrics_up", ())] == 1
    assert samples[("archiver_signature_key_available", ())] == 1
    assert samples[("archiver_notifications_pending", ())] == 0


def test_a_typo_in_an_expression_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """naming_problems is not a check that passes everything: each kind of mistake is reported."""
    metrics = {"archiver_jobs": {"state": {"failed", "pending"}, "destination": {"s3"}}}
    for expr, problem in (('archiver_job{state="failed"}', "archiver_job not exported"),
                          ('archiver_jobs{stat="failed"}', "no label ['stat']"),
                          ('sum by (dest) (archiver_jobs)', "groups by or prints ['dest']"),
                          ('archiver_jobs{state="faild"}', "never takes the value(s) ['faild']")):
        monkeypatch.setattr("tests.test_dashboards.expressions", lambda e=expr: [("panel", e, set())])
        assert problem in " ".join(naming_problems(metrics)), expr
