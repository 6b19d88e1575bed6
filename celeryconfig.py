"""Celery settings for the archive workers (filled in by the pipeline work: queues, acks, time limits)."""
