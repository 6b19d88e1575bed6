"""Logging for every archiver process (receiver, worker, beat, CLI): one structlog pipeline behind the
standard library's logging, so `logging.getLogger("archiver.x")`, Celery's and uvicorn's loggers and
`structlog.get_logger()` all come out alike: JSON lines off a terminal (for log shippers), readable
lines on one.

A JSON line: {"time": ISO 8601 UTC, "level": "info", "logger": "archiver.copy", "message": "...",
...context}. Context is what a stdlib call passes with extra={...} or a structlog call as key=value;
a traceback comes as "exception" (text). Secrets never reach the output: every value passes `scrub`
(URLs lose their passwords and tokens as in `mask_url`, `AccountKey=`-style pairs and PEM private keys
are masked, and fields named like password/secret/token are replaced by ***).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

from archiver.observability.redaction import MASK, mask_url

# Third-party loggers whose request logs would print URLs with signed query strings: warnings only.
NOISY = ("httpx", "httpcore", "botocore", "urllib3", "azure", "google", "alembic")
# Field names whose values are credentials, whatever they hold (substrings, lower case).
SECRET_FIELDS = ("password", "passwd", "secret", "token", "authorization", "signature", "credential",
                 "connection_string", "private_key", "api_key", "apikey")
# Not context: uvicorn's coloured copy of each message (extra={"color_message": ...}), and Celery's
# extra={"data": {...}} (celery/app/trace.py, worker/strategy.py), which repeats the message's values
# and adds the task's arguments: a webhook body, with its file URLs' signed query strings.
DROPPED = ("color_message", "data")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>]+")
# Connection-string and query pairs whose value is a credential (Azure AccountKey, SAS sig, ...).
_PAIR = re.compile(r"(?i)\b(AccountKey|SharedAccessSignature|SharedAccessKey|password|pwd|sig)=([^;&\s\"']+)")
_PEM = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?(-----END \1PRIVATE KEY-----|$)", re.S)


def scrub_text(text: str) -> str:
    """`text` with credentials in URLs, key=value pairs and PEM private keys replaced by ***."""
    if "://" in text:
        text = _URL.sub(lambda m: mask_url(m.group(0)), text)
    if "=" in text:
        text = _PAIR.sub(lambda m: f"{m.group(1)}={MASK}", text)
    if "PRIVATE KEY" in text:
        text = _PEM.sub(MASK, text)
    return text


def _scrub_value(name: str, value: Any) -> Any:
    if value not in (None, "") and any(word in name.lower() for word in SECRET_FIELDS):
        return MASK
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {k: _scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(name, v) for v in value]
    return value


def scrub(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named fields and credentials inside every string value
    (nested mappings and lists included)."""
    for name in DROPPED:
        event.pop(name, None)
    for name, value in event.items():
        event[name] = _scrub_value(name, value)
    return event


def _leading(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """time, level, logger and message first in every JSON line, context after them."""
    head = {k: event.pop(k) for k in ("time", "level", "logger", "message") if k in event}
    return {**head, **event}


def json_wanted(stream: TextIO | None = None) -> bool:
    """JSON lines unless `stream` (stderr by default) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return True


def _chain(as_json: bool, extra: Iterable[Processor]) -> list[Processor]:
    """What every entry goes through before it is rendered, from a stdlib record or a structlog call."""
    stamp = (structlog.processors.TimeStamper(fmt="iso", utc=True, key="time") if as_json else
             structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False, key="timestamp"))
    return [structlog.contextvars.merge_contextvars, structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level, structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ExtraAdder(), stamp, *extra]


def formatter(as_json: bool, extra: Iterable[Processor] = ()) -> logging.Formatter:
    """The logging.Formatter of every handler: JSON (as_json) or readable text, secrets scrubbed."""
    chain = _chain(as_json, extra)
    render: list[Processor] = (
        [structlog.processors.EventRenamer("message"), _leading,
         structlog.processors.JSONRenderer(ensure_ascii=False)]
        if as_json else [structlog.dev.ConsoleRenderer(colors=not json_wanted())])
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, scrub, *render])


def configure_logging(level: int = logging.INFO, *, json_lines: bool | None = None,
                      processors: Iterable[Processor] = ()) -> logging.Handler:
    """Send every log record of this process to stderr in one format (JSON when `json_lines`, by
    default when stderr is not a terminal). `processors` add context (the worker adds the task).
    Replaces the root logger's handlers, so calling it again (Celery does, per process) is harmless.
    Returns the handler, for loggers that do not propagate to the root."""
    as_json = json_wanted() if json_lines is None else json_lines
    extra = list(processors)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(as_json, extra))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[*_chain(as_json, extra), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(), wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False)
    logging.captureWarnings(True)  # warnings.warn() output as log records too ("py.warnings")
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
