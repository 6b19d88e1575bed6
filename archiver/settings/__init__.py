"""Settings: archiver.toml plus ARCHIVER_* environment variables, validated into typed values.

Lives here: `config` (Settings and load_settings), `destinations` ([[destinations]] tables),
`notifications` ([[notifications]] tables: endpoints told about outcomes).
May import: `archiver.domain`, `providers` (option specs only).
"""
