"""Maintenance: scheduled work that keeps the ledger and VideoSDK in step.

Lives here: `reconcile` (+ `_kinds`, `_rooms`, `_report`: archive what no webhook announced) and
`retention` (delete from VideoSDK once every copy is known good).
May import: `archiver.domain`, `archiver.ledger`, `archiver.settings`, `archiver.videosdk`,
`archiver.intake.record`, `archiver.observability`.
"""
