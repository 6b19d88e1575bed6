"""Copying: one recording file into one destination, exactly once, verified.

Lives here: `job` (run a copy job end to end), `lease` (the job's lease), `object` (one object,
create-only and verified), `playlist`/`hls_playlist` (HLS recordings), `sources` (where bytes are read
from), `encryption` (key and meta files), `manifests` (KEY.json beside a copy), `verification`
(re-checking succeeded copies), `errors` (the failures a copy raises and `classify`: worth a retry?),
and `source/` (the HTTP download with its proofs and SSRF guard).
May import: `archiver.domain`, `archiver.ledger`, `archiver.settings`, `archiver.intake`, `providers`,
`archiver.retry`, `archiver.runtime`. No Celery.
"""
