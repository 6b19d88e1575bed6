"""Local disk (file:///path): temp file, fsync, atomic exclusive rename.

Lives here: `provider` (LocalProvider), `paths` (reaching a key's folder without following symlinks).
May import: `providers` shared modules only.
"""
