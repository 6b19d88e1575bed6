"""The Celery application object. Settings live in the top-level celeryconfig module."""

from celery import Celery

app = Celery("archiver", include=["archiver.tasks"])
app.config_from_object("celeryconfig")
