"""The source download: stream a recording file from the URL a webhook names, proving its length.

Lives here: `opener` (open_source, the entry point), `stream` (reading, resuming, proving the length),
`status` (what an answer means, the SourceError types), `resume` (validators and Content-Range),
`ssrf` (the address guard for untrusted URLs).
May import: `archiver.domain`, `archiver.retry` (the backoff), `archiver.observability` and the HTTP
libraries (httpx).
"""
