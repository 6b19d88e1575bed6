"""The receiver's HTTP server: uvicorn, with the bounds of [receiver] on every connection.

`receiver_config` builds the uvicorn.Config (the guarded h11 protocol of archiver.intake.protocol,
keep-alive timeout, no WebSocket upgrades); `ReceiverServer` installs the accept guard of
archiver.intake.overload on its event loop; `serve_receiver` runs it in the foreground as
uvicorn.run would (SIGTERM and SIGINT stop it; exit 3 if it could not start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from archiver.intake.overload import (
    ACCEPT_BACKLOG,
    accept_failures,
    connection_refusals,
    install_accept_guard,
    install_repeat_filter,
)
from archiver.intake.protocol import guarded_protocol
from archiver.settings.config import ReceiverSettings


def receiver_config(app: Any, limits: ReceiverSettings, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn settings for the receiver; `options` are further uvicorn.Config arguments."""
    return uvicorn.Config(
        app, host=host, port=port,
        # Our protocol, always: "auto" would pick httptools when installed, without these bounds. A class
        # is used as it is (uvicorn/config.py, Config.load) and built per connection by Server.startup's
        # create_protocol with (config, server_state, app_state, _loop) (uvicorn/server.py).
        http=guarded_protocol(limits, connection_refusals(limits.max_connections)),
        # The loop whose accept() reporting archiver.intake.overload knows (uvloop's differs).
        loop="asyncio",
        ws="none",  # webhooks need no WebSocket; an upgrade would leave the guarded protocol
        timeout_keep_alive=limits.keepalive_timeout,  # type: ignore[arg-type]  # call_later takes a float
        backlog=ACCEPT_BACKLOG,  # see archiver.intake.overload: bounds the descriptors a burst takes
        # log_config=None: uvicorn's records go to the root logger, in the archiver's format
        # (archiver.observability.logs), instead of to handlers of uvicorn's own plain-text config.
        **{"log_level": "warning", "access_log": False, "log_config": None, **options})


class ReceiverServer(uvicorn.Server):
    """uvicorn.Server that reports failed accept() calls in a few lines instead of a traceback each,
    and logs uvicorn's per-request warnings about malformed requests at most once per 10 s."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's startup runs in the loop that serves (Server.serve, uvicorn/server.py): the handler
        # is in place before loop.create_server starts accepting.
        install_accept_guard(asyncio.get_running_loop(), accept_failures())
        install_repeat_filter(logging.getLogger("uvicorn.error"))  # after Config set uvicorn's logging up
        await super().startup(sockets)


def serve_receiver(app: Any, limits: ReceiverSettings, host: str, port: int, *, stop_seconds: float) -> None:
    """Serve until SIGTERM or SIGINT; requests still open `stop_seconds` later are cut off."""
    config = receiver_config(app, limits, host, port, timeout_graceful_shutdown=stop_seconds)
    server = ReceiverServer(config)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: SIGINT is raised again once it stopped
        server.run()
    if not server.started:  # uvicorn logged why (e.g. the port is taken)
        sys.exit(STARTUP_FAILURE)
