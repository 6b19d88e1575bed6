"""Observability: logs, metrics, and printing URLs without their secrets.

Lives here: `logs` (structlog: JSON lines off a terminal, secrets scrubbed), `metrics` (Prometheus,
multiprocess-safe), `redaction` (`mask_url`, and `redact_source` for webhook source URLs), `progress`
(bytes, rate and ETA as people read them), `ledger_gauges` (backlog gauges read at scrape time).
May import: the standard library, structlog, prometheus_client, httpx (parsing source URLs) and
`archiver.domain`.
"""
