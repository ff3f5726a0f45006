"""The operator's own metrics, in Prometheus' text format on `/metrics` (prometheus_client).

Each series says something an SRE acts on, with labels from small fixed sets (kinds, verbs,
the reasons in api/names.py): no series per namespace or NemotronDeployment.

- converges: how long each takes (a histogram from 5 ms to 30 s) and how it ended (ok; requeued:
  done, and due again at a set moment; error: retried after a backoff);
- API writes by kind and verb, counted where every request of the operator's API client goes
  (kube.api), with the answer's HTTP code;
- plans by outcome (Fits, or the planner's refusal), NGC registry checks by answer;
- NemotronDeployments by condition (type, status, reason), counted at scrape time from what the
  controller's index holds;
- watch restarts (Kopf's and the operator's own), the work queue's depth and retries.

The functional core knows nothing of this module: the shell counts what the core answers.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from nemotron_operator.api import names

log = logging.getLogger(__name__)
PREFIX = "nemotron_operator"
OTHER = "Other"  # a reason the operator does not write (a hand edit, another version)
WRITE_METHODS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
CONDITION_TYPES = frozenset(names.ConditionType)
REASONS = frozenset({*names.PlanReason, *names.NimReason, *names.StatusReason})

disable_created_metrics()  # no `_created` twin for every counter: nothing here reads them
REGISTRY = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)  # process_* (CPU, memory, open files), python_*

CONVERGE_SECONDS = Histogram(
    f"{PREFIX}_converge_duration_seconds",
    "Seconds one converge of a NemotronDeployment took (read, plan, write children and status).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CONVERGES = Counter(
    f"{PREFIX}_converges_total",
    "Converges by outcome: ok; requeued (done, due again at a set moment: a startup allowance, "
    "a credentials recheck); error (raised, retried after a backoff).",
    ["outcome"],
    registry=REGISTRY,
)
API_WRITES = Counter(
    f"{PREFIX}_api_writes_total",
    "Write requests the operator sent to the API server, by kind, verb (create, update, patch, "
    "apply, delete, status), dry run or not, and the HTTP code answered (none: no answer).",
    ["kind", "verb", "dry_run", "code"],
    registry=REGISTRY,
)
PLANS = Counter(
    f"{PREFIX}_plans_total",
    "Plans made, by outcome: Fits, or the reason the model does not fit.",
    ["outcome"],
    registry=REGISTRY,
)
NGC_CHECKS = Counter(
    f"{PREFIX}_ngc_checks_total",
    "Questions asked of the NGC registry about a key or an image, by answer (the "
    "CredentialsValid reason); answers kept from an earlier question are not counted.",
    ["answer"],
    registry=REGISTRY,
)
WATCH_RESTARTS = Counter(
    f"{PREFIX}_watch_restarts_total",
    "Watches started again from a new list (an expired resourceVersion, a lost connection, an "
    "API not served or forbidden), by resource; Kopf's watches and the operator's own.",
    ["resource"],
    registry=REGISTRY,
)
WORKQUEUE_RETRIES = Counter(
    f"{PREFIX}_workqueue_retries_total",
    "NemotronDeployments put back in the work queue after a failed converge (with backoff).",
    registry=REGISTRY,
)


# --- converges, plans, NGC checks ---------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def timed_converge(converge: F) -> F:
    """Count and time each call of `converge`, whose result has `requeue_after`."""

    @functools.wraps(converge)
    def counted(*args: Any, **kwargs: Any) -> Any:
        with CONVERGE_SECONDS.time():
            try:
                outcome = converge(*args, **kwargs)
            except BaseException:
                CONVERGES.labels("error").inc()
                raise
        CONVERGES.labels("ok" if outcome.requeue_after is None else "requeued").inc()
        return outcome

    return counted  # type: ignore[return-value]


def plan_made(reason: str) -> None:
    PLANS.labels(_bounded(reason)).inc()


class HasReason(Protocol):
    @property
    def reason(self) -> str: ...


A = TypeVar("A", bound=HasReason)


def ngc_checked(answer: A) -> A:
    """Count one answer of the NGC registry; return it."""
    NGC_CHECKS.labels(_bounded(answer.reason)).inc()
    return answer


def _bounded(reason: str) -> str:
    return reason if reason in REASONS else OTHER


# --- API writes ---------------------------------------------------------------------------------


def counting_writes(send: F, kinds: Mapping[str, str]) -> F:
    """`send` (the API client's `rest_client.request(method, url, headers=..., ...)`), counting
    each write by the kind its URL names (`kinds`: resource plural -> kind)."""

    @functools.wraps(send)
    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        verb = WRITE_METHODS.get(method.upper())
        if verb is None:
            return send(method, url, *args, **kwargs)
        headers = kwargs.get("headers") or (args[0] if args else None) or {}
        labels = write_labels(verb, url, headers.get("Content-Type", ""), kinds)
        try:
            response = send(method, url, *args, **kwargs)
        except BaseException:
            API_WRITES.labels(*labels, "none").inc()
            raise
        API_WRITES.labels(*labels, str(response.status)).inc()
        return response

    return request  # type: ignore[return-value]


def write_labels(
    verb: str, url: str, content_type: str, kinds: Mapping[str, str]
) -> tuple[str, str, str]:
    """(kind, verb, dry_run) of a write to `url`: a patch of the status subresource is "status",
    a server-side apply "apply"."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    # /api/v1/... or /apis/<group>/<version>/..., then namespaces/<ns>/ for namespaced objects
    rest = segments[2:] if segments[:1] == ["api"] else segments[3:]
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] if rest else "unknown"
    if rest[2:3] == ["status"]:
        verb = "status"
    elif verb == "patch" and content_type.startswith(APPLY_CONTENT_TYPE):
        verb = "apply"
    dry_run = "dryRun" in parse_qs(parts.query)
    return kinds.get(resource, resource), verb, str(dry_run).lower()


# --- watches, the work queue ------------------------------------------------------------------


def watch_restarted(resource: str) -> None:
    WATCH_RESTARTS.labels(resource).inc()


def counting_kopf_restarts(continuous_watch: F) -> F:
    """Kopf's `watching.continuous_watch` (one list, then watches from its resourceVersion),
    counting each call after the first for the same resource and namespace: a restart."""
    started: set[tuple[str, Any]] = set()

    @functools.wraps(continuous_watch)
    def watch(*args: Any, resource: Any, namespace: Any, **kwargs: Any) -> Any:
        stream = (resource.plural, namespace)
        if stream in started:
            watch_restarted(resource.plural)
        started.add(stream)
        return continuous_watch(*args, resource=resource, namespace=namespace, **kwargs)

    return watch  # type: ignore[return-value]


def workqueue_retried() -> None:
    WORKQUEUE_RETRIES.inc()


# --- what the controller holds, at scrape time ---------------------------------------------------


class ControllerLike(Protocol):
    """What the scrape reads of the controller (controller.Controller)."""

    queue: Any  # len(): keys due now and keys waiting for a later moment

    @property
    def on_loop(self) -> Callable[[Callable[[], Any]], Any]: ...

    @property
    def world(self) -> Any: ...  # world.World: deployment_bodies()


def condition_counts(bodies: Iterable[Mapping[str, Any]]) -> Tally[tuple[str, str, str]]:
    """NemotronDeployments by (condition type, status, reason) of their status; types the
    operator does not write are left out, reasons it does not write count as Other."""
    counts: Tally[tuple[str, str, str]] = Tally()
    for body in bodies:
        for condition in (body.get("status") or {}).get("conditions") or ():
            kind, status = condition.get("type"), condition.get("status")
            if kind in CONDITION_TYPES and status in ("True", "False", "Unknown"):
                counts[(kind, status, _bounded(str(condition.get("reason"))))] += 1
    return counts


class ControllerState:
    """A collector of what the controller holds: its deployments' conditions, its queue."""

    def __init__(self) -> None:
        self.controller: ControllerLike | None = None

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        controller = self.controller
        if controller is None:  # not started yet (or standing by): nothing to say
            yield from self._families()
            return
        world = controller.world
        counts = controller.on_loop(lambda: condition_counts(world.deployment_bodies()))
        yield from self._families(counts, len(controller.queue))

    @staticmethod
    def _families(
        counts: Mapping[tuple[str, str, str], int] | None = None, depth: int | None = None
    ) -> Iterator[Metric]:
        deployments = GaugeMetricFamily(
            f"{PREFIX}_deployments",
            "NemotronDeployments by condition type, status and reason, as the operator last saw "
            "their status.",
            labels=["condition", "status", "reason"],
        )
        for labels, count in sorted((counts or {}).items()):
            deployments.add_metric(list(labels), count)
        yield deployments
        queue = GaugeMetricFamily(
            f"{PREFIX}_workqueue_depth",
            "NemotronDeployments waiting in the work queue: due now, or at a set later moment.",
        )
        if depth is not None:
            queue.add_metric([], depth)
        yield queue


CONTROLLER_STATE = ControllerState()
REGISTRY.register(CONTROLLER_STATE)


def follow(controller: ControllerLike) -> None:
    """Report what this controller holds from now on."""
    CONTROLLER_STATE.controller = controller


def serve(port: int) -> WSGIServer | None:
    """Serve /metrics on `port` of every address, in a daemon thread (0: not at all); the server
    (None: none). A port already taken is logged and leaves the operator running: Prometheus'
    `up` says the rest."""
    if not port:
        return None
    try:
        server, _ = start_http_server(port, registry=REGISTRY)
    except OSError as error:
        log.error("cannot serve metrics on port %s: %s", port, error)
        return None
    log.info("serving metrics on port %s", port)
    return server
