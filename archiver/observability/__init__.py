"""Observability: logs, metrics, and printing URLs without their secrets.

Lives here: `logs` (JSON lines off a terminal), `metrics` (Prometheus, multiprocess-safe),
`redaction` (`mask_url`, and `redact_source` for webhook source URLs).
May import: the standard library, prometheus_client, httpx (parsing source URLs) and `archiver.domain`.
"""
