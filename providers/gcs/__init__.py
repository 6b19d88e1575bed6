"""Google Cloud Storage (gs://bucket/prefix).

Lives here: `provider` (GCSProvider), `upload` (resumable upload sessions), `errors`.
May import: `providers` shared modules, google-cloud-storage/google-auth.
"""
