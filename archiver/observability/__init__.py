"""Observability: logs, metrics, and printing URLs without their secrets.

Lives here: `logs` (structlog: JSON lines off a terminal, secrets scrubbed), `metrics` (Prometheus, multiprocess-safe),
`redaction` (`mask_url`).
May import: the standard library, structlog and prometheus_client only.
"""
