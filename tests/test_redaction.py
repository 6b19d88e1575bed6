"""Broker, database and API URLs are printed with every password and token masked, everywhere.

One table of URL forms, checked through `mask_url` and through every place that prints such a URL:
`archiver config show`, the `archiver up` banner, the ledger's schema message and Celery's banner.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.observability.redaction import mask_url
from archiver.settings.config import Settings

# (url, secrets that must not be shown, parts that must still be shown)
CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("redis://:s3cretpw@redis.internal:6379/0", ("s3cretpw",), ("redis.internal:6379/0",)),
    ("redis://:p@ssw0rd@redis.internal:6379/0", ("p@ssw0rd", "ssw0rd"), ("redis.internal:6379/0",)),
    ("redis://:p%40ssw0rd@redis.internal:6379/0", ("p%40ssw0rd", "ssw0rd"), ("redis.internal",)),
    ("redis://default:tok3n-value@redis.internal:6379/0", ("tok3n-value",), ("default:", "redis.internal")),
    ("redis://bare-token-value@redis.internal:6379/0", ("bare-token-value",), ("redis.internal",)),
    ("rediss://:tls-pw@redis.internal:6380/0?ssl_cert_reqs=required", ("tls-pw",),
     ("rediss://", "ssl_cert_reqs=required")),
    ("redis://redis.internal:6379/0?password=qpw-value", ("qpw-value",), ("redis.internal", "password=")),
    ("redis://redis.internal:6379/0?pass=qpass-value&db=1", ("qpass-value",), ("db=1",)),
    ("amqp://guest:amqp-pw@rabbit:5672//", ("amqp-pw",), ("guest:", "rabbit:5672//")),
    ("amqps://archiver:amqps-pw@rabbit.example.com:5671/vhost?heartbeat=30", ("amqps-pw",), ("heartbeat=30",)),
    ("sentinel://:sent-pw-1@h1:26379;sentinel://:sent-pw-2@h2:26379", ("sent-pw-1", "sent-pw-2"),
     ("h1:26379", "h2:26379")),
    ("sentinel://:semi;colon-pw@h1:26379;sentinel://:x2-pw@h2:26379", ("colon-pw", "x2-pw", "semi"), ("h2:26379",)),
    ("redis://:v6-pw@[::1]:6379/0", ("v6-pw",), ("[::1]:6379",)),
    ("redis://:v6-pw2@[2001:db8::7]:6379/0", ("v6-pw2",), ("[2001:db8::7]",)),
    ("sqla+sqlite:///./.archiver/broker.db", (), ("sqla+sqlite:///./.archiver/broker.db",)),
    ("sqlite:///./.archiver/ledger.db", (), ("sqlite:///./.archiver/ledger.db",)),
    ("postgresql+psycopg://archiver:pg-pw@db.internal:5432/archiver", ("pg-pw",), ("db.internal:5432/archiver",)),
    ("postgresql+psycopg://archiver:pg/pw?x#y@db.internal:5432/archiver", ("pg/pw", "pw?x", "x#y"),
     ("db.internal",)),
    ("postgresql+psycopg://u:pg-multi@h1:5432,h2:5432/archiver?sslmode=require", ("pg-multi",),
     ("h1:5432,h2:5432", "sslmode=require")),
    ("postgresql+psycopg://db.internal/archiver?user=a&password=qpg-pw", ("qpg-pw",), ("user=a",)),
    ("https://api.example.com/v2?token=tk-value", ("tk-value",), ("api.example.com/v2",)),
    ("https://api.example.com/v2?api_key=ak-value&x=1", ("ak-value",), ("x=1",)),
    ("https://api.example.com/v2?secret=sc-value", ("sc-value",), ()),
    ("https://acct.blob.core.windows.net/c?sv=2024-01-01&sig=sas-sig-value&sp=r", ("sas-sig-value",), ("sp=r",)),
    ("https://api.example.com/v2?Access_Token=at-value", ("at-value",), ()),
    ("https://api.example.com/v2?pass%77ord=enc-value", ("enc-value",), ()),
    ("https://api.example.com/v2#frag-token", ("frag-token",), ("api.example.com/v2",)),
    ("https://user:api-pw@api.example.com/v2", ("api-pw",), ("api.example.com/v2",)),
]
IDS = [c[0][:48] for c in CASES]


@pytest.mark.parametrize(("url", "hidden", "kept"), CASES, ids=IDS)
def test_mask_url(url: str, hidden: tuple[str, ...], kept: tuple[str, ...]) -> None:
    shown = mask_url(url)
    for secret in hidden:
        assert secret not in shown, (url, shown)
    for part in kept:
        assert part in shown, (url, shown, part)
    assert mask_url(shown) == shown  # masking is stable: a masked URL is shown as it is


def test_a_url_without_secrets_is_unchanged() -> None:
    for url in ("redis://redis:6379/0", "amqp://rabbit//", "https://api.videosdk.live/v2"):
        assert mask_url(url) == url


@pytest.mark.parametrize(("url", "hidden", "kept"), [c for c in CASES if c[1]], ids=[i for i, c in zip(IDS, CASES,
                                                                                                         strict=True)
                                                                                      if c[1]])
def test_config_show_and_the_up_banner_mask_every_form(url: str, hidden: tuple[str, ...], kept: tuple[str, ...],
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       restore_root_logging: None) -> None:
    from archiver.cli.service import describe

    # Each URL where it belongs: a broker URL as the ledger's (or the reverse) is refused at load now.
    if url.startswith(("redis", "amqp", "sentinel")):
        monkeypatch.setenv("ARCHIVER_BROKER_URL", url)
    elif url.startswith("https"):
        monkeypatch.setenv("ARCHIVER_VIDEOSDK_API_BASE", url)
    else:
        monkeypatch.setenv("ARCHIVER_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["config", "show"])
    banner = describe(Settings(broker_url=url, database_url=url), "127.0.0.1", 8000)
    for secret in hidden:
        assert secret not in out.getvalue() + err.getvalue() and secret not in banner, (url, secret)
    assert mask_url(url) in banner
    if code == 0:
        shown = json.loads(out.getvalue())
        assert mask_url(url) in (shown["broker_url"], shown["database_url"], shown["videosdk"]["api_base"])
    else:  # a URL its client could not read is refused, naming the variable, without quoting it
        variable = "ARCHIVER_BROKER_URL: not a URL the broker" if url.startswith(("redis", "amqp", "sentinel")) \
            else "ARCHIVER_DATABASE_URL: not a URL the database"
        assert code == 2 and f"{variable} client can read" in err.getvalue()


def _sqlalchemy_reads(url: str) -> bool:
    from sqlalchemy.engine import make_url

    try:
        make_url(url).port  # noqa: B018 - a multi-host netloc fails here
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("url", [c[0] for c in CASES if c[0].startswith("postgresql") and c[1]
                                 and _sqlalchemy_reads(c[0])])
def test_the_ledger_schema_message_masks_the_url(url: str) -> None:
    from unittest import mock

    from sqlalchemy import create_engine

    from archiver.ledger.database import SchemaBehind, require_current_schema

    # No server: the revision is answered as an empty database would answer it.
    with mock.patch("archiver.ledger.database.current_revision", return_value=None), \
            pytest.raises(SchemaBehind) as excinfo:
        require_current_schema(create_engine(url))
    message = str(excinfo.value)
    assert "***" in message and "archiver db upgrade" in message
    for secret in next(c[1] for c in CASES if c[0] == url):
        assert secret not in message


@pytest.mark.parametrize("url", [c[0] for c in CASES if c[0].startswith(("redis", "amqp", "sentinel"))])
def test_celerys_banner_shows_the_broker_without_its_password(url: str) -> None:
    """The worker prints app.connection().as_uri() in its banner and on every (re)connection; a URL
    kombu cannot read is refused when the configuration loads, without quoting it."""
    from archiver.settings.config import ConfigError, load_settings
    from archiver.worker.app import create_app

    hidden = next(c[1] for c in CASES if c[0] == url)
    try:
        settings = load_settings(environ={"ARCHIVER_BROKER_URL": url})
    except ConfigError as exc:
        assert "ARCHIVER_BROKER_URL: not a URL the broker client can read" in str(exc)
        assert all(secret not in str(exc) for secret in hidden)
        return
    if "?" in url:
        return  # kombu turns query parameters into connection arguments; its banner omits the query
    shown = create_app(settings).connection_for_write().as_uri()
    userinfo = url.split("://", 1)[1].rpartition("@")[0]
    if ":" not in userinfo:
        hidden = ()  # a user name alone is not a Redis credential: kombu shows it as the user
    for secret in hidden:
        assert secret not in shown, shown


# ---- source URLs: the CDN's signed-URL token never shows; the ledger keeps the URL the worker needs ----

TOKEN = "sig-T0KEN-value"


@pytest.mark.usefixtures("restore_root_logging")
def test_a_source_urls_query_shows_nowhere_but_stays_in_the_ledger(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from archiver.ledger.database import create_ledger_engine, upgrade
    from archiver.ledger.store import Ledger
    from archiver.settings.config import load_settings

    config = tmp_path / "archiver.toml"
    config.write_text(f'database_url = "sqlite:///{tmp_path}/ledger.db"\n[[destinations]]\nname = "local"\n'
                      f'url = "file://{tmp_path}/archive/{{meetingId}}/"\n')
    upgrade(create_ledger_engine(f"sqlite:///{tmp_path}/ledger.db"))
    url = f"https://cdn.example.net/encoded/videos/a.mp4?token={TOKEN}&Expires=1#{TOKEN}-fragment"
    body = tmp_path / "event.json"
    body.write_text(json.dumps({"webhookType": "recording-stopped", "data": {
        "meetingId": "redact-room", "sessionId": "s1", "filePath": "/encoded/videos/a.mp4", "fileUrl": url}}))
    shown = []
    for argv in (["archive", str(body)], ["status"], ["status", "--json"]):
        code = main(["--config", str(config), *argv])
        out = capsys.readouterr()
        assert code == 1, (argv, out)  # cdn.example.net is not an allowed host: the copy fails for good
        shown.append(out.out + out.err)
    assert all(TOKEN not in text for text in shown), shown
    assert "source_ssrf" in shown[0] and "https://cdn.example.net/encoded/videos/a.mp4" in shown[0]
    [row] = json.loads(shown[2])
    assert row["source_url"] == "https://cdn.example.net/encoded/videos/a.mp4"
    [job] = Ledger(create_ledger_engine(load_settings(config, environ={}).database_url)).jobs()
    assert job.source_url == url  # what the worker downloads: the ledger keeps the URL as the webhook gave it
