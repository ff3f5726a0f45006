"""The controller: every trigger enqueues a key; workers converge keys, one worker per key.

Triggers (Kopf's handlers, the watches of the children, key Secrets and LeaderWorkerSets, the
safety resync, a GPU node joining) only say which NemotronDeployment may need work: `enqueue`. A
worker takes a key from the `WorkQueue`, passes it through the one peering gate, waits for the
children of its namespace to be listed, copies what the watches know of it where the copy cannot
race (`world.OnLoop`), and converges it (`converge.Converger`):

- it succeeded: the key's failures are forgotten, and when its status may change with time alone
  (a startup allowance running out, a credentials check due again) the key comes back at exactly
  that moment (`add_after`);
- it raised (the API server away, a conflict): the key comes back after a capped exponential
  backoff (`add_rate_limited`).

The safety resync enqueues, every `resync_seconds`, the objects that are not Ready or whose
status describes an older generation: what no watch could report.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from kubernetes.client.rest import ApiException

from nemotron_operator.api import names
from nemotron_operator.core.conditions import find_condition
from nemotron_operator.core.inventory import GpuPool
from nemotron_operator.shell import kube, metrics
from nemotron_operator.shell.converge import Converger, Outcome, key_secret_name
from nemotron_operator.shell.key_secrets import KeySecretWatches
from nemotron_operator.shell.leaderworkersets import LeaderWorkerSetChildren
from nemotron_operator.shell.namespace_watches import ALL_NAMESPACES
from nemotron_operator.shell.owned_children import OwnedChildren
from nemotron_operator.shell.peering import PeeringGate
from nemotron_operator.shell.workqueue import WorkQueue
from nemotron_operator.shell.world import Index, Key, OnLoop, World

log = logging.getLogger(__name__)


class NamespaceWatchesLike(Protocol):
    def follow(self, namespace: str) -> None: ...

    def stop(self) -> None: ...


class OwnedChildrenLike(NamespaceWatchesLike, Protocol):
    @property
    def index(self) -> Index: ...

    def start(self) -> None: ...

    def serve(self, namespaces: set[str]) -> None: ...

    def listed(self, namespace: str) -> bool: ...


class LeaderWorkerSetsLike(NamespaceWatchesLike, Protocol):
    @property
    def index(self) -> Index: ...

    def owners(self, namespace: str) -> list[str]: ...

    def forget(self, namespace: str, deployment: str) -> None: ...


OnChange = Callable[[str, "str | None"], None]
Needed = Callable[[str], bool]


@dataclass(frozen=True)
class KopfIndexes:
    """The indexes Kopf keeps for the handlers (handlers.py declares them)."""

    deployments: Index
    gpu_nodes: Index
    gpu_requests: Index
    owned_pods: Index
    pod_warnings: Index
    download_pods: Index = field(default_factory=dict)


class Controller:
    def __init__(
        self,
        indexes: KopfIndexes,
        converger: Converger,
        on_loop: OnLoop,
        gate: PeeringGate,
        workers: int,
        resync_seconds: float,
        queue: WorkQueue[Key] | None = None,
        key_secret_watches: Callable[[OnChange, Needed], NamespaceWatchesLike] = KeySecretWatches,
        leaderworkersets: Callable[[OnChange, Needed], LeaderWorkerSetsLike] = (
            LeaderWorkerSetChildren
        ),
        owned_children: Callable[[OnChange, Needed], OwnedChildrenLike] = (
            lambda on_change, needed: OwnedChildren(on_change, needed, clusterwide=True)
        ),
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.converger = converger
        self.on_loop = on_loop
        self.gate = gate
        self.queue: WorkQueue[Key] = queue if queue is not None else WorkQueue()
        self.key_secrets = key_secret_watches(self.key_secret_changed, self._key_secrets_needed)
        self.leaderworkersets = leaderworkersets(
            self.leaderworkerset_changed, self._leaderworkersets_needed
        )
        self.children = owned_children(self.children_changed, self._children_needed)
        converger.forget_leaderworkerset = self.leaderworkersets.forget
        converger.credentials.answer_changed = self.credentials_changed
        self.world = World(
            deployments=indexes.deployments,
            gpu_nodes=indexes.gpu_nodes,
            gpu_requests=indexes.gpu_requests,
            owned_pods=indexes.owned_pods,
            pod_warnings=indexes.pod_warnings,
            children=[self.children.index, self.leaderworkersets.index],
            download_pods=indexes.download_pods,
        )
        self._workers = workers
        self._resync_seconds = resync_seconds
        self._now = now
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._guard = threading.Lock()
        self._delivered: dict[Key, Mapping[str, Any]] = {}  # the body an event just brought
        self._converging: set[Key] = set()  # keys a worker converges now, from the body it took
        self._spanning: set[Key] = set()  # plans (or last statuses) spanning nodes
        self._inventory: list[GpuPool] | None = None

    # --- running ------------------------------------------------------------------------------

    def served_namespaces(self, namespaces: set[str]) -> None:
        """The namespaces the operator serves by name or glob, as Kopf found them (on its loop)."""
        self.children.serve(namespaces)

    def start(self) -> None:
        self.children.start()
        for number in range(self._workers):
            self._thread(self._work, f"worker-{number}")
        self._thread(self._resync_loop, "resync")

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop taking work; wait up to `grace_seconds` for the converges under way to end (a
        daemon thread still running when the interpreter exits can take the process down)."""
        self._stop.set()
        self.queue.shut_down()
        self.key_secrets.stop()
        self.leaderworkersets.stop()
        self.children.stop()
        deadline = time.monotonic() + grace_seconds
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))

    def _thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            self.process(key)

    def process(self, key: Key) -> None:
        """Converge `key` once and requeue it as its outcome says (a worker's one step)."""
        try:
            outcome = self._converge(key)
        except Exception:
            retry = self.queue.backoff(self.queue.failures(key) + 1)
            log.exception("converging %s/%s failed; trying again in %.1f s", *key, retry)
            self.queue.add_rate_limited(key)
        else:
            self.queue.forget(key)
            if outcome.requeue_after is not None:
                self.queue.add_after(key, outcome.requeue_after)
        finally:
            self.queue.done(key)

    @metrics.timed_converge
    def _converge(self, key: Key) -> Outcome:
        with self._guard:
            delivered = self._delivered.pop(key, None)
            self._converging.add(key)
        try:
            return self._converge_taken(key, delivered)
        finally:
            with self._guard:
                self._converging.discard(key)

    def _converge_taken(self, key: Key, delivered: Mapping[str, Any] | None) -> Outcome:
        namespace, name = key
        if not self.gate.acts_in(namespace):
            return Outcome()  # a peer acts here: Kopf brings every object back when it resumes
        snapshot = self.on_loop(lambda: self.world.snapshot(key))
        if delivered is not None:  # fresher than the index, and there before Kopf indexes it
            snapshot = replace(snapshot, body=delivered)
        if not self.children.listed(namespace):
            self.children.follow(namespace)
            # One the operator has converged before would have every child applied again: its
            # namespace's listing converges it. A new one has none yet (or, after a crash in its
            # first converge, the ones applied again unchanged); waiting would cost the first
            # object of a namespace served by name the listing of six kinds (55-82 ms).
            if not never_converged(snapshot.body):
                return Outcome()
        try:
            outcome = self.converger.converge(snapshot, self._now())
        except kube.NamespaceTerminating:
            log.debug("namespace %s is being deleted: nothing to converge", namespace)
            return Outcome()
        except ApiException as error:
            if error.status != 404:
                raise
            log.debug("%s/%s is gone: nothing to converge", namespace, name)
            return Outcome()
        # the watches this object needs (here: a failed follow is repaired by the next converge)
        if outcome.reads_key_secret:
            self.key_secrets.follow(namespace)
        with self._guard:
            if outcome.spans_nodes:
                self._spanning.add(key)
            else:
                self._spanning.discard(key)
        if outcome.spans_nodes:
            self.leaderworkersets.follow(namespace)
        return outcome

    # --- triggers: each only enqueues ----------------------------------------------------------

    def enqueue(self, key: Key) -> None:
        self.queue.add(key)

    def deployment_changed(self, key: Key, body: Mapping[str, Any]) -> None:
        with self._guard:
            self._delivered[key] = body
            # A worker converging this key took an older body: forgetting our writes now would
            # make it compare against that body's status (and write and post Events again). The
            # converge this event queues forgets them instead, from this body.
            if key not in self._converging:
                self.converger.statuses.seen(body)
        self.queue.add(key)

    def deployment_deleted(self, key: Key) -> None:
        """Drop what the controller kept about a deleted NemotronDeployment."""
        with self._guard:
            self._delivered.pop(key, None)
            self._spanning.discard(key)
        self.queue.discard(key)
        self.converger.statuses.forget(*key)

    def gpu_nodes_changed(self) -> None:
        """A GPU node joined, left or changed (on Kopf's loop): when the GPU pools changed (node
        heartbeats do not count), re-plan what waits for GPUs."""
        pools = self.world.pools()
        if pools == self._inventory:
            return
        self._inventory = pools
        for key in self.world.waiting_for_gpus():
            self.queue.add(key)

    def key_secret_changed(self, namespace: str, secret: str | None) -> None:
        """Secret `secret` of `namespace` was created, changed or deleted (None: any may have
        been): converge the NemotronDeployments that read their key from it."""
        for key in self.on_loop(lambda: self._key_readers(namespace, secret)):
            self.queue.add(key)

    def credentials_changed(self, image: str) -> None:
        """The registry answered differently for `image` (a key revoked at NGC, an entitlement
        granted): converge the NemotronDeployments planned on it now, not each at its own
        credentials recheck."""
        for key in self.on_loop(lambda: self._planned_on(image)):
            self.queue.add(key)

    def children_changed(self, namespace: str, deployment: str | None) -> None:
        """A child of `deployment` changed (None: the namespace's children were listed, every
        namespace's when it is ALL_NAMESPACES): converge its NemotronDeployment (all of them)."""
        if deployment is not None:
            self.queue.add((namespace, deployment))
            return
        for key in self.on_loop(lambda: self._deployments_in(namespace)):
            self.queue.add(key)

    def leaderworkerset_changed(self, namespace: str, deployment: str | None) -> None:
        """A LeaderWorkerSet of `deployment` changed (None: the namespace was listed again):
        converge its NemotronDeployment (all that have or may have one)."""
        if deployment is not None:
            owners = {deployment}
        else:
            with self._guard:
                owners = {name for ns, name in self._spanning if ns == namespace}
            owners |= set(self.leaderworkersets.owners(namespace))
        for name in sorted(owners):
            self.queue.add((namespace, name))

    def _resync_loop(self) -> None:
        while not self._stop.wait(self._resync_seconds):
            try:
                for key in self.on_loop(self._resync_due_keys):
                    self.queue.add(key)
            except Exception:  # the loop must outlive any round: nothing else would restart it
                log.exception(
                    "a resync round failed; the next starts in %s s", self._resync_seconds
                )

    # --- reads of the World (on Kopf's loop) ---------------------------------------------------

    def _resync_due_keys(self) -> list[Key]:
        return [_key(body) for body in self.world.deployment_bodies() if resync_due(body)]

    def _key_readers(self, namespace: str, secret: str | None) -> list[Key]:
        """The NemotronDeployments of `namespace` that read their key from `secret` (None: any)."""
        return [
            _key(body)
            for body in self.world.deployment_bodies()
            if body["metadata"]["namespace"] == namespace
            and key_secret_name(body) is not None
            and secret in (None, key_secret_name(body))
        ]

    def _planned_on(self, image: str) -> list[Key]:
        return [
            _key(body)
            for body in self.world.deployment_bodies()
            if ((body.get("status") or {}).get("plan") or {}).get("image") == image
        ]

    def _deployments_in(self, namespace: str) -> list[Key]:
        return [
            _key(body)
            for body in self.world.deployment_bodies()
            if namespace in (ALL_NAMESPACES, body["metadata"]["namespace"])
        ]

    def _children_needed(self, namespace: str) -> bool:
        return bool(self.on_loop(lambda: self._deployments_in(namespace)))

    def _key_secrets_needed(self, namespace: str) -> bool:
        return bool(self.on_loop(lambda: self._key_readers(namespace, None)))

    def _leaderworkersets_needed(self, namespace: str) -> bool:
        with self._guard:
            spanning = [key for key in self._spanning if key[0] == namespace]
        known = self.on_loop(lambda: [k for k in spanning if self.world.deployment(k) is not None])
        with self._guard:
            self._spanning.difference_update(set(spanning) - set(known))  # deleted meanwhile
        return bool(known)


def never_converged(body: Mapping[str, Any] | None) -> bool:
    """No status written by the operator yet (the CRD defaults observedGeneration to 0)."""
    return body is not None and not (body.get("status") or {}).get("observedGeneration")


def resync_due(body: Mapping[str, Any]) -> bool:
    """Worth converging on the safety resync: its status describes an older generation, or it is
    not Ready (scaled to zero counts as Ready: only a change brings that back, and a change is an
    event)."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    if status.get("observedGeneration") != meta.get("generation"):
        return True
    ready = find_condition(status.get("conditions"), names.ConditionType.READY)
    return ready is None or ready.get("status") != "True"


def _key(body: Mapping[str, Any]) -> Key:
    return (body["metadata"]["namespace"], body["metadata"]["name"])
