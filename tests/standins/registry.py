"""A stand-in for nvcr.io and the NIM Metadata API, served on loopback for tests and demos.

It answers like the real services where the operator looks:

- ``GET /proxy_auth?account=$oauthtoken&offline_token=true&scope=repository:<repo>:pull`` with
  HTTP Basic ``$oauthtoken:<key>``: a token for a configured key, 401 for any other key.
  Without credentials: an anonymous token when the repository allows keyless pulls, else 401.
- ``GET /v2/<repo>/manifests/<tag>`` with ``Bearer <token>``: 403 when the key is not entitled
  to the repository, 401 when an anonymous token asks for a tag that needs a key, 404 for an
  unknown repository or tag, otherwise 200 with an OCI image index.
- ``GET /v2/nim/metadata?resourceId=<repo>&tag=<tag>``: the configured document, 404 (NGC error
  envelope) when there is none, or a failure mode: ``timeout`` (answers after
  ``slow_seconds``), ``bad-request`` (400), ``server-error`` (500), ``malformed`` (200, broken
  JSON).

Configuration (YAML or JSON, every section optional; ``DEFAULT_CONFIG`` when no file is given)::

    keys:                  # NGC API keys accepted -> repositories each may pull ("*": all)
      nvapi-standin-valid: ["*"]
    repositories:          # public: true (any tag keyless), a list of keyless tags, or false
      nim/nvidia/nemotron-3-nano: {tags: ["2.0.12", "2.1.5-pb7"], public: ["2.0.12"]}
    metadata:              # repository -> tag -> a Metadata API document or a failure mode
      nim/nvidia/nemotron-3-nano: {"2.0.12": {profiles: [...]}, "2.1.5-pb7": timeout}
    slow_seconds: 10
    registry_unavailable: false   # true: every registry endpoint answers 503

Run it as a process (prints its URL as the first line of stdout, serves until SIGTERM/SIGINT)::

    python tests/standins/registry.py --port 0 --config standin.yaml

or in-process::

    with RegistryStandin(config) as registry:
        check_credentials(repo, tag, key, registry_url=registry.url)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from nemotron_operator.core.catalog import key_requirement, load_catalog
from nemotron_operator.shell.ngc import ImageReference

NGC_USERNAME = "$oauthtoken"
ANONYMOUS = object()
FAILURE_MODES = ("timeout", "bad-request", "server-error", "malformed")

# Minimum GPU memory per GPU (GB) of NIM 2.x generic profiles, from the published manifests.
_PUBLISHED_MEMORY = {
    "nim/nvidia/nemotron-3-nano": {
        "bf16": {1: 63, 2: 34, 4: 19, 8: 12},
        "fp8": {1: 34, 2: 19, 4: 12, 8: 8},
        "nvfp4": {1: 21, 2: 13, 4: 9, 8: 7},
    },
    "nim/nvidia/nemotron-3-super-120b-a12b": {
        "bf16": {1: 237, 2: 121, 4: 63, 8: 35},
        "fp8": {1: 125, 2: 65, 4: 35, 8: 21},
        "nvfp4": {1: 80, 2: 42, 4: 24, 8: 15},
    },
}


def metadata_document(repository: str) -> dict[str, Any]:
    """A Metadata API answer shaped like the real one (snake_case, no nulls) for a repository
    listed in ``_PUBLISHED_MEMORY``."""
    profiles = []
    for precision, by_tp in _PUBLISHED_MEMORY[repository].items():
        for tp, memory in by_tp.items():
            name = f"vllm-{precision}-tp{tp}-pp1"
            profiles.append(
                {
                    "profile_id": hashlib.sha256(f"{repository}/{name}".encode()).hexdigest(),
                    "precision": precision,
                    "inference_backend": "vllm",
                    "tensor_parallel_size": tp,
                    "pipeline_parallel_size": 1,
                    "min_vram_per_device_gb": float(memory),
                    "feat_lora": False,
                    "tested_gpu_devices": [],
                }
            )
    return {
        "profiles": profiles,
        "release_details": {"version": "2.0.12", "architectures": ["amd64", "arm64"]},
        "features": {"context_window": 262144, "tool_calling": True},
        "related_urls": [
            f"https://catalog.ngc.nvidia.com/orgs/nvidia/teams/nim/containers/{repository}"
        ],
    }


# NGC keys the stand-in built from the catalog knows: one entitled to everything, one to nothing.
VALID_KEY = "nvapi-e2e-valid-0123456789"
UNENTITLED_KEY = "nvapi-e2e-unentitled-0123456789"


def catalog_config() -> dict[str, Any]:
    """A configuration that serves every release of the built-in catalog from the repository
    that publishes it, keyless exactly where the catalog says a release needs no key (the
    end-to-end tests, the demo and the benchmarks run against it)."""
    catalog = load_catalog()
    repositories: dict[str, Any] = {}
    for model in catalog.models.values():
        for release in model.releases:
            image = f"{model.repository_for(release.tag)}:{release.tag}"
            entry = repositories.setdefault(
                ImageReference.parse(image).repository, {"tags": [], "public": []}
            )
            entry["tags"].append(release.tag)
            if not key_requirement(model, release.tag).required:
                entry["public"].append(release.tag)
    # the generic multi-LLM image custom models run on: always behind a key
    repositories["nim/nvidia/llm-nim"] = {"tags": ["2.1.6"], "public": False}
    return {"keys": {VALID_KEY: ["*"], UNENTITLED_KEY: []}, "repositories": repositories}


DEFAULT_CONFIG: dict[str, Any] = {
    "keys": {
        "nvapi-standin-valid": ["*"],
        "nvapi-standin-nano-only": ["nim/nvidia/nemotron-3-nano"],
    },
    "repositories": {
        "nim/nvidia/nemotron-3-nano": {
            "tags": ["1.7.0", "2.0.9", "2.0.12", "2.1.6", "2.1.5-pb7"],
            "public": ["2.0.12", "2.1.6"],
        },
        "nim/nvidia/nemotron-3-super-120b-a12b": {
            "tags": ["2.0.3", "2.0.12", "2.1.5-pb7"],
            "public": ["2.0.12"],
        },
        "nim/nvidia/llm-nim": {"tags": ["2.1.6"], "public": False},
    },
    "metadata": {
        "nim/nvidia/nemotron-3-nano": {
            "2.0.12": metadata_document("nim/nvidia/nemotron-3-nano"),
            "2.1.6": "timeout",
            "2.0.9": "bad-request",
            "2.1.5-pb7": "malformed",
        },
        "nim/nvidia/nemotron-3-super-120b-a12b": {
            "2.0.12": metadata_document("nim/nvidia/nemotron-3-super-120b-a12b"),
            "2.0.3": "server-error",
        },
    },
    "slow_seconds": 10,
}


@dataclass(frozen=True)
class Repository:
    tags: frozenset[str]
    keyless_tags: frozenset[str] | None
    """Tags pullable without a key; None when every tag is."""

    @property
    def serves_anonymous_tokens(self) -> bool:
        return self.keyless_tags is None or bool(self.keyless_tags)


@dataclass(frozen=True)
class StandinConfig:
    keys: Mapping[str, frozenset[str]] = field(default_factory=dict)
    repositories: Mapping[str, Repository] = field(default_factory=dict)
    metadata: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    slow_seconds: float = 10.0
    registry_unavailable: bool = False

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> StandinConfig:
        repositories = {}
        for name, spec in (data.get("repositories") or {}).items():
            public = spec.get("public", False)
            keyless = None if public is True else _names(public or ())
            repositories[name] = Repository(_names(spec.get("tags", ())), keyless)
        return cls(
            keys={key: _names(repos) for key, repos in (data.get("keys") or {}).items()},
            repositories=repositories,
            metadata={
                repo: {str(tag): answer for tag, answer in tags.items()}
                for repo, tags in (data.get("metadata") or {}).items()
            },
            slow_seconds=float(data.get("slow_seconds", 10)),
            registry_unavailable=bool(data.get("registry_unavailable", False)),
        )

    @classmethod
    def load(cls, path: Path) -> StandinConfig:
        return cls.from_mapping(yaml.safe_load(path.read_text()) or {})


def _names(value: object) -> frozenset[str]:
    """One name or a list of names, as strings (YAML reads 2.1 as a number)."""
    return frozenset(map(str, value if isinstance(value, list | tuple) else [value]))


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    auth_scheme: str | None
    """``Basic``, ``Bearer`` or None: the credentials themselves are never recorded."""


@dataclass(frozen=True)
class _Grant:
    principal: object
    """The API key the token was issued for, or ANONYMOUS."""
    repository: str


class RegistryStandin:
    """The stand-in on ``host:port`` (port 0: any free port), served from a daemon thread."""

    def __init__(
        self,
        config: StandinConfig | Mapping[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not isinstance(config, StandinConfig):
            config = StandinConfig.from_mapping(DEFAULT_CONFIG if config is None else config)
        self.config = config
        self._grants: dict[str, _Grant] = {}
        self._recorded: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._recorded)

    def start(self) -> RegistryStandin:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RegistryStandin:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # Answers, as (status, headers, body) ---------------------------------------------------

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._recorded.append(request)

    def token(self, query: Mapping[str, str], authorization: str) -> tuple[int, dict, bytes]:
        repository = _scope_repository(query.get("scope", ""))
        if repository is None:
            return _registry_error(400, "UNSUPPORTED", "scope must be repository:<name>:pull")
        principal: object
        if authorization:
            key = _basic_password(authorization)
            if key is None or key not in self.config.keys:
                return _registry_error(401, "UNAUTHORIZED", "authentication required")
            principal = key
        else:
            known = self.config.repositories.get(repository)
            if known is None or not known.serves_anonymous_tokens:
                return _registry_error(401, "UNAUTHORIZED", "authentication required")
            principal = ANONYMOUS
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[token] = _Grant(principal, repository)
        return _json(200, {"token": token, "access_token": token, "expires_in": 300})

    def manifest(self, repository: str, tag: str, authorization: str) -> tuple[int, dict, bytes]:
        scheme, _, token = authorization.partition(" ")
        with self._lock:
            grant = self._grants.get(token) if scheme == "Bearer" else None
        if grant is None or grant.repository != repository:
            return _registry_error(401, "UNAUTHORIZED", "authentication required")
        known = self.config.repositories.get(repository)
        if grant.principal is ANONYMOUS:
            keyless = known is not None and (
                known.keyless_tags is None or tag in known.keyless_tags
            )
            if known is not None and tag in known.tags and not keyless:
                return _registry_error(401, "UNAUTHORIZED", "insufficient_scope")
        else:
            entitled = self.config.keys[str(grant.principal)]
            if "*" not in entitled and repository not in entitled:
                return _registry_error(403, "DENIED", "requested access to the resource is denied")
        if known is None:
            return _registry_error(404, "NAME_UNKNOWN", "repository name not known to registry")
        if tag not in known.tags:
            return _registry_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        return _image_index(repository, tag)

    def metadata(self, query: Mapping[str, str]) -> tuple[int, dict, bytes]:
        repository, tag = query.get("resourceId", ""), query.get("tag", "")
        if not repository or not tag:
            return _ngc_error(400, "INVALID_REQUEST", "resourceId and tag are required")
        answer = self.config.metadata.get(repository, {}).get(tag)
        if answer is None:
            return _ngc_error(404, "NOT_FOUND", f"No metadata for {repository}:{tag}")
        if answer == "timeout":
            self._stopping.wait(self.config.slow_seconds)
            return _json(200, {"profiles": []})
        if answer == "bad-request":
            return _ngc_error(400, "INVALID_REQUEST", "stored metadata failed validation")
        if answer == "server-error":
            return _ngc_error(500, "INTERNAL_ERROR", "internal error")
        if answer == "malformed":
            return 200, {"Content-Type": "application/json"}, b'{"profiles": [{"profile_id": "'
        return _json(200, answer)


def _handler_for(standin: RegistryStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            authorization = self.headers.get("Authorization", "")
            standin.record(
                RecordedRequest("GET", url.path, query, authorization.partition(" ")[0] or None)
            )
            self._send(*self._answer(url.path, query, authorization))

        def _answer(self, path: str, query: dict[str, str], authorization: str) -> tuple:
            if path == "/v2/nim/metadata":
                return standin.metadata(query)
            if standin.config.registry_unavailable:
                return _registry_error(503, "UNAVAILABLE", "service unavailable")
            if path == "/proxy_auth":
                return standin.token(query, authorization)
            if path in ("/v2", "/v2/"):
                return _registry_error(401, "UNAUTHORIZED", "authentication required")
            repository, marker, tag = path.removeprefix("/v2/").rpartition("/manifests/")
            if path.startswith("/v2/") and marker:
                return standin.manifest(repository, tag, authorization)
            return _registry_error(404, "NOT_FOUND", "no such endpoint")

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if status == 401:
                    self.send_header(
                        "WWW-Authenticate",
                        f'Bearer realm="{standin.url}/proxy_auth",service="registry"',
                    )
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (the "timeout" mode)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: tests read `standin.requests` instead

    return Handler


def _scope_repository(scope: str) -> str | None:
    kind, _, rest = scope.partition(":")
    repository, _, action = rest.rpartition(":")
    return repository if kind == "repository" and repository and action == "pull" else None


def _basic_password(authorization: str) -> str | None:
    scheme, _, encoded = authorization.partition(" ")
    if scheme != "Basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return None
    return password if user == NGC_USERNAME else None


def _json(status: int, body: object) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _registry_error(status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    return _json(status, {"errors": [{"code": code, "message": message}]})


def _ngc_error(status: int, code: str, description: str) -> tuple[int, dict, bytes]:
    return _json(
        status,
        {
            "requestStatus": {
                "statusCode": code,
                "statusDescription": description,
                "requestId": secrets.token_hex(8),
            }
        },
    )


def _image_index(repository: str, tag: str) -> tuple[int, dict, bytes]:
    digest = hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": f"sha256:{digest}",
                    "size": 2458,
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    ).encode()
    headers = {
        "Content-Type": "application/vnd.oci.image.index.v1+json",
        "Docker-Content-Digest": f"sha256:{hashlib.sha256(body).hexdigest()}",
    }
    return 200, headers, body


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--config", type=Path, help="YAML or JSON; default: DEFAULT_CONFIG")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    config = StandinConfig.load(args.config) if args.config else None
    with RegistryStandin(config, args.host, args.port) as standin:
        print(standin.url, flush=True)
        stop.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
