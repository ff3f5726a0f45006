"""The Dockerfile, proved without a container engine.

hadolint checks it; its instructions are read here and checked against the chart that runs the
image; and its two stages are replayed on this machine: the build stage's COPY and wheel build
in a scratch directory, the runtime stage's `pip install` into a fresh virtual environment,
then ENTRYPOINT with the chart's kind of arguments against the local cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from .conftest import REPO, SESSION_PREFIX, Cluster, create_namespace, free_port, wait_until
from .harness import local_cluster
from .nemotron import NemotronDeployments

DOCKERFILE = REPO / "Dockerfile"
CHART = REPO / "charts" / "nemotron-operator"
# The namespace of the test starts with this: no e2e session operator serves it.
PREFIX = f"i{SESSION_PREFIX[1:]}"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def one(self, instruction: str) -> str:
        (args,) = self.all(instruction)
        return args


def stages(text: str) -> list[Stage]:
    """The Dockerfile's stages, each with its instructions (continuation lines joined)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    found: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), args.strip()
        if instruction == "FROM":
            base, _, name = args.partition(" AS ")
            found.append(Stage(base.strip(), name.strip() or None))
        else:
            found[-1].instructions.append((instruction, args))
    return found


def env_of(stage: Stage) -> dict[str, str]:
    env = {}
    for args in stage.all("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


BUILD, RUNTIME = stages(DOCKERFILE.read_text())
ENTRYPOINT: list[str] = json.loads(RUNTIME.one("ENTRYPOINT"))
CMD: list[str] = json.loads(RUNTIME.one("CMD"))
LIVENESS = "--liveness=http://0.0.0.0:8080/healthz"


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_the_image_is_what_the_chart_expects() -> None:
    """Two stages (a wheel, then a slim runtime without build tools), a non-root user the
    chart's securityContext names, unbuffered output, and the liveness endpoint the chart's
    probe asks for on the port it declares."""
    assert [s.name for s in (BUILD, RUNTIME)] == ["build", None]
    assert RUNTIME.base.startswith("python:") and "slim" in RUNTIME.base
    runtime_text = " ".join(args for _, args in RUNTIME.instructions)
    for tool in ("build==", "apt-get", "gcc", "setuptools", "--from=build /src"):
        assert tool not in runtime_text, tool
    assert RUNTIME.all("COPY") == ["--from=build /dist /dist"]
    assert env_of(RUNTIME)["PYTHONUNBUFFERED"] == "1"

    uid, _, gid = RUNTIME.one("USER").partition(":")
    assert uid.isdigit() and int(uid) != 0
    pod = chart_deployment()["spec"]["template"]["spec"]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        int(uid),
        int(gid),
    )

    assert ENTRYPOINT[:2] == ["nemotron-operator", "run"]
    assert LIVENESS in ENTRYPOINT
    assert RUNTIME.one("EXPOSE") == "8080"
    (container,) = pod["containers"]
    assert container["ports"] == [
        {"name": "health", "containerPort": 8080},
        {"name": "metrics", "containerPort": 8081},  # NEMOTRON_METRICS_PORT, set by the chart
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # the chart passes its own scope as args, which replace CMD
    assert CMD == container["args"] == ["--all-namespaces"]


def chart_deployment() -> dict[str, Any]:
    helm = local_cluster.binaries()["helm"]
    rendered = run([str(helm), "template", "nemotron-operator", str(CHART)], cwd=REPO)
    return next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment")


def build_stage_sources(workdir: Path) -> None:
    """Copy what the build stage COPYs, where it puts it (relative to its WORKDIR)."""
    for args in BUILD.all("COPY"):
        *sources, destination = args.split()
        target = workdir / destination.removeprefix("./")
        for source in sources:
            origin = REPO / source
            if origin.is_dir():
                shutil.copytree(
                    origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
                )
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    assert result.returncode == 0, f"{shlex.join(argv)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The build stage, then the runtime stage's install, on this machine: the bin directory
    of a fresh virtual environment holding only the wheel and its dependencies."""
    python = f"python:{sys.version_info.major}.{sys.version_info.minor}-"
    assert BUILD.base.startswith(python) and RUNTIME.base.startswith(python), (
        f"the image's Python is not this one ({python}): the replay would prove nothing"
    )
    root = tmp_path_factory.mktemp("image")
    src, dist = root / "src", root / "dist"
    src.mkdir()
    build_stage_sources(src)
    (build_command,) = [c for c in BUILD.all("RUN") if " build " in f" {c} " and "-m" in c]
    argv = shlex.split(build_command)
    assert argv[:3] == ["python", "-m", "build"] and argv[-2:] == ["--outdir", "/dist"]
    run([sys.executable, *argv[1:-1], str(dist)], cwd=src)
    (wheel,) = dist.glob("*.whl")

    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    (install_command,) = [c for c in RUNTIME.all("RUN") if c.startswith("pip install")]
    pip_argv = shlex.split(install_command.split("&&")[0])
    assert pip_argv[-1] == "/dist/*.whl"
    run([str(venv / "bin" / "pip"), *pip_argv[1:-1], str(wheel)], cwd=root)
    yield venv / "bin"


@pytest.fixture
def image_namespace(cluster: Cluster) -> Iterator[str]:
    name = create_namespace(cluster.api, "image", PREFIX, wait_for_account=False)
    yield name
    client.CoreV1Api(cluster.api).delete_namespace(name, propagation_policy="Background")


@pytest.mark.slow
def test_the_entrypoint_from_a_fresh_virtualenv_serves_a_deployment(
    cluster: Cluster,
    crd_installed: None,
    registry: object,
    installed_wheel: Path,
    image_namespace: str,
    tmp_path: Path,
) -> None:
    bin_dir = installed_wheel
    # the package runs from the virtualenv, not from this checkout
    where = run(
        [
            str(bin_dir / "python"),
            "-c",
            "import nemotron_operator; print(nemotron_operator.__file__)",
        ],
        cwd=tmp_path,
    )
    assert where.startswith(str(bin_dir.parent)), where

    # ENTRYPOINT as written; CMD replaced by a namespace, as the chart does with
    # watchNamespaces; the liveness address moved to a free loopback port (8080 on every
    # interface could clash with another test session on this machine).
    port = free_port()
    argv = [a.replace("http://0.0.0.0:8080/", f"http://127.0.0.1:{port}/") for a in ENTRYPOINT] + [
        f"--namespace={image_namespace}"
    ]
    assert sum(a != b for a, b in zip(argv, ENTRYPOINT, strict=False)) == 1
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    environment.update(env_of(RUNTIME))
    environment.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}",
            "KUBECONFIG": str(cluster.kubeconfig),
            "NEMOTRON_NGC_REGISTRY_URL": registry.url,  # type: ignore[attr-defined]
            "NEMOTRON_NGC_METADATA_URL": registry.url,  # type: ignore[attr-defined]
            "NEMOTRON_METRICS_PORT": str(free_port()),  # as the liveness port, for the same reason
        }
    )
    executable = shutil.which(argv[0], path=environment["PATH"])
    assert executable == str(bin_dir / "nemotron-operator")
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            executable=executable,
            cwd=tmp_path,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def alive() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the entrypoint exited:\n{log.read_text()[-3000:]}")
            try:
                url = f"http://127.0.0.1:{port}/healthz"
                with urllib.request.urlopen(url, timeout=1) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_until(alive, "the liveness endpoint", 60)
        nds = NemotronDeployments(cluster, image_namespace)
        nds.create(
            "nano", {"model": "nemotron-3-nano", "gpu": {"product": "NVIDIA-H100-80GB-HBM3"}}
        )
        planned = nds.wait_condition("nano", "Planned", "True", timeout=60)
        assert "NVIDIA-H100-80GB-HBM3" in planned["message"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()[-3000:]
