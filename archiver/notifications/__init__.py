"""Outbound notifications: the customer's applications told when a recording is archived, a copy
fails for good, or reconcile finds a recording no webhook announced (Standard Webhooks).

Lives here: `routing` (the ledger's Outbox built from [[notifications]]), `sending` (one signed POST to a
configured endpoint, under the [source]-style address policy), `delivery` (`deliver_due`: the loop that
claims due outbox messages, sends them and schedules retries with backoff), `status` (the backlog as
`archiver status` shows it). The outbox rows themselves are written by `archiver.ledger.outbox`, inside
the ledger transaction of the outcome.
May import: `archiver.domain`, `archiver.ledger`, `archiver.settings`, `archiver.observability`,
`archiver.retry` (backoff), `archiver.copy.source.ssrf` (the address guard), `standardwebhooks`, httpx.
No Celery (archiver.worker wraps `deliver_due` in a task).
"""
