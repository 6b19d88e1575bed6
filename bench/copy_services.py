"""The services bench.copy_throughput copies between, each in a process of its own.

moto's server runs as `.venv/bin/moto_server` (not ThreadedMotoServer in the benchmark's own
process), Azurite and fake-gcs-server come from tests/emulators.py, and the stand-in CDN runs as
`python -m bench.copy_source`. Also here: the rclone remotes (environment variables only) and the
SDK calls that check and delete each object after a run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.backends import create_az_container, create_gcs_bucket, create_s3_bucket, unique_name
from tests.emulators import ROOT, ServiceUnavailable, azurite, fake_gcs, free_port, http_answers, wait_until

REMOTES = {"s3": "benchs3", "az": "benchaz", "gs": "benchgs"}


@contextlib.contextmanager
def moto_process(log: Path) -> Iterator[str]:
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        binary = Path(shutil.which("moto_server") or "moto_server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # moto logs every request to stderr: a file, not an unread pipe that would fill up and block it
    with log.open("wb") as sink:
        proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=sink, stderr=sink,
                                start_new_session=True)
    try:
        try:
            wait_until(lambda: http_answers(url + "/moto-api/"), "moto_server")
        except ServiceUnavailable:
            raise ServiceUnavailable(f"moto_server did not start: {log.read_text()[-2000:]}") from None
        yield url
    finally:
        _stop(proc)


@contextlib.contextmanager
def source_process() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.copy_source"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = proc.stdout.readline()
        if not line:
            raise ServiceUnavailable(f"bench.copy_source exited with {proc.wait()} before printing its port")
        yield int(json.loads(line)["port"])
    finally:
        proc.stdin.close()  # its signal to stop
        _stop(proc)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _connection_fields(connection: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in connection.split(";") if "=" in part)


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a live process, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _service_pids() -> dict[str, int]:
    """This process's children that are services: {"moto": pid, "azurite": pid, ...}."""
    names = {"moto_server": "moto", "azurite": "azurite", "fake-gcs-server": "fake-gcs", "bench.copy_source": "source"}
    found = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found.update({label: int(child) for marker, label in names.items() if marker in cmdline})
    return found


@dataclass
class Services:
    target: dict[str, dict[str, str]]  # per provider: endpoint or connection, and bucket
    source_port: int
    workdir: Path
    _clients: dict[str, Any] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=_service_pids)
    _azurite: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def start_azurite(self) -> None:
        """(Re)start Azurite with an empty container of the same name. Its in-memory store keeps a
        deleted blob's extents until its own GC runs and refuses writes past half the machine's
        memory, so the benchmark gives every Azure run a fresh one."""
        self._azurite.close()
        self._azurite = contextlib.ExitStack()
        connection = self._azurite.enter_context(azurite())
        bucket = self.target.get("az", {}).get("bucket") or unique_name()
        create_az_container(connection, bucket)
        self.target["az"] = {"connection": connection, "bucket": bucket}
        self._clients.pop("az", None)
        self.pids = _service_pids()

    def stop_azurite(self) -> None:
        self._azurite.close()

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each service process (emulators and the source)."""
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def source_url(self, name: str, size: int) -> str:
        return f"http://127.0.0.1:{self.source_port}/files/{name}?size={size}"

    def rclone_env(self) -> dict[str, str]:
        """rclone's remotes as RCLONE_CONFIG_* variables. AWS_* variables are dropped: rclone 1.60
        refuses any AWS_CA_BUNDLE ("transport unsupported type") and only plain HTTP is used here."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
        config = self.workdir / "rclone.conf"
        config.touch()
        env["RCLONE_CONFIG"] = str(config)
        if "s3" in self.target:
            env.update({"RCLONE_CONFIG_BENCHS3_TYPE": "s3", "RCLONE_CONFIG_BENCHS3_PROVIDER": "Other",
                        "RCLONE_CONFIG_BENCHS3_ENDPOINT": self.target["s3"]["endpoint"],
                        "RCLONE_CONFIG_BENCHS3_REGION": "us-east-1",
                        "RCLONE_CONFIG_BENCHS3_ACCESS_KEY_ID": "testing",
                        "RCLONE_CONFIG_BENCHS3_SECRET_ACCESS_KEY": "moto-secret-key",
                        "RCLONE_CONFIG_BENCHS3_FORCE_PATH_STYLE": "true"})
        if "az" in self.target:
            fields = _connection_fields(self.target["az"]["connection"])
            env.update({"RCLONE_CONFIG_BENCHAZ_TYPE": "azureblob", "RCLONE_CONFIG_BENCHAZ_USE_EMULATOR": "true",
                        "RCLONE_CONFIG_BENCHAZ_ENDPOINT": fields["BlobEndpoint"],
                        "RCLONE_CONFIG_BENCHAZ_ACCOUNT": fields["AccountName"],
                        "RCLONE_CONFIG_BENCHAZ_KEY": fields["AccountKey"]})
        if "gs" in self.target:
            env.update({"RCLONE_CONFIG_BENCHGS_TYPE": "google cloud storage",
                        "RCLONE_CONFIG_BENCHGS_ANONYMOUS": "true",
                        "RCLONE_CONFIG_BENCHGS_ENDPOINT": self.target["gs"]["endpoint"] + "/storage/v1/"})
        return env

    def rclone_destination(self, provider: str, key: str) -> str:
        return f"{REMOTES[provider]}:{self.target[provider]['bucket']}/{key}"

    def _client(self, provider: str) -> Any:
        if provider not in self._clients:
            target = self.target[provider]
            if provider == "s3":
                import boto3

                self._clients[provider] = boto3.client(
                    "s3", endpoint_url=target["endpoint"], region_name="us-east-1",
                    aws_access_key_id="testing", aws_secret_access_key="moto-secret-key")
            elif provider == "az":
                from azure.storage.blob import BlobServiceClient

                service = BlobServiceClient.from_connection_string(target["connection"])
                self._clients[provider] = service.get_container_client(target["bucket"])
            else:
                from google.auth.credentials import AnonymousCredentials
                from google.cloud import storage

                self._clients[provider] = storage.Client(
                    project="test", credentials=AnonymousCredentials(),
                    client_options={"api_endpoint": target["endpoint"]}).bucket(target["bucket"])
        return self._clients[provider]

    def object_size(self, provider: str, key: str) -> int:
        client, bucket = self._client(provider), self.target[provider]["bucket"]
        if provider == "s3":
            return int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        if provider == "az":
            return int(client.get_blob_client(key).get_blob_properties().size)
        blob = client.get_blob(key)
        if blob is None:
            raise FileNotFoundError(f"gs://{bucket}/{key}")
        return int(blob.size)

    def delete(self, provider: str, key: str) -> None:
        """Remove the object (so the next run writes afresh) and anything the run left beside it."""
        client, bucket = self._client(provider), self.target[provider]["bucket"]
        with contextlib.suppress(Exception):
            if provider == "s3":
                client.delete_object(Bucket=bucket, Key=key)
            elif provider == "az":
                client.delete_blob(key)
            else:
                client.blob(key).delete()


@contextlib.contextmanager
def start_services(providers: tuple[str, ...]) -> Iterator[Services]:
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-copy-")))
        target: dict[str, dict[str, str]] = {}
        if "s3" in providers:
            url = stack.enter_context(moto_process(workdir / "moto.log"))
            target["s3"] = {"endpoint": url, "bucket": unique_name()}
            create_s3_bucket(url, target["s3"]["bucket"])
        if "gs" in providers:
            url = stack.enter_context(fake_gcs())
            target["gs"] = {"endpoint": url, "bucket": unique_name()}
            create_gcs_bucket(url, target["gs"]["bucket"])
        port = stack.enter_context(source_process())
        services = Services(target=target, source_port=port, workdir=workdir)
        stack.callback(services.stop_azurite)
        if "az" in providers:
            services.start_azurite()
        yield services
