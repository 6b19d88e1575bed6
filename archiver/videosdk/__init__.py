"""VideoSDK's REST API: the client, the items of every recording kind, paging, and lookups.

Lives here: `api` (the client), `items` (REST items -> RecordingFile values, pure), `paging` (walking
paged lists to an end), `lookup` (durable lookups of recordings a webhook names only by id),
`recording_controls` (start/stop recordings and create auto-recording rooms pointed at our receiver).
May import: `archiver.domain`, `archiver.ledger` (lookup only), `archiver.intake.record`, `archiver.retry`.
"""
