"""The operator's picture of the cluster: the indexes its watches keep, and consistent copies.

Kopf keeps the indexes in its event loop and changes them there; a copy taken anywhere else may
meet a dict changing size under it. So every read here runs where nothing changes them: in
Kopf's handlers (they run on the loop), and for the controller's worker threads through
`OnLoop`, which hands a read to the loop and waits for its answer. The copies (`Snapshot`) are
plain data the converge works from, never live views.

What the indexes keep of an object depends on who reads it. The NemotronDeployments and GPU
nodes are read field by field, often all of them at once (the resync, the key Secret watches,
the GPU pools): they are kept as dicts (`kept_copy`). The children, pods and Events are read
only whole, by the converge of the one NemotronDeployment they belong to: they are kept as
compressed JSON (`packed`), an eighth of the memory of the dicts, and unpacked into its
`Snapshot`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nemotron_operator.api import names
from nemotron_operator.core.inventory import GpuPool, gpu_pools

T = TypeVar("T")
Key = tuple[str, str]  # (namespace, NemotronDeployment)
Index = Mapping[Any, Iterable[Any]]
CHILD_KINDS = (
    "Deployment",
    "StatefulSet",
    "Service",
    "PersistentVolumeClaim",
    "LeaderWorkerSet",
    "Job",
    "DaemonSet",
)
# What the operator reads of a NemotronDeployment's metadata (the converge, its status memory,
# its Events, the resync): kept_deployment keeps these only.
DEPLOYMENT_METADATA = (
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
)


@dataclass(frozen=True)
class Snapshot:
    """What one converge of a NemotronDeployment reads, copied at one moment."""

    body: Mapping[str, Any] | None  # None: not (or no longer) known
    pods: list[Mapping[str, Any]] = field(default_factory=list)
    # Warning Events about those pods and the download pods
    warnings: list[Mapping[str, Any]] = field(default_factory=list)
    children: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # kind -> observed
    pools: list[GpuPool] = field(default_factory=list)  # free GPUs, its own pods' counted free
    download_pods: list[Mapping[str, Any]] = field(default_factory=list)  # the cache's Job's


@dataclass
class World:
    """The indexes, key -> collection of kept objects (Kopf's, and the LeaderWorkerSet watch's):
    `kept_copy` dicts of the NemotronDeployments and nodes, `packed` copies of the rest.

    Not thread-safe: call its methods where the indexes do not change (see the module)."""

    deployments: Index
    gpu_nodes: Index
    gpu_requests: Index
    owned_pods: Index
    pod_warnings: Index
    children: list[Index] = field(default_factory=list)
    download_pods: Index = field(default_factory=dict)  # the pods of the cache's download Job

    def deployment(self, key: Key) -> Mapping[str, Any] | None:
        return next(iter(self.deployments.get(key, ())), None)

    def deployment_bodies(self) -> list[Mapping[str, Any]]:
        return [body for bodies in self.deployments.values() for body in bodies]

    def snapshot(self, key: Key) -> Snapshot:
        namespace, name = key
        pods = [unpacked(pod) for pod in self.owned_pods.get(key, ())]
        downloading = [unpacked(pod) for pod in self.download_pods.get(key, ())]
        warnings = [
            unpacked(event)
            for pod in pods + downloading
            for event in self.pod_warnings.get((namespace, pod["metadata"]["name"]), ())
        ]
        children = {}
        for kind in CHILD_KINDS:
            for index in self.children:
                found = next(iter(index.get((namespace, name, kind), ())), None)
                if found is not None:
                    children[kind] = unpacked(found)
                    break
        return Snapshot(
            self.deployment(key), pods, warnings, children, self.pools(pods), downloading
        )

    def pools(self, exclude_pods: Iterable[Mapping[str, Any]] = ()) -> list[GpuPool]:
        """GPU pools with what is free, not counting the given pods (a deployment's own)."""
        mine = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in exclude_pods}
        requested: dict[str, int] = {}
        for node_name, claims in self.gpu_requests.items():
            requested[node_name] = sum(g for ns, pod, g in claims if (ns, pod) not in mine)
        nodes = [n for bodies in self.gpu_nodes.values() for n in bodies]
        return gpu_pools(nodes, requested)

    def waiting_for_gpus(self) -> list[Key]:
        """NemotronDeployments not planned yet (a GPU node joining may let them fit)."""
        return [key for key, body in self._keyed_bodies() if not _planned(body)]

    def _keyed_bodies(self) -> list[tuple[Key, Mapping[str, Any]]]:
        return [(key, body) for key, bodies in self.deployments.items() for body in bodies]


def _planned(body: Mapping[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    planned = next((c for c in conditions if c.get("type") == names.ConditionType.PLANNED), None)
    return planned is not None and planned.get("status") == "True"


def kept_copy(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a watched object to keep in an index: plain dicts and lists, without
    metadata.managedFields (nothing here reads them, and they are near half of an object's JSON),
    with its keys and strings interned (every object repeats its keys, and objects of one model
    repeat their conditions' messages). A quarter of the memory copy.deepcopy's took, and made
    several times faster."""
    return {sys.intern(k): _kept(v) for k, v in body.items() if k != "managedFields"}


def kept_deployment(body: Mapping[str, Any]) -> dict[str, Any]:
    """kept_copy of a NemotronDeployment with only the metadata the operator reads: not its
    labels, annotations (kubectl's last-applied-configuration repeats the whole spec) and
    finalizers."""
    meta = body.get("metadata") or {}
    return kept_copy({**body, "metadata": {k: meta[k] for k in DEPLOYMENT_METADATA if k in meta}})


def packed(body: Mapping[str, Any]) -> bytes:
    """A copy of a watched object to keep in an index that only a converge reads, whole: its
    compact JSON without metadata.managedFields, compressed (zlib's fastest level). A StatefulSet
    of bench_scale packed takes 1.5 KB where its kept_copy took 12 KB (and its JSON 3.7 KB), and
    none of the strings the watch decoded stay alive with it. Packing costs what the kept_copy
    did (about 70 us of CPU, compression 30 of them), unpacking about 30 us."""
    meta = body.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        body = {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return zlib.compress(_COMPACT.encode(body).encode(), 1)


def unpacked(kept: bytes) -> Mapping[str, Any]:
    """The object `packed` kept: plain dicts and lists, a copy of its own."""
    body: Mapping[str, Any] = json.loads(zlib.decompress(kept))
    return body


# Kopf hands bodies as Mapping views: they are encoded as the dicts they are
_COMPACT = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, check_circular=False, default=dict
)


def _kept(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {sys.intern(k): _kept(v) for k, v in value.items() if k != "managedFields"}
    if isinstance(value, list):
        return [_kept(item) for item in value]
    if isinstance(value, str):
        return sys.intern(value)
    return value


OnLoop = Callable[[Callable[[], T]], T]
"""Runs a read of the World where the indexes do not change, and returns its answer."""


def direct(read: Callable[[], T]) -> T:
    """OnLoop for a World nothing else changes (tests, the CLI)."""
    return read()


class EventLoopReads:
    """OnLoop for Kopf's indexes: the read runs on Kopf's event loop; a read asked from the loop
    itself (a handler) runs at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()  # built on the loop (a startup handler)

    def __call__(self, read: Callable[[], T]) -> T:
        if threading.get_ident() == self._loop_thread:
            return read()
        # A callback, not a coroutine: the loop runs it at its next turn, where a coroutine would
        # first become a task and run a turn later.
        answer: Future[T] = Future()

        def on_the_loop() -> None:
            try:
                answer.set_result(read())
            except BaseException as error:  # the worker that asked raises it
                answer.set_exception(error)

        self._loop.call_soon_threadsafe(on_the_loop)
        return answer.result()


class LiveIndex(Mapping[Any, list[bytes]]):
    """What a watch of the operator's own keeps (its own lock guards it), read as Kopf's indexes
    are, key -> [packed object], for `World`: a live view, not a copy."""

    def __init__(self, get: Callable[[Any], bytes | None], keys: Callable[[], list[Any]]) -> None:
        self._get = get
        self._keys = keys

    def __getitem__(self, key: Any) -> list[bytes]:
        found = self._get(key)
        if found is None:
            raise KeyError(key)
        return [found]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())
