"""A model of the time to N ready replicas under each model cache mode (README "Model cache").

Pure arithmetic over stated figures; bench_cache.py feeds it the planner's download sizes and
prints the tables. What each mode does before a replica serves:

- a claim per replica (ReadWriteOnce, the default): the StatefulSet starts its pods together
  (podManagementPolicy Parallel); each pulls the NIM image, downloads the model into its own
  block-storage claim, loads it from there and starts its engine. N pods share the egress.
- one shared claim (ReadWriteMany): a download Job pulls the image and downloads the model once;
  then the pods are created, pull the image, load the model from the shared file system (all N
  reading at once, within its per-client and per-file-system limits) and start their engines.
- an existing claim: as the shared claim, without the Job.

Transfers of one phase run at once and end together (same size, same rate): the time to N
ready is the sum of the phases. A replica spanning nodes is `pods_per_replica` pods, each
downloading and loading the whole model (the operator gives each its own claim).
"""

from __future__ import annotations

from dataclasses import dataclass

MB = 1e6
MIB = 2**20
GIB = 2**30
GBIT = 1e9 / 8  # bytes per second of one Gbit/s


@dataclass(frozen=True)
class Storage:
    """How fast pods read a cache volume: each at most `per_pod` bytes/s, all together at most
    `total` (None: each pod has a volume of its own, no shared limit)."""

    name: str
    per_pod: float
    total: float | None


@dataclass(frozen=True)
class Assumptions:
    image_bytes: float  # the NIM image, as pulled
    pull_per_node: float  # bytes/s one node pulls (and unpacks) it at
    download_per_pod: float  # bytes/s one pod downloads the model from NGC at
    egress_total: float | None  # bytes/s all pods together reach the internet at (None: no limit)
    block: Storage  # a claim per replica
    shared: Storage  # the shared claim, and an existing claim
    engine_start_seconds: float  # from weights loaded to ready (compilation, CUDA graphs)


@dataclass(frozen=True)
class Timeline:
    """Seconds of each phase before the N-th replica is ready, and the bytes downloaded."""

    mode: str
    download: float  # the pods' own downloads, or the download Job (its image pull included)
    pull: float  # the serving pods' image pull
    load: float
    engine_start: float
    downloaded_bytes: float

    @property
    def seconds(self) -> float:
        return self.download + self.pull + self.load + self.engine_start


PER_REPLICA, SHARED, EXISTING = "per-replica claim", "shared claim", "existing claim"


def transfer_seconds(size: float, streams: int, per_stream: float, total: float | None) -> float:
    """Seconds for `streams` simultaneous transfers of `size` bytes each, each at most
    `per_stream` bytes/s and all together at most `total`."""
    if streams == 0 or size == 0:
        return 0.0
    rate = per_stream if total is None else min(per_stream, total / streams)
    return size / rate


def _pull(pods: int, a: Assumptions) -> float:
    return transfer_seconds(a.image_bytes, pods, a.pull_per_node, a.egress_total)


def time_to_ready(
    mode: str, model_bytes: float, replicas: int, pods_per_replica: int, a: Assumptions
) -> Timeline:
    """When `replicas` replicas of a model whose download is `model_bytes` are all ready, from
    an empty cluster (no image on the nodes, an empty cache unless `mode` is EXISTING)."""
    pods = replicas * pods_per_replica
    pull = _pull(pods, a)
    if mode == PER_REPLICA:
        download = transfer_seconds(model_bytes, pods, a.download_per_pod, a.egress_total)
        load = transfer_seconds(model_bytes, pods, a.block.per_pod, a.block.total)
        return Timeline(mode, download, pull, load, a.engine_start_seconds, model_bytes * pods)
    load = transfer_seconds(model_bytes, pods, a.shared.per_pod, a.shared.total)
    if mode == SHARED:
        job = _pull(1, a) + transfer_seconds(model_bytes, 1, a.download_per_pod, a.egress_total)
        return Timeline(mode, job, pull, load, a.engine_start_seconds, model_bytes)
    if mode == EXISTING:
        return Timeline(mode, 0.0, pull, load, a.engine_start_seconds, 0.0)
    raise ValueError(f"unknown cache mode {mode!r}")


def break_even(
    model_bytes: float, pods_per_replica: int, a: Assumptions, up_to: int = 64
) -> int | None:
    """The fewest replicas for which the shared claim has them all ready sooner than a claim
    per replica (None: not up to `up_to`)."""
    for replicas in range(1, up_to + 1):
        shared = time_to_ready(SHARED, model_bytes, replicas, pods_per_replica, a)
        own = time_to_ready(PER_REPLICA, model_bytes, replicas, pods_per_replica, a)
        if shared.seconds < own.seconds:
            return replicas
    return None
