"""Play the kubelet of a fake node, so a test can put a pod in any state a real NIM pod reaches.

kwok runs the fake nodes and marks every scheduled pod Running and Ready at once. A test that
wants something else takes a pod over with one call; from then on kwok leaves that pod's status
alone (hack/cluster/cluster.py adds that exclusion to kwok's Stages) and the call writes
`pods/<name>/status` exactly as a kubelet would, plus the Events a kubelet posts:

    kubelet.ready(pod)                                         Running and Ready
    kubelet.terminated(pod, exit_code=1, message=LOG_TAIL)     exited; message = log tail
                                                               (terminationMessagePolicy:
                                                               FallbackToLogsOnError)
    kubelet.crash_loop(pod, restarts=4, message=LOG_TAIL)      CrashLoopBackOff after an exit
    kubelet.image_pull_failed(pod, message=REGISTRY_TEXT)      ErrImagePull (backoff=True:
                                                               ImagePullBackOff)
    kubelet.oom_killed(pod, restarts=2)                        OOMKilled (exit 137), then back-off
    kubelet.config_error(pod, message='secret "ngc" not found') CreateContainerConfigError
    kubelet.not_ready(pod)                                     Running, probes failing
    kubelet.start_error(pod, message=RUNTIME_ERROR)            the runtime cannot start it
                                                               (StartError, exit 128), back-off
    kubelet.evicted(pod, message=WHY)                          evicted: the pod Failed, Evicted
    kubelet.first_scheduling_note(pod, note)                   the scheduler's FailedScheduling
                                                               Event keeps an earlier attempt's
                                                               note (as its recorder does)
    kubelet.bind(pod, node)                                    bound to `node`, as kube-scheduler
                                                               binds a pending pod
    kubelet.failed(pod, message=LOG_TAIL)                      a pod that restarts nothing (a
                                                               Job's, restartPolicy Never): its
                                                               container exited, the pod Failed

`pod` is a pod name or a V1Pod; every call works on the pod's first container unless
`container=` names another.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from kubernetes import client

from .harness import local_cluster

HANDS_OFF = {local_cluster.HANDS_OFF_ANNOTATION: local_cluster.HANDS_OFF_VALUE}


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _last_seen(event: client.CoreV1Event) -> dt.datetime:
    """When an Event was last seen, whichever recorder wrote it (core/v1 or events.k8s.io)."""
    seen = [
        event.last_timestamp,
        event.series.last_observed_time if event.series else None,
        event.event_time,
        event.first_timestamp,
    ]
    return max(t for t in seen if t is not None)


class FakeKubelet:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    # --- states ---------------------------------------------------------------------------

    def ready(self, pod: Any, container: str | None = None) -> None:
        self._set(
            pod, container, phase="Running", ready=True, state={"running": {"startedAt": _now()}}
        )

    def not_ready(self, pod: Any, container: str | None = None) -> None:
        self._set(
            pod, container, phase="Running", ready=False, state={"running": {"startedAt": _now()}}
        )

    def terminated(
        self,
        pod: Any,
        exit_code: int = 1,
        message: str = "",
        reason: str = "Error",
        container: str | None = None,
        phase: str = "Running",
    ) -> None:
        self._set(
            pod,
            container,
            phase=phase,
            ready=False,
            state={"terminated": self._termination(exit_code, reason, message)},
        )

    def crash_loop(
        self,
        pod: Any,
        restarts: int = 4,
        message: str = "",
        exit_code: int = 1,
        reason: str = "Error",
        container: str | None = None,
    ) -> None:
        name = self._container(pod, container)
        self._set(
            pod,
            container,
            phase="Running",
            ready=False,
            restarts=restarts,
            state={
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 5m0s restarting failed container={name}"
                    f" pod={self._name(pod)}",
                }
            },
            last_state={"terminated": self._termination(exit_code, reason, message)},
        )
        self.event(
            pod, "BackOff", f"Back-off restarting failed container {name} in pod {self._name(pod)}"
        )

    def oom_killed(self, pod: Any, restarts: int = 2, container: str | None = None) -> None:
        self.crash_loop(
            pod, restarts=restarts, exit_code=137, reason="OOMKilled", container=container
        )

    def image_pull_failed(
        self, pod: Any, message: str, backoff: bool = False, container: str | None = None
    ) -> None:
        image = self._spec_container(pod, container)["image"]
        reason = "ImagePullBackOff" if backoff else "ErrImagePull"
        text = f'Back-off pulling image "{image}"' if backoff else message
        self._set(
            pod,
            container,
            phase="Pending",
            ready=False,
            state={"waiting": {"reason": reason, "message": text}},
        )
        self.event(pod, "Failed", f'Failed to pull image "{image}": {message}')
        self.event(pod, "Failed", f"Error: {reason}")

    def start_error(
        self, pod: Any, message: str, restarts: int = 2, container: str | None = None
    ) -> None:
        """containerd could not start the container (an OCI hook or runc failed): StartError
        with exit code 128 and the runtime's error, then a back-off."""
        self.crash_loop(
            pod, restarts, message, exit_code=128, reason="StartError", container=container
        )
        self.event(pod, "Failed", f"Error: {message}")

    def evicted(self, pod: Any, message: str, container: str | None = None) -> None:
        """The kubelet's eviction manager stopped the pod: it is Failed for good."""
        self._set(
            pod,
            container,
            phase="Failed",
            ready=False,
            state={"terminated": self._termination(137, "Error", "")},
            pod_reason="Evicted",
            pod_message=message,
        )
        self.event(pod, "Evicted", message)

    def first_scheduling_note(self, pod: Any, note: str) -> None:
        """Give kube-scheduler's newest FailedScheduling Event about the pod the `note` of an
        earlier attempt, as it keeps one: its events.k8s.io recorder keys a series without the
        note, so later attempts with another message only count on (series.count,
        lastObservedTime)."""
        name = self._name(pod)
        deadline = time.monotonic() + 10
        while True:
            found = [
                e
                for e in self.core.list_namespaced_event(self.namespace).items
                if e.involved_object.name == name and e.reason == "FailedScheduling"
            ]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if not found:
            raise AssertionError(f"kube-scheduler posted no FailedScheduling Event about {name}")
        newest = max(found, key=_last_seen)
        self.core.patch_namespaced_event(newest.metadata.name, self.namespace, {"message": note})

    def bind(self, pod: Any, node: str) -> None:
        """Bind a pending pod to `node` (kube-scheduler's write: the pods/binding subresource),
        taking it over first so that kwok never plays its kubelet."""
        self._take_over(pod)
        name = self._name(pod)
        self.core.create_namespaced_pod_binding(
            name,
            self.namespace,
            client.V1Binding(
                metadata=client.V1ObjectMeta(name=name),
                target=client.V1ObjectReference(api_version="v1", kind="Node", name=node),
            ),
            _preload_content=False,  # the client cannot read the Status it answers with
        )

    def failed(self, pod: Any, message: str = "", container: str | None = None) -> None:
        """The container of a pod that restarts nothing (restartPolicy Never, a Job's) exited 1:
        the pod Failed, and its Job counts a failure."""
        self.terminated(pod, message=message, container=container, phase="Failed")

    def config_error(self, pod: Any, message: str, container: str | None = None) -> None:
        self._set(
            pod,
            container,
            phase="Pending",
            ready=False,
            state={"waiting": {"reason": "CreateContainerConfigError", "message": message}},
        )
        self.event(pod, "Failed", f"Error: {message}")

    def event(self, pod: Any, reason: str, message: str, type_: str = "Warning") -> None:
        """An Event about the pod, as the kubelet on its node would post it."""
        current = self._read(pod)
        now = dt.datetime.now(dt.UTC)
        self.core.create_namespaced_event(
            self.namespace,
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(generate_name=f"{current.metadata.name}."),
                involved_object=client.V1ObjectReference(
                    kind="Pod",
                    namespace=self.namespace,
                    name=current.metadata.name,
                    uid=current.metadata.uid,
                    api_version="v1",
                ),
                reason=reason,
                message=message,
                type=type_,
                count=1,
                first_timestamp=now,
                last_timestamp=now,
                source=client.V1EventSource(component="kubelet", host=current.spec.node_name),
                reporting_component="kubelet",
                reporting_instance=current.spec.node_name or "",
            ),
        )

    # --- mechanics ------------------------------------------------------------------------

    @staticmethod
    def _termination(exit_code: int, reason: str, message: str) -> dict[str, Any]:
        return {
            "exitCode": exit_code,
            "reason": reason,
            "message": message,
            "startedAt": _now(),
            "finishedAt": _now(),
        }

    @staticmethod
    def _name(pod: Any) -> str:
        return pod if isinstance(pod, str) else pod.metadata.name

    def _read(self, pod: Any) -> client.V1Pod:
        return self.core.read_namespaced_pod(self._name(pod), self.namespace)

    def _spec_container(self, pod: Any, container: str | None) -> dict[str, Any]:
        spec = self._read(pod).spec
        chosen = next((c for c in spec.containers if container in (None, c.name)), None)
        if chosen is None:
            raise ValueError(f"pod {self._name(pod)} has no container {container!r}")
        return {"name": chosen.name, "image": chosen.image}

    def _container(self, pod: Any, container: str | None) -> str:
        return str(self._spec_container(pod, container)["name"])

    def _take_over(self, pod: Any) -> None:
        """Tell kwok to leave the pod alone, once it has played the stage it was playing."""
        name = self._name(pod)
        current = self._read(name)
        if (current.metadata.annotations or {}).items() >= HANDS_OFF.items():
            return
        self.core.patch_namespaced_pod(
            name, self.namespace, {"metadata": {"annotations": HANDS_OFF}}
        )
        if current.spec.node_name:  # kwok marks a bound pod Running at once: let that land first
            deadline = time.monotonic() + 5
            while self._read(name).status.phase != "Running" and time.monotonic() < deadline:
                time.sleep(0.05)

    def _set(
        self,
        pod: Any,
        container: str | None,
        *,
        phase: str,
        ready: bool,
        state: dict[str, Any],
        last_state: dict[str, Any] | None = None,
        restarts: int = 0,
        pod_reason: str | None = None,
        pod_message: str | None = None,
    ) -> None:
        self._take_over(pod)
        spec = self._spec_container(pod, container)
        now = _now()
        status = "True" if ready else "False"
        container_status = {
            "name": spec["name"],
            "image": spec["image"],
            "imageID": "",
            "ready": ready,
            "started": "running" in state,
            "restartCount": restarts,
            "state": state,
            "lastState": last_state or {},
        }
        body = {
            "status": {
                "phase": phase,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": status,
                        "lastTransitionTime": now,
                        "reason": None if ready else "ContainersNotReady",
                    },
                    {
                        "type": "ContainersReady",
                        "status": status,
                        "lastTransitionTime": now,
                        "reason": None if ready else "ContainersNotReady",
                    },
                ],
                "containerStatuses": [container_status],
                "reason": pod_reason,
                "message": pod_message,
            }
        }
        self.core.patch_namespaced_pod_status(self._name(pod), self.namespace, body)
