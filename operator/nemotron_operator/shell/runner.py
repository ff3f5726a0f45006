"""`nemotron-operator run`: Kopf with the handlers of this package, configured for production."""

from __future__ import annotations

import gc
import logging
import sys

import kopf

from nemotron_operator.shell.settings import Settings


def run_operator(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT. No namespaces: the whole cluster. No peering: standalone (one
    replica, `Recreate`); with a peering name, several processes elect the one that acts."""
    from nemotron_operator.shell import (
        handlers,  # noqa: F401 - registers the handlers with Kopf
        kopf_workarounds,
        metrics,
    )

    kopf.configure(verbose=settings.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3.connectionpool").addFilter(_no_pool_full_lines)
    if not settings.verbose:  # noise at scale: "Handler '...' succeeded." for every watch event,
        # and a line for every liveness probe
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    kopf_workarounds.apply()
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    metrics_server = metrics.serve(settings.metrics_port)
    try:
        _run_kopf(settings)
    finally:
        if metrics_server is not None:  # its thread ends before the interpreter does
            metrics_server.shutdown()
            metrics_server.server_close()


def _no_pool_full_lines(record: logging.LogRecord) -> bool:
    """urllib3 says "Connection pool is full, discarding connection" for each connection closed
    beyond kube.CONNECTIONS_KEPT, as when the watches of many namespaces list at once: no fault,
    and a line per connection. Its other lines (a retry, a broken connection) stay."""
    return not record.getMessage().startswith("Connection pool is full")


# How long a thread may hold the interpreter while another waits for it (Python's default: 5
# ms). A worker whose answer has come back waits for Kopf's loop to let go, and the loop for the
# workers: the time from an event to the request it causes is a chain of such waits.
GIL_SWITCH_SECONDS = 0.001

# Collections of the youngest generation every 10,000 new containers instead of 700 (a watch event
# alone makes hundreds), of the oldest every 100 of the middle one's instead of 10.
GC_THRESHOLDS = (10_000, 10, 100)


def settle_heap() -> None:
    """Once started (modules, catalog, Kopf's and the controller's machinery): keep what exists
    out of every later garbage collection, and collect less often. A full collection walked the
    whole heap, start-up included, holding the interpreter for 70-450 ms at a time under load
    (the p99 of a NemotronDeployment's first child)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _run_kopf(settings: Settings) -> None:
    peering = settings.peering
    kopf.run(
        clusterwide=settings.clusterwide,
        namespaces=list(settings.namespaces),
        liveness_endpoint=settings.liveness_endpoint,
        standalone=peering is None,
        peering_name=peering.name if peering else None,
        priority=peering.priority if peering else 0,
        identity=peering.identity if peering else None,  # type: ignore[arg-type]  # a NewType
        memo=kopf.Memo(settings=settings),
    )
