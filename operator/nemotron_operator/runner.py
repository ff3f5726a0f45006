"""`nemotron-operator run`: Kopf with the handlers of this package, configured for production."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import kopf


def run_operator(
    namespaces: Sequence[str] = (),
    liveness_endpoint: str | None = None,
    peering: str | None = None,
    priority: int = 0,
    verbose: bool = False,
) -> None:
    """Run until SIGTERM/SIGINT. No namespaces: the whole cluster. No peering: standalone (one
    replica, `Recreate`); with a peering name, several processes elect the one that acts."""
    from . import (
        handlers,  # noqa: F401 - registers the handlers with Kopf
        kopf_workarounds,
    )
    from . import peering as peers

    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    kopf_workarounds.apply()
    identity = None
    if peering is not None:  # the resync loop pauses when Kopf does (peering.py)
        identity = peers.configure(peering, priority, clusterwide=not namespaces)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=liveness_endpoint,
        standalone=peering is None,
        peering_name=peering,
        priority=priority,
        identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
    )
