"""Intake: a webhook arrives, is verified, parsed, checked and recorded as jobs in the ledger.

Lives here: `receiver` (the ASGI app), `server`/`protocol`/`overload` (uvicorn with connection bounds),
`signature` (RSA webhook signature), `events` and `field_limits` (parsing and edge validation),
`webhook` (one POSTed body, framework-free), `record` (`record_files`: the one path by which files from
any origin enter the ledger), `account` (confirming a file belongs to our VideoSDK account), `openapi`.
May import: `archiver.domain`, `archiver.ledger`, `archiver.settings`, `archiver.videosdk`, `archiver.retry`,
`archiver.observability`.
"""
