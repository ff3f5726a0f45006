"""NGC pre-flight: may this key (or no key) pull this image, and what profiles does its tag publish.

The operator's only outbound HTTP. Every call has a short timeout and never raises: a registry
or API that cannot be reached gives an ``Unknown`` check or no profiles, and the deployment goes
on. The NGC API key travels only in an ``Authorization`` header; it is wrapped in ``ApiKey`` so
that no repr, log line, message or exception text can show it, and errors from ``requests``
(which carry URLs and sometimes headers) are reduced to their kind before anything reports them.

Registry protocol (nvcr.io, as the OpenDataHub model controller uses it):

1. ``GET {registry}/proxy_auth?account=$oauthtoken&offline_token=true&scope=repository:<repo>:pull``
   with HTTP Basic ``$oauthtoken:<key>`` returns ``{"token": ...}``; 401 means the key is
   invalid. Without credentials (and without ``account``), the same endpoint hands out anonymous
   tokens only for repositories that allow keyless pulls.
2. ``GET {registry}/v2/<repo>/manifests/<tag>`` with ``Bearer <token>``: 200 entitled,
   401/403 not entitled, 404 no such image or tag.

NIM Metadata API (``GET {api}/v2/nim/metadata?resourceId=<repo>&tag=<tag>``, no credentials):
a JSON document whose optional ``profiles`` array holds objects with ``profile_id`` (always),
``precision``, ``tensor_parallel_size``, ``pipeline_parallel_size``, ``min_vram_per_device_gb``,
``gpu`` / ``gpu_device`` (a string, or a list in later releases), ``inference_backend`` and
more. The service never emits null: an absent field means unknown. 404 means the tag has no
published metadata, a normal outcome. The parser also accepts camelCase names, a bare list of
profiles, NIM-manifest-style ``tags`` objects, and reads precision / tp / pp / memory from a
description such as ``vllm-fp8-tp2-pp1-19.0`` when the fields themselves are absent.
"""

from __future__ import annotations

import base64
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from cachetools import TLRUCache

from nemotron_operator.api import names

Reason = names.NimReason

log = logging.getLogger(__name__)

DEFAULT_REGISTRY_URL = "https://nvcr.io"
DEFAULT_METADATA_API_URL = "https://api.ngc.nvidia.com"
DEFAULT_TIMEOUT_SECONDS = 5.0
NGC_USERNAME = "$oauthtoken"
MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


class ApiKey:
    """An NGC API key that never shows itself: repr and str give ``ApiKey(***)``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "ApiKey(***)"

    __str__ = __repr__


@dataclass(frozen=True)
class CredentialCheck:
    """What the registry said, ready to become a condition."""

    valid: bool | None
    """The condition status: True, False, or None for Unknown (the check could not tell)."""
    reason: Reason
    message: str


@dataclass(frozen=True)
class ImageReference:
    registry: str
    """Host (and port), e.g. ``nvcr.io``."""
    repository: str
    """Path inside the registry, e.g. ``nim/nvidia/nemotron-3-nano``."""
    tag: str
    """Tag, or ``sha256:...`` for an image pinned by digest."""

    @classmethod
    def parse(cls, image: str) -> ImageReference:
        """Split ``[registry/]repository[:tag|@digest]`` the way container runtimes do."""
        name, _, digest = image.partition("@")
        tag = ""
        if name.rfind(":") > name.rfind("/"):
            name, _, tag = name.rpartition(":")
        reference = digest or tag or "latest"
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            return cls(first, rest, reference)
        return cls("docker.io", name if rest else f"library/{name}", reference)


def check_credentials(
    repository: str,
    tag: str,
    api_key: ApiKey | str,
    registry_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> CredentialCheck:
    """Whether the key may pull ``repository:tag``: True ``NGCEntitled``; False
    ``NGCAuthenticationFailed`` / ``NGCNotEntitled`` / ``ImageNotFound``; Unknown
    ``RegistryUnreachable`` / ``UnexpectedRegistryResponse``."""
    key = api_key if isinstance(api_key, ApiKey) else ApiKey(api_key)
    registry = _base_url(registry_url, DEFAULT_REGISTRY_URL)
    image = f"{_shown(registry)}/{repository}:{tag}"
    credentials = base64.b64encode(f"{NGC_USERNAME}:{key.reveal()}".encode()).decode("ascii")
    result = _probe(
        registry,
        repository,
        tag,
        token_params={"account": NGC_USERNAME, "offline_token": "true"},
        token_headers={"Authorization": f"Basic {credentials}"},
        allowed=CredentialCheck(True, Reason.NGC_ENTITLED, f"The NGC API key may pull {image}."),
        refused_token={
            401: CredentialCheck(
                False,
                Reason.NGC_AUTHENTICATION_FAILED,
                f"{_shown(registry)} rejected the NGC API key (HTTP 401 from its token endpoint).",
            ),
            403: _not_entitled(image, 403),
        },
        refused_manifest={
            401: _not_entitled(image, 401),
            403: _not_entitled(image, 403),
            404: _image_not_found(image),
        },
        timeout=timeout,
    )
    log.info("NGC credentials for %s: %s (%s)", image, result.valid, result.reason)
    return result


def check_image_credentials(
    image: str,
    api_key: ApiKey | str,
    registry_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> CredentialCheck:
    """``check_credentials`` for an image reference such as
    ``nvcr.io/nim/nvidia/nemotron-3-nano:2.0.12``, asking ``registry_url`` when given, else the
    image's own registry."""
    reference = ImageReference.parse(image)
    registry = _base_url(registry_url, f"https://{reference.registry}")
    return check_credentials(reference.repository, reference.tag, api_key, registry, timeout)


def check_anonymous_pull(
    repository: str,
    registry_url: str | None = None,
    tag: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> CredentialCheck:
    """Whether ``repository`` (and ``tag``, when given) can be pulled with no key: True
    ``AnonymousPullAllowed``; False ``NGCKeyRequired`` / ``ImageNotFound``; Unknown when the
    registry cannot be reached or answers something else."""
    registry = _base_url(registry_url, DEFAULT_REGISTRY_URL)
    image = f"{_shown(registry)}/{repository}" + (f":{tag}" if tag else "")
    key_required = CredentialCheck(
        False,
        Reason.NGC_KEY_REQUIRED,
        f"{image} cannot be pulled without an NGC API key.",
    )
    result = _probe(
        registry,
        repository,
        tag,
        token_params={},
        token_headers={},
        allowed=CredentialCheck(
            True,
            Reason.ANONYMOUS_PULL_ALLOWED,
            f"{image} can be pulled without an NGC API key.",
        ),
        refused_token={401: key_required, 403: key_required},
        refused_manifest={401: key_required, 403: key_required, 404: _image_not_found(image)},
        timeout=timeout,
    )
    log.info("Keyless pull of %s: %s (%s)", image, result.valid, result.reason)
    return result


def _not_entitled(image: str, status: int) -> CredentialCheck:
    return CredentialCheck(
        False,
        Reason.NGC_NOT_ENTITLED,
        f"The NGC API key is valid but may not pull {image} (HTTP {status}).",
    )


def _image_not_found(image: str) -> CredentialCheck:
    return CredentialCheck(False, Reason.IMAGE_NOT_FOUND, f"The registry has no image {image}.")


def _probe(
    registry: str,
    repository: str,
    tag: str | None,
    *,
    token_params: Mapping[str, str],
    token_headers: Mapping[str, str],
    allowed: CredentialCheck,
    refused_token: Mapping[int, CredentialCheck],
    refused_manifest: Mapping[int, CredentialCheck],
    timeout: float,
) -> CredentialCheck:
    """Ask for a pull token, then (with a tag) for the manifest; map each answer to a check."""
    try:
        with requests.Session() as session:
            answer = session.get(
                f"{registry}/proxy_auth",
                params={**token_params, "scope": f"repository:{repository}:pull"},
                headers=dict(token_headers),
                timeout=timeout,
                allow_redirects=False,
            )
            if answer.status_code != 200:
                return refused_token.get(answer.status_code) or _unexpected(
                    registry, "token endpoint", answer.status_code
                )
            token = _token(answer)
            if token is None:
                return CredentialCheck(
                    None,
                    Reason.UNEXPECTED_REGISTRY_RESPONSE,
                    f"{_shown(registry)} answered its token endpoint without a token.",
                )
            if tag is None:
                return allowed
            answer = session.get(
                f"{registry}/v2/{repository}/manifests/{tag}",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": ",".join(MANIFEST_MEDIA_TYPES),
                },
                timeout=timeout,
                allow_redirects=False,
            )
            if answer.status_code == 200:
                return allowed
            return refused_manifest.get(answer.status_code) or _unexpected(
                registry, "manifest request", answer.status_code
            )
    except requests.Timeout:
        return _unreachable(registry, f"did not answer within {timeout:g} s")
    except (requests.RequestException, ValueError) as error:
        # The error's text may hold URLs or headers: only its kind is reported.
        return _unreachable(registry, f"could not be reached ({type(error).__name__})")


def _token(answer: requests.Response) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    token = _field(body, "token") or _field(body, "access_token")
    return token if isinstance(token, str) and token else None


def _unexpected(registry: str, what: str, status: int) -> CredentialCheck:
    if status == 429 or status >= 500:
        return _unreachable(registry, f"answered its {what} with HTTP {status}")
    return CredentialCheck(
        None,
        Reason.UNEXPECTED_REGISTRY_RESPONSE,
        f"{_shown(registry)} answered its {what} with HTTP {status}.",
    )


def _unreachable(registry: str, what_happened: str) -> CredentialCheck:
    return CredentialCheck(
        None,
        Reason.REGISTRY_UNREACHABLE,
        f"{_shown(registry)} {what_happened}; the check will be repeated.",
    )


def _base_url(explicit: str | None, default: str) -> str:
    return (explicit or default).rstrip("/")


def _shown(url: str) -> str:
    """The URL's host (and port) without scheme or any user:password part."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return host or url


# ---------------------------------------------------------------------------------------------
# NIM Metadata API


@dataclass(frozen=True)
class PublishedProfile:
    """One profile a NIM tag publishes; None means the API did not say."""

    profile_id: str
    description: str | None = None
    precision: str | None = None
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    min_memory_per_gpu_gb: float | None = None
    gpus: tuple[str, ...] = ()
    """GPU names the profile targets; empty for a GPU-agnostic profile."""
    backend: str | None = None


_ALIASES: dict[str, tuple[str, ...]] = {
    "profile_id": ("profile_id", "profileId", "id"),
    "description": ("description", "profile_name", "profileName", "name"),
    "precision": ("precision",),
    "tensor_parallel_size": ("tensor_parallel_size", "tensorParallelSize", "tp"),
    "pipeline_parallel_size": ("pipeline_parallel_size", "pipelineParallelSize", "pp"),
    "min_memory_per_gpu_gb": (
        "min_vram_per_device_gb",
        "minVramPerDeviceGb",
        "minMemoryPerGPUGB",
        "min_memory_per_gpu_gb",
    ),
    "gpus": ("gpu", "gpus"),
    "backend": ("inference_backend", "inferenceBackend", "llm_engine", "backend"),
}
_PRECISIONS = ("bf16", "fp16", "fp8", "nvfp4", "mxfp4", "fp4", "int8", "int4")
_DESCRIBED_TP = re.compile(r"(?:^|-)tp(\d+)(?=-|$)")
_DESCRIBED_PP = re.compile(r"(?:^|-)pp(\d+)(?=-|$)")
_DESCRIBED_MEMORY = re.compile(r"-(\d+\.\d+)$")


def published_profiles(document: object) -> tuple[PublishedProfile, ...] | None:
    """The profiles in a Metadata API answer, or None when it holds none that are usable."""
    entries = document if isinstance(document, list) else _field(document, "profiles")
    if entries is None:
        entries = _field(_field(document, "metadata") or _field(document, "data"), "profiles")
    if not isinstance(entries, list):
        return None
    profiles = tuple(p for p in map(_published_profile, entries) if p is not None)
    return profiles or None


def _published_profile(entry: object) -> PublishedProfile | None:
    if not isinstance(entry, Mapping):
        return None

    def value(name: str) -> object:
        for source in (entry, _field(entry, "tags"), _field(entry, "attributes")):
            for key in _ALIASES[name]:
                found = _field(source, key)
                if found is not None and found != "":
                    return found
        return None

    profile_id = value("profile_id")
    if not isinstance(profile_id, str) or not profile_id.strip():
        return None
    description = value("description")
    described = description.lower() if isinstance(description, str) else ""
    precision = value("precision")
    gpus = value("gpus")
    backend = value("backend")
    return PublishedProfile(
        profile_id=profile_id.strip(),
        description=description if isinstance(description, str) else None,
        precision=(
            precision.lower()
            if isinstance(precision, str)
            else next((p for p in _PRECISIONS if re.search(rf"(?:^|-){p}(?=-|$)", described)), None)
        ),
        tensor_parallel_size=_positive_int(value("tensor_parallel_size"))
        or _described_int(_DESCRIBED_TP, described),
        pipeline_parallel_size=_positive_int(value("pipeline_parallel_size"))
        or _described_int(_DESCRIBED_PP, described),
        min_memory_per_gpu_gb=_positive_number(value("min_memory_per_gpu_gb"))
        or _positive_number(_first_group(_DESCRIBED_MEMORY, described)),
        gpus=(gpus,)
        if isinstance(gpus, str)
        else tuple(g for g in _list(gpus) if isinstance(g, str)),
        backend=backend if isinstance(backend, str) else None,
    )


def _positive_int(value: object) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _positive_number(value: object) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def _described_int(pattern: re.Pattern[str], description: str) -> int | None:
    return _positive_int(_first_group(pattern, description))


def _first_group(pattern: re.Pattern[str], text: str) -> str | None:
    found = pattern.search(text)
    return found.group(1) if found else None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _field(obj: object, key: str) -> object:
    return obj.get(key) if isinstance(obj, Mapping) else None


def fetch_published_profiles(
    repository: str,
    tag: str,
    api_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> tuple[PublishedProfile, ...] | None:
    """The profiles NVIDIA publishes for ``repository:tag`` (``repository`` as in the image,
    e.g. ``nim/nvidia/nemotron-3-nano``), or None on any failure: the caller falls back to the
    static catalog and the estimate."""
    api = _base_url(api_url, DEFAULT_METADATA_API_URL)
    where = f"{_shown(api)} for {repository}:{tag}"
    try:
        answer = requests.get(
            f"{api}/v2/nim/metadata",
            params={"resourceId": repository, "tag": tag},
            headers={"Accept": "application/json"},
            timeout=timeout,
        )
        if answer.status_code != 200:
            log.info("NIM Metadata API %s: HTTP %s, using the estimate", where, answer.status_code)
            return None
        profiles = published_profiles(answer.json())
    except requests.Timeout:
        log.info("NIM Metadata API %s: no answer within %g s, using the estimate", where, timeout)
        return None
    except (requests.RequestException, ValueError) as error:
        log.info("NIM Metadata API %s: %s, using the estimate", where, type(error).__name__)
        return None
    if profiles is None:
        log.info("NIM Metadata API %s: no usable profiles, using the estimate", where)
    return profiles


class PublishedProfileCache:
    """Published profiles per image tag: an answer is kept ``ttl_seconds``, a failure
    ``retry_seconds`` (so a broken API is asked at most that often and never blocks planning)."""

    def __init__(
        self,
        api_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        ttl_seconds: float = 3600.0,
        retry_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_url = api_url
        self._timeout = timeout
        self._lock = threading.Lock()

        def keep_until(_: object, profiles: object, now: float) -> float:
            return now + (ttl_seconds if profiles is not None else retry_seconds)

        self._entries: TLRUCache[tuple[str, str], tuple[PublishedProfile, ...] | None] = TLRUCache(
            4096, keep_until, timer=clock
        )

    def get(self, repository: str, tag: str) -> tuple[PublishedProfile, ...] | None:
        key = (repository, tag)
        with self._lock:
            if key in self._entries:
                return self._entries[key]
        profiles = fetch_published_profiles(repository, tag, self._api_url, self._timeout)
        with self._lock:
            self._entries[key] = profiles
        return profiles
