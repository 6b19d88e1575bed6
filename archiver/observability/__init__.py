"""Observability: logs, metrics, and printing URLs without their secrets.

Lives here: `logs` (JSON lines off a terminal), `metrics` (Prometheus, multiprocess-safe),
`redaction` (`mask_url`).
May import: the standard library, prometheus_client and `archiver.domain`.
"""
