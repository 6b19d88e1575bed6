"""Settings: archiver.toml plus ARCHIVER_* environment variables, validated into typed values.

Lives here: `model` (every setting declared once: Settings and its sections), `fields` (the
declaration helper, type readers and value checks), `sections` (reading declarations from a TOML table
and the environment, unknown names with suggestions), `urls` (URL checks, relative paths),
`provider_options` (a storage URL's options, every problem at once), `destinations` ([[destinations]]
tables), `config` (load_settings, ConfigError, ENVIRONMENT; the public names)), `notifications`
([[notifications]] tables: endpoints told about outcomes).
May import: `archiver.domain`, `providers` (option specs only).
"""
