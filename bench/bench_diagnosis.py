"""How fast a failing NIM pod shows on its NemotronDeployment: the time from the kubelet's write
of a pod status (played by the e2e fake kubelet) to the NemotronDeployment's Degraded condition
naming the cause, as a client watching the NemotronDeployment sees it. Beside it, in the same
run, how fast a changed NGC key shows: the time from the write of the key Secret to the
NemotronDeployment saying NGCNotEntitled (or Ready again), checked with the registry stand-in.

    .venv/bin/python bench/bench_diagnosis.py [--changes 120] [--recover-every 6] [--rotations 40]

Uses the local cluster (started when it is not running) and its own operator process serving
only the namespace it creates. One NIM pod goes through a cycle of causes (each different from
the one before, so every write is news); every `--recover-every` changes it becomes ready again,
and the time to Ready=True is measured too (that path also waits for kube-controller-manager to
count the ready pod in the Deployment's status). A second NemotronDeployment reads its key
from a Secret that is rewritten `--rotations` times, alternately with a key the registry
stand-in refuses (not entitled) and one it accepts. Prints p50/p99 of each.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchkit import (
    create_nemotron_deployment,
    local_cluster_with_crd,
    percentile,
    started_operator,
)
from kubernetes import client, watch
from tests.e2e.fake_kubelet import FakeKubelet
from tests.standins.registry import UNENTITLED_KEY, VALID_KEY, RegistryStandin, catalog_config

from nemotron_operator.api import names

KEY_SECRET = "ngc-api"
SPEC = {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-H100-80GB-HBM3"}}
CUDA_OOM = (
    '{"level": "ERROR", "message": "torch.OutOfMemoryError: CUDA out of memory. Tried to '
    'allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity; 77.02 GiB already allocated)"}'
)
UNKNOWN = "RuntimeError: Engine core initialization failed. See root cause above."
PULL_403 = (
    "failed to authorize: failed to fetch anonymous token: unexpected status from GET request "
    "to https://nvcr.io/proxy_auth?scope=repository%3Anim%2Fnvidia%2Fnemotron-3-nano%3Apull: "
    "403 Forbidden"
)
MANIFEST_UNKNOWN = "rpc error: code = NotFound desc = manifest unknown: manifest unknown"

# (what the kubelet writes, the reason the NemotronDeployment must then show)
CAUSES: list[tuple[Callable[[FakeKubelet, str, int], None], str]] = [
    (lambda k, pod, n: k.crash_loop(pod, restarts=n, message=UNKNOWN), "CrashLoop"),
    (lambda k, pod, n: k.crash_loop(pod, restarts=n, message=CUDA_OOM), "InsufficientGPUMemory"),
    (lambda k, pod, n: k.oom_killed(pod, restarts=n), "HostMemoryExhausted"),
    (lambda k, pod, n: k.image_pull_failed(pod, message=PULL_403), "ImagePullUnauthorized"),
    (lambda k, pod, n: k.config_error(pod, 'secret "hf-token" not found'), "SecretNotFound"),
    (lambda k, pod, n: k.image_pull_failed(pod, message=MANIFEST_UNKNOWN), "ImageNotFound"),
]


class ConditionLog:
    """Every (time seen, Degraded reason, Ready status) of one NemotronDeployment, from a watch."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.namespace, self.name = namespace, name
        self.seen: list[tuple[float, str | None, str | None]] = []
        self.changed = threading.Condition()
        self.stream = watch.Watch()
        self.stopped = False
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            self._record()
        except Exception:
            if not self.stopped:  # the stream breaks when it is stopped: expected then
                raise

    def _record(self) -> None:
        for event in self.stream.stream(
            self.objects.list_namespaced_custom_object,
            names.GROUP,
            names.VERSION,
            self.namespace,
            names.PLURAL,
            field_selector=f"metadata.name={self.name}",
            timeout_seconds=3600,
        ):
            at = time.monotonic()
            conditions = (event["object"].get("status") or {}).get("conditions") or []
            by_type = {c["type"]: c for c in conditions}
            degraded = by_type.get("Degraded") or {}
            ready = by_type.get("Ready") or {}
            with self.changed:
                self.seen.append(
                    (
                        at,
                        degraded.get("reason") if degraded.get("status") == "True" else None,
                        ready.get("status"),
                    )
                )
                self.changed.notify_all()

    def first(self, after: float, test: Callable[[str | None, str | None], bool]) -> float:
        """When the first state after `after` passing `test` was seen (waits up to 30 s)."""
        deadline = time.monotonic() + 30
        with self.changed:
            while True:
                for at, degraded, ready in self.seen:
                    if at >= after and test(degraded, ready):
                        return at
                if not self.changed.wait(max(0.0, deadline - time.monotonic())):
                    raise RuntimeError(
                        f"{self.name}: state not reached within 30 s: {self.seen[-3:]}"
                    )

    def stop(self) -> None:
        self.stopped = True
        self.stream.stop()


def put_key(core: client.CoreV1Api, namespace: str, key: str) -> None:
    """Create or rewrite the key Secret (what a person rotating the key does)."""
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name=KEY_SECRET), string_data={"NGC_API_KEY": key}
    )
    try:
        core.create_namespaced_secret(namespace, secret)
    except client.ApiException as error:
        if error.status != 409:
            raise
        core.replace_namespaced_secret(KEY_SECRET, namespace, secret)


def wait(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=120, help="failures to measure (>= 100)")
    parser.add_argument("--recover-every", type=int, default=6)
    parser.add_argument("--rotations", type=int, default=40, help="key Secret rewrites")
    args = parser.parse_args()

    kubeconfig, api = local_cluster_with_crd()
    core = client.CoreV1Api(api)
    prefix = f"benchdiag{uuid.uuid4().hex[:4]}"
    namespace = f"{prefix}-nim"
    registry = RegistryStandin(catalog_config()).start()
    operator = started_operator(kubeconfig, prefix, registry.url)
    failures_ms: list[float] = []
    recoveries_ms: list[float] = []
    refused_ms: list[float] = []
    accepted_ms: list[float] = []
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        wait(
            lambda: (
                core.list_namespaced_service_account(
                    namespace, field_selector="metadata.name=default"
                ).items
            ),
            "the default ServiceAccount",
        )
        log = ConditionLog(api, namespace, "nano")
        create_nemotron_deployment(api, namespace, "nano", SPEC)
        log.first(0, lambda degraded, ready: ready == "True")
        pod = wait(
            lambda: [
                p
                for p in core.list_namespaced_pod(
                    namespace, label_selector=f"{names.DEPLOYMENT_LABEL}=nano"
                ).items
                if p.status.phase == "Running"
            ],
            "the NIM pod",
        )[0].metadata.name

        kubelet = FakeKubelet(api, namespace)
        written: list[float] = []
        patch_status = kubelet.core.patch_namespaced_pod_status

        def timed_patch(*a: Any, **kw: Any) -> Any:
            written.append(time.monotonic())  # the moment the kubelet's write is sent
            return patch_status(*a, **kw)

        kubelet.core.patch_namespaced_pod_status = timed_patch  # type: ignore[method-assign]
        for i in range(args.changes):
            act, reason = CAUSES[i % len(CAUSES)]
            act(kubelet, pod, i + 1)
            sent = written[-1]
            seen = log.first(sent, lambda degraded, ready, r=reason: degraded == r)
            failures_ms.append((seen - sent) * 1000)
            if (i + 1) % args.recover_every == 0:
                kubelet.ready(pod)
                sent = written[-1]
                seen = log.first(sent, lambda degraded, ready: ready == "True" and not degraded)
                recoveries_ms.append((seen - sent) * 1000)
        log.stop()

        put_key(core, namespace, VALID_KEY)
        keyed = ConditionLog(api, namespace, "keyed")
        create_nemotron_deployment(
            api, namespace, "keyed", {**SPEC, "ngc": {"apiKeySecret": {"name": KEY_SECRET}}}
        )
        keyed.first(0, lambda degraded, ready: ready == "True")
        for i in range(args.rotations):
            refused = i % 2 == 0
            sent = time.monotonic()
            put_key(core, namespace, UNENTITLED_KEY if refused else VALID_KEY)
            if refused:
                seen = keyed.first(sent, lambda degraded, ready: degraded == "NGCNotEntitled")
                refused_ms.append((seen - sent) * 1000)
            else:
                seen = keyed.first(sent, lambda degraded, ready: ready == "True")
                accepted_ms.append((seen - sent) * 1000)
        keyed.stop()
    finally:
        operator.stop()
        registry.stop()
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(namespace)

    print(f"pod status change -> NemotronDeployment condition, one NIM pod, {len(CAUSES)} causes")
    print("key Secret rewritten -> NemotronDeployment condition (registry stand-in on loopback)")
    for label, values in (
        ("failure -> Degraded=True with its reason", failures_ms),
        ("ready again -> Ready=True (via the Deployment)", recoveries_ms),
        ("key not entitled -> Degraded=True NGCNotEntitled", refused_ms),
        ("entitled key again -> Ready=True", accepted_ms),
    ):
        print(
            f"  {label:48s} n={len(values):4d}  p50 {percentile(values, 0.5):7.1f} ms   "
            f"p99 {percentile(values, 0.99):7.1f} ms   max {max(values):7.1f} ms   "
            f"mean {statistics.mean(values):7.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
