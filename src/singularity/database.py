"""Opening the platform's databases: the configured server, or the embedded one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from singularity.config import Settings
from singularity.postgres.cluster import Cluster
from singularity.postgres.embedded import EmbeddedServer

__all__ = ["embedded_server", "open_cluster"]


def embedded_server(settings: Settings) -> EmbeddedServer:
    return EmbeddedServer(settings.singularity_home)


@contextlib.contextmanager
def open_cluster(settings: Settings, *, keep_running: bool = False) -> Iterator[Cluster]:
    """The cluster for these settings; with no server configured, the embedded one runs while
    this is open (and afterwards too with `keep_running`, until `singularity db stop`)."""
    if not settings.embedded:
        yield Cluster(settings)
        return
    server = embedded_server(settings)
    if keep_running:
        yield Cluster(settings, server.pin())
        return
    info = server.acquire()
    try:
        yield Cluster(settings, info)
    finally:
        server.release()
