"""The operator's settings: built once, when `nemotron-operator run` parses its arguments and
the environment (the Helm chart sets the environment), and handed to the controller. Nothing
else reads the environment.

Environment:

- NEMOTRON_CATALOG_OVERRIDES: a YAML file of catalog additions and overrides.
- NEMOTRON_LIVE_CATALOG=1: plan against the NIM Metadata API's published profiles.
- NEMOTRON_STARTUP_ALLOWANCE_SECONDS: how long a NIM container may run without becoming ready
  before the status says StartupTimeout. Default: what the pod's startup probe allows
  (render.startup_allowance_seconds: at least 20 minutes, more for big downloads). A shorter
  value reports a slow start sooner; the kubelet still restarts the container only when the
  startup probe runs out.
- NEMOTRON_NGC_REGISTRY_URL, NEMOTRON_NGC_METADATA_URL: the NGC endpoints (a mirror, a proxy).
- NEMOTRON_METRICS_PORT: the port of /metrics (Prometheus' text format) on every address;
  0 turns it off. Default 8081 (the liveness endpoint, when given, must use another port).
- NEMOTRON_PAUSE_IMAGE: the image of the one container of the DaemonSet that pulls the NIM
  image ahead (cache.prePullImage). Default: render.DEFAULT_PAUSE_IMAGE (registry.k8s.io).
- POD_ID: how this process shows among its peers (the chart sets the pod's name).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from nemotron_operator.core.render import DEFAULT_PAUSE_IMAGE

CATALOG_OVERRIDES_ENV = "NEMOTRON_CATALOG_OVERRIDES"
LIVE_CATALOG_ENV = "NEMOTRON_LIVE_CATALOG"
STARTUP_ALLOWANCE_ENV = "NEMOTRON_STARTUP_ALLOWANCE_SECONDS"
REGISTRY_URL_ENV = "NEMOTRON_NGC_REGISTRY_URL"
METADATA_API_URL_ENV = "NEMOTRON_NGC_METADATA_URL"
POD_ID_ENV = "POD_ID"
METRICS_PORT_ENV = "NEMOTRON_METRICS_PORT"
PAUSE_IMAGE_ENV = "NEMOTRON_PAUSE_IMAGE"

DEFAULT_METRICS_PORT = 8081
DEFAULT_WORKERS = 4
DEFAULT_RESYNC_SECONDS = 300.0
CREDENTIALS_RECHECK_SECONDS = 600.0


@dataclass(frozen=True)
class PeeringSettings:
    name: str
    priority: int
    identity: str  # as handed to kopf.run(identity=...): how this process shows in the status
    clusterwide: bool


@dataclass(frozen=True)
class Settings:
    namespaces: tuple[str, ...] = ()  # empty: the whole cluster
    catalog_overrides: str | None = None
    live_catalog: bool = False
    startup_allowance_seconds: int | None = None  # None: the startup probe's allowance
    registry_url: str | None = None  # None: the image's own registry
    metadata_api_url: str | None = None  # None: NVIDIA's
    peering: PeeringSettings | None = None  # None: standalone
    liveness_endpoint: str | None = None
    metrics_port: int = DEFAULT_METRICS_PORT  # 0: no metrics
    verbose: bool = False
    workers: int = DEFAULT_WORKERS
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    credentials_recheck_seconds: float = CREDENTIALS_RECHECK_SECONDS
    pause_image: str = DEFAULT_PAUSE_IMAGE

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @classmethod
    def build(
        cls,
        environ: Mapping[str, str],
        namespaces: Sequence[str] = (),
        peering: str | None = None,
        priority: int = 0,
        liveness_endpoint: str | None = None,
        verbose: bool = False,
    ) -> Settings:
        """Settings from `run`'s arguments and the environment; a bad value raises ValueError
        naming its variable."""
        identity = environ.get(POD_ID_ENV) or (
            f"nemotron-operator@{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"
        )
        return cls(
            namespaces=tuple(namespaces),
            catalog_overrides=environ.get(CATALOG_OVERRIDES_ENV) or None,
            live_catalog=environ.get(LIVE_CATALOG_ENV, "").lower() in ("1", "true"),
            startup_allowance_seconds=_positive_seconds(environ, STARTUP_ALLOWANCE_ENV),
            registry_url=(environ.get(REGISTRY_URL_ENV) or "").rstrip("/") or None,
            metadata_api_url=(environ.get(METADATA_API_URL_ENV) or "").rstrip("/") or None,
            peering=PeeringSettings(peering, priority, identity, clusterwide=not namespaces)
            if peering is not None
            else None,
            liveness_endpoint=liveness_endpoint,
            metrics_port=_metrics_port(environ, liveness_endpoint),
            verbose=verbose,
            pause_image=environ.get(PAUSE_IMAGE_ENV, "").strip() or DEFAULT_PAUSE_IMAGE,
        )


def _positive_seconds(environ: Mapping[str, str], variable: str) -> int | None:
    text = environ.get(variable, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"{variable} must be a whole number of seconds above 0, not {text!r}")
    return int(text)


def _metrics_port(environ: Mapping[str, str], liveness_endpoint: str | None) -> int:
    text = environ.get(METRICS_PORT_ENV, "").strip() or str(DEFAULT_METRICS_PORT)
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"{METRICS_PORT_ENV} must be a port number (0: off), not {text!r}")
    port = int(text)
    if port and liveness_endpoint and urlsplit(liveness_endpoint).port == port:
        raise ValueError(
            f"{METRICS_PORT_ENV}={port} is the port of the liveness endpoint "
            f"({liveness_endpoint}): give the metrics another"
        )
    return port
