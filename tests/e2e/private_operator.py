"""An operator of a test module's own, with its own settings, beside the session's operator.

The session's operator (conftest `operator`) serves `<session>-*`. A test that needs different
operator settings (a live catalog, an unreachable registry, a short startup allowance) starts one
here: it serves `<session><tag>-*` only, so the two never serve the same namespace, and its
namespaces come from `namespace()`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from kubernetes import client

from .conftest import SESSION_PREFIX, Cluster, OperatorProcess, create_namespace

# for operators that need no registry: nothing listens there, so the credentials check answers
# at once (Unknown) instead of waiting on nvcr.io
NO_REGISTRY = "http://127.0.0.1:9"


class PrivateOperator:
    def __init__(self, cluster: Cluster, tag: str, log_dir: Path, env: Mapping[str, str]) -> None:
        self.cluster = cluster
        self.prefix = f"{SESSION_PREFIX}{tag}"
        # --verbose: Kopf's own steps (watch streams started, indexes listed) are in the log,
        # for a run where this operator stalls (seen in CI; the cause is not known yet)
        self.process = OperatorProcess(
            cluster.kubeconfig,
            log_dir / "operator.log",
            env,
            namespaces=(f"{self.prefix}-*",),
            args=("--verbose",),
        )
        self._namespaces: list[str] = []

    def namespace(self, test_name: str) -> str:
        """A fresh namespace this operator (and no other) serves; deleted at close()."""
        name = create_namespace(self.cluster.api, test_name, self.prefix)
        self._namespaces.append(name)
        return name

    def logs(self) -> str:
        return self.process.logs()

    def close(self) -> None:
        self.process.stop()
        core = client.CoreV1Api(self.cluster.api)
        for name in self._namespaces:
            core.delete_namespace(name, propagation_policy="Background")


@contextmanager
def private_operator(
    cluster: Cluster, tag: str, log_dir: Path, env: Mapping[str, str]
) -> Iterator[PrivateOperator]:
    """Start an operator with `env` on top of the test environment; stop it afterwards."""
    private = PrivateOperator(cluster, tag, log_dir, env)
    private.process.start()
    try:
        yield private
    finally:
        private.close()
