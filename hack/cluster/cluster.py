#!/usr/bin/env python3
"""A real local Kubernetes with fake GPU nodes, for the tests, the demo and CI.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler run as plain processes on
loopback; kwok plays the kubelets of fake nodes described in a node-pool file. The binaries come
from build.sh (built once from the Go module proxy and cached by version).

    cluster.py up   [--state-dir DIR] [--nodes FILE]   start (or reuse) the cluster
    cluster.py down [--state-dir DIR]                  stop what `up` started and remove its state
    cluster.py status [--state-dir DIR]                say whether it is running
    cluster.py attach --kubeconfig K [--state-dir DIR] [--nodes FILE]
                                                       only kwok and the fake nodes, on a cluster
                                                       someone else runs (kind, for instance)
    cluster.py up --audit-reads ...                    the audit log records reads too (drills
                                                       count every request of the operator)

A test may stop one component and start it again with the same arguments (`stop(state, name)`,
then `restart(state, name)`): every component's argv is recorded in state/argv/<name>.json.

State (pids, logs, certificates, etcd data, the kubeconfig) lives in the state directory
(default: .cluster/ at the top of the repository). Processes are stopped by the pids `up`
recorded, and only when /proc confirms the pid still runs one of our binaries.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_STATE = REPO / ".cluster"
DEFAULT_NODES = HERE / "nodes.yaml"
CACHE = Path(os.environ.get("NEMOTRON_CACHE", Path.home() / ".cache" / "nemotron-operator"))
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
# Stop order: the simulated kubelets first, the store last.
COMPONENTS = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
# Started beside the cluster by hack/demo.py (`make demo`), stopped before it: name -> the
# script its command line runs (argv[0] is the Python interpreter).
DEMO_PROCESSES = {"operator": "bin/nemotron-operator", "registry": "tests/standins/registry.py"}
# The API server's audit log records every write (who, what, when): tests count the operator's
# writes there (its requests carry the user agent "nemotron-operator" or "kopf").
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}
# The same, reads included (get, list, watch): for a cluster of one's own, where the log is not
# flooded by other sessions' tests.
AUDIT_POLICY_WITH_READS = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}
# A pod carrying this annotation is left alone by kwok: a test plays its kubelet instead.
HANDS_OFF_ANNOTATION = "kwok.x-k8s.io/status"
HANDS_OFF_VALUE = "custom"


def log(message: str) -> None:
    print(f"[cluster {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    pairs = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def binaries() -> dict[str, Path]:
    """Paths of the cached binaries, building whatever is missing first."""
    subprocess.run(["bash", str(HERE / "build.sh")], check=True)
    v = versions()
    kube = CACHE / "bin" / f"kubernetes-{v['KUBE_VERSION']}"
    kwok_crds = CACHE / "bin" / f"kwok-crds-{v['KWOK_VERSION']}"
    return {
        "etcd": CACHE / "bin" / f"etcd-{v['ETCD_VERSION']}" / "etcd",
        "kube-apiserver": kube / "kube-apiserver",
        "kube-controller-manager": kube / "kube-controller-manager",
        "kube-scheduler": kube / "kube-scheduler",
        "kubectl": kube / "kubectl",
        "kwok": CACHE / "bin" / f"kwok-{v['KWOK_VERSION']}" / "kwok",
        "kwok-stages": CACHE / "bin" / f"kwok-{v['KWOK_VERSION']}" / "stages",
        "kwok-logs-crd": kwok_crds / "kwok.x-k8s.io_logs.yaml",
        "helm": CACHE / "bin" / f"helm-{v['HELM_VERSION']}" / "helm",
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


# --- certificates -------------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(pki: Path) -> None:
    """A CA, the API server's serving certificate, an admin client certificate, and the key pair
    that signs service-account tokens."""
    pki.mkdir(parents=True)
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=nemotron-local-ca",
        cwd=pki,
    )
    sans = (
        f"DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        f"IP:127.0.0.1,IP:{KUBERNETES_SERVICE_IP}"
    )
    for name, subject, extensions in (
        ("apiserver", "/CN=kube-apiserver", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth"),
        ("admin", "/O=system:masters/CN=kubernetes-admin", "extendedKeyUsage=clientAuth"),
    ):
        (pki / f"{name}.ext").write_text(extensions + "\n")
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subject,
            cwd=pki,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "3650",
            "-extfile",
            f"{name}.ext",
            cwd=pki,
        )
    openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "nemotron-local",
                "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate-data": b64("admin.crt"),
                    "client-key-data": b64("admin.key"),
                },
            }
        ],
        "contexts": [
            {
                "name": "nemotron-local",
                "context": {"cluster": "nemotron-local", "user": "admin", "namespace": "default"},
            }
        ],
        "current-context": "nemotron-local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


# --- processes ----------------------------------------------------------------------------


def pid_file(state: Path, name: str) -> Path:
    return state / "pids" / f"{name}.pid"


def running_pid(state: Path, name: str) -> int | None:
    """The recorded pid of a component if that process still runs our binary (or, for a demo
    process, its script)."""
    path = pid_file(state, name)
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return None
    if name in DEMO_PROCESSES:
        return pid if any(arg.endswith(DEMO_PROCESSES[name]) for arg in argv[:2]) else None
    return pid if argv[0].startswith(str(CACHE / "bin")) else None


def argv_file(state: Path, name: str) -> Path:
    return state / "argv" / f"{name}.json"


def start(state: Path, name: str, argv: list[str]) -> None:
    argv_file(state, name).parent.mkdir(parents=True, exist_ok=True)
    argv_file(state, name).write_text(json.dumps(argv))
    logfile = (state / "logs" / f"{name}.log").open("ab")
    process = subprocess.Popen(
        argv,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=state,
    )
    pid_file(state, name).write_text(str(process.pid))


def stop(state: Path, name: str, grace: float = 10.0) -> None:
    pid = running_pid(state, name)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while running_pid(state, name) == pid and time.monotonic() < deadline:
            # reap it if it is our own child (it is not when `down` runs in a new process)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if running_pid(state, name) == pid:
            os.kill(pid, signal.SIGKILL)
    pid_file(state, name).unlink(missing_ok=True)


def restart(state: Path, name: str) -> None:
    """Start a component again with the arguments it was first started with (after `stop`)."""
    if running_pid(state, name) is not None:
        raise RuntimeError(f"{name} is still running")
    start(state, name, json.loads(argv_file(state, name).read_text()))


# --- the API ------------------------------------------------------------------------------


def api_context(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return context


def api_get(server: str, path: str, pki: Path) -> bytes:
    with urllib.request.urlopen(server + path, context=api_context(pki), timeout=5) as response:
        return bytes(response.read())


def is_healthy(state: Path) -> bool:
    server_file = state / "server"
    if not server_file.exists() or any(running_pid(state, c) is None for c in COMPONENTS):
        return False
    try:
        return api_get(server_file.read_text(), "/readyz", state / "pki") == b"ok"
    except OSError:
        return False


def kubectl(bins: dict[str, Path], state: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(bins["kubectl"]), "--kubeconfig", str(state / "kubeconfig"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


# --- nodes and kwok -----------------------------------------------------------------------


def node_manifests(pools_file: Path) -> list[dict]:
    """Node objects for every pool in the file, labelled as GPU Feature Discovery would."""
    spec = yaml.safe_load(pools_file.read_text())
    taint = spec.get("gpuTaint")
    nodes = []
    for pool in spec["pools"]:
        for index in range(pool["count"]):
            name = f"{pool['name']}-{index}"
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "nemotron.dev/node-pool": pool["name"],
            }
            capacity = {"cpu": str(pool["cpu"]), "memory": str(pool["memory"]), "pods": "110"}
            taints = []
            gpu = pool.get("gpu")
            if gpu:
                labels |= {
                    "nvidia.com/gpu.present": "true",
                    "nvidia.com/gpu.product": gpu["product"],
                    "nvidia.com/gpu.memory": str(gpu["memoryMiB"]),
                    "nvidia.com/gpu.count": str(gpu["count"]),
                    "nvidia.com/gpu.compute.major": str(gpu["computeMajor"]),
                    "nvidia.com/gpu.compute.minor": str(gpu["computeMinor"]),
                    "nvidia.com/gpu.family": gpu["family"],
                }
                capacity["nvidia.com/gpu"] = str(gpu["count"])
                if taint:
                    taints.append(dict(taint))
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": labels,
                        "annotations": {
                            "kwok.x-k8s.io/node": "fake",
                            "node.alpha.kubernetes.io/ttl": "0",
                        },
                    },
                    "spec": {"taints": taints},
                    "status": {"capacity": capacity, "allocatable": dict(capacity)},
                }
            )
    return nodes


# kwok's own Stages that the cluster runs (paths under kwok's kustomize/stage/).
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
    # a fake volume provisioner: claims of the default class `kwok-volume` bind at once
    "volume/fast/pvc-provision.yaml",
    "volume/fast/pvc-delete.yaml",
    "volume/fast/pv-bind.yaml",
    "volume/fast/pv-delete.yaml",
)
STORAGE_CLASS = "volume/fast/storage-class.yaml"


def kwok_config(stages_dir: Path, target: Path) -> None:
    """kwok's own fast Stages, except that pods annotated hands-off are left to the tests."""
    documents = []
    for name in KWOK_STAGES:
        stage = yaml.safe_load((stages_dir / name).read_text())
        if stage["metadata"]["name"] in ("pod-ready", "pod-complete"):
            stage["spec"]["selector"]["matchExpressions"].append(
                {
                    "key": f'.metadata.annotations["{HANDS_OFF_ANNOTATION}"]',
                    "operator": "NotIn",
                    "values": [HANDS_OFF_VALUE],
                }
            )
        documents.append(stage)
    target.write_text(yaml.safe_dump_all(documents))


def nodes_ready(bins: dict[str, Path], state: Path, expected: int) -> bool:
    items = json.loads(kubectl(bins, state, "get", "nodes", "-o", "json"))["items"]
    ready = [
        n
        for n in items
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n["status"].get("conditions", [])
        )
    ]
    return len(ready) >= expected


# --- commands -----------------------------------------------------------------------------


def up(state: Path, nodes_file: Path, audit_reads: bool = False) -> None:
    started = time.monotonic()
    bins = binaries()
    if is_healthy(state):
        log(f"already running; kubeconfig: {state / 'kubeconfig'}")
        return
    down(state, quiet=True)
    for sub in ("pids", "logs", "etcd"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    pki = state / "pki"
    make_pki(pki)
    policy = AUDIT_POLICY_WITH_READS if audit_reads else AUDIT_POLICY
    (state / "audit-policy.yaml").write_text(yaml.safe_dump(policy))
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    server = f"https://127.0.0.1:{api_port}"

    start(
        state,
        "etcd",
        [
            str(bins["etcd"]),
            "--name=local",
            f"--data-dir={state / 'etcd'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=local=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",
            "--quota-backend-bytes=4294967296",
            "--log-level=warn",
        ],
    )
    wait_for(lambda: urllib.request.urlopen(etcd_url + "/health", timeout=2).status == 200, "etcd")

    start(
        state,
        "kube-apiserver",
        [
            str(bins["kube-apiserver"]),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            f"--audit-policy-file={state / 'audit-policy.yaml'}",
            f"--audit-log-path={state / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
            "--v=1",
        ],
    )
    (state / "server").write_text(server)
    write_kubeconfig(state / "kubeconfig", server, pki)
    wait_for(lambda: api_get(server, "/readyz", pki) == b"ok", "kube-apiserver /readyz", 90)

    kubeconfig = str(state / "kubeconfig")
    start(
        state,
        "kube-controller-manager",
        [
            str(bins["kube-controller-manager"]),
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,-nodeipam",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "--concurrent-gc-syncs=20",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ],
    )
    start(
        state,
        "kube-scheduler",
        [
            str(bins["kube-scheduler"]),
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ],
    )
    count = start_fake_nodes(bins, state, nodes_file)
    log(
        f"cluster up in {time.monotonic() - started:.1f}s with {count} nodes; "
        f"export KUBECONFIG={state / 'kubeconfig'}"
    )


def start_fake_nodes(bins: dict[str, Path], state: Path, nodes_file: Path) -> int:
    """Start kwok against the cluster behind state/kubeconfig and create the node pools.

    kwok also serves the fake nodes' kubelet API on one port of loopback (every node's address),
    so that `kubectl logs` works: a pod's container log is the file a `Logs` object
    (kwok.x-k8s.io/v1alpha1, namespaced, named as the pod) points at, which a test writes in
    the CRI log format. A pod without one has no log (the API server answers 400)."""
    kwok_config(bins["kwok-stages"], state / "kwok.yaml")
    kubectl(bins, state, "apply", "--server-side", "-f", str(bins["kwok-logs-crd"]))
    kubelet_port = free_port()
    start(
        state,
        "kwok",
        [
            str(bins["kwok"]),
            f"--kubeconfig={state / 'kubeconfig'}",
            f"--config={state / 'kwok.yaml'}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-lease-duration-seconds=40",
            "--cidr=10.244.0.0/16",
            "--node-ip=127.0.0.1",
            f"--node-port={kubelet_port}",
            f"--server-address=127.0.0.1:{kubelet_port}",
            "--enable-crds=Logs",
        ],
    )
    kubectl(bins, state, "apply", "-f", str(bins["kwok-stages"] / STORAGE_CLASS))
    nodes = node_manifests(nodes_file)
    kubectl(
        bins,
        state,
        "create",
        "-f",
        "-",
        stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": nodes}),
    )
    wait_for(lambda: nodes_ready(bins, state, len(nodes)), f"{len(nodes)} nodes Ready", 60)
    wait_for(
        lambda: bool(kubectl(bins, state, "get", "serviceaccount", "default", "-o", "name")),
        "the default ServiceAccount",
        60,
    )
    return len(nodes)


def attach(state: Path, nodes_file: Path, kubeconfig: Path) -> None:
    """Fake GPU nodes on a cluster someone else runs (kind, for instance): only kwok starts."""
    bins = binaries()
    down(state, quiet=True)
    for sub in ("pids", "logs"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kubeconfig, state / "kubeconfig")
    count = start_fake_nodes(bins, state, nodes_file)
    log(f"{count} fake nodes attached to the cluster behind {kubeconfig}")


def down(state: Path, quiet: bool = False) -> None:
    for name in (*DEMO_PROCESSES, *COMPONENTS):
        stop(state, name)
    if state.exists():
        shutil.rmtree(state)
    if not quiet:
        log("cluster stopped")


def status(state: Path) -> int:
    if is_healthy(state):
        print(f"running: KUBECONFIG={state / 'kubeconfig'}")
        return 0
    print("not running")
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status", "attach"))
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE)
    parser.add_argument(
        "--nodes",
        type=Path,
        default=DEFAULT_NODES,
        help="node-pool file (default: hack/cluster/nodes.yaml)",
    )
    parser.add_argument(
        "--kubeconfig", type=Path, help="with attach: the cluster that gets kwok and the fake nodes"
    )
    parser.add_argument(
        "--audit-reads",
        action="store_true",
        help="with up: the audit log records reads too, not only writes",
    )
    args = parser.parse_args()
    state = args.state_dir.resolve()
    if args.command == "up":
        up(state, args.nodes, audit_reads=args.audit_reads)
    elif args.command == "attach":
        if args.kubeconfig is None:
            parser.error("attach needs --kubeconfig")
        attach(state, args.nodes, args.kubeconfig.resolve())
    elif args.command == "down":
        down(state)
    else:
        return status(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
