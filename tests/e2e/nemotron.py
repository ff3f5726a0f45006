"""Reading and writing NemotronDeployments in e2e tests, as a user of the API would."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from nemotron_operator.api import names

from .conftest import Cluster, wait_until


class NemotronDeployments:
    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.objects = client.CustomObjectsApi(cluster.api)
        self.namespace = namespace

    def create(self, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
        body = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": name, **metadata},
            "spec": spec,
        }
        return dict(
            self.objects.create_namespaced_custom_object(
                names.GROUP, names.VERSION, self.namespace, names.PLURAL, body
            )
        )

    def get(self, name: str) -> dict[str, Any]:
        return dict(
            self.objects.get_namespaced_custom_object(
                names.GROUP, names.VERSION, self.namespace, names.PLURAL, name
            )
        )

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.objects.patch_namespaced_custom_object(
            names.GROUP, names.VERSION, self.namespace, names.PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.objects.delete_namespaced_custom_object(
            names.GROUP, names.VERSION, self.namespace, names.PLURAL, name
        )

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        conditions = (self.get(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), None)

    def wait_condition(
        self, name: str, type_: str, status: str, reason: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """Wait until condition `type_` has `status` (and `reason`), for the current generation."""

        def reached() -> dict[str, Any] | None:
            body = self.get(name)
            for c in (body.get("status") or {}).get("conditions") or []:
                if (
                    c["type"] == type_
                    and c["status"] == status
                    and (reason is None or c["reason"] == reason)
                    and c.get("observedGeneration") == body["metadata"]["generation"]
                ):
                    return dict(c)
            return None

        def describe() -> str:
            return str((self.get(name).get("status") or {}).get("conditions"))

        try:
            return dict(wait_until(reached, f"{name}: {type_}={status} {reason or ''}", timeout))
        except AssertionError as error:
            raise AssertionError(f"{error}; conditions now: {describe()}") from None
