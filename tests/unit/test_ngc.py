"""The NGC pre-flight and Metadata API client against the loopback stand-in."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from hypothesis import given
from hypothesis import strategies as st

from nemotron_operator.core.diagnose import Reason
from nemotron_operator.shell import ngc
from nemotron_operator.shell.ngc import (
    ApiKey,
    CredentialCheck,
    ImageReference,
    PublishedProfile,
    PublishedProfileCache,
    check_anonymous_pull,
    check_credentials,
    check_image_credentials,
    fetch_published_profiles,
    published_profiles,
)
from tests.standins.registry import RegistryStandin, metadata_document

CANARY = "nvapi-CANARY-5c0ffee5-9d1e-4b2a-8f3c-6a7b8c9d0e1f"
WRONG_CANARY = "nvapi-WRONG-CANARY-0ddba11-1234-5678-9abc-def012345678"
NANO = "nim/nvidia/nemotron-3-nano"
SUPER = "nim/nvidia/nemotron-3-super-120b-a12b"
CONFIG = {
    "keys": {CANARY: ["*"], "nvapi-nano-only": [NANO]},
    "repositories": {
        NANO: {"tags": ["2.0.12", "2.1.5-pb7"], "public": ["2.0.12"]},
        SUPER: {"tags": ["2.0.3"], "public": False},
    },
    "metadata": {
        NANO: {
            "2.0.12": metadata_document(NANO),
            "2.1.6": "timeout",
            "2.0.9": "bad-request",
            "2.1.5-pb7": "malformed",
        },
        SUPER: {"2.0.3": "server-error"},
    },
    "slow_seconds": 5,
}
FAST = 1.0


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryStandin]:
    with RegistryStandin(CONFIG) as standin:
        yield standin


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback URL that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


# ---------------------------------------------------------------------------------------------
# Credentials


def test_valid_entitled_key(registry: RegistryStandin) -> None:
    result = check_credentials(NANO, "2.0.12", CANARY, registry.url, FAST)
    assert result.valid is True
    assert result.reason == Reason.NGC_ENTITLED
    assert f"{NANO}:2.0.12" in result.message


def test_the_key_goes_as_basic_auth_then_the_token_as_bearer(registry: RegistryStandin) -> None:
    before = len(registry.requests)
    check_credentials(SUPER, "2.0.3", CANARY, registry.url, FAST)
    token, manifest = registry.requests[before:]
    assert (token.path, token.auth_scheme) == ("/proxy_auth", "Basic")
    assert token.query == {
        "account": "$oauthtoken",
        "offline_token": "true",
        "scope": f"repository:{SUPER}:pull",
    }
    assert (manifest.path, manifest.auth_scheme) == (f"/v2/{SUPER}/manifests/2.0.3", "Bearer")


def test_rejected_key(registry: RegistryStandin) -> None:
    result = check_credentials(NANO, "2.0.12", WRONG_CANARY, registry.url, FAST)
    assert result.valid is False
    assert result.reason == Reason.NGC_AUTHENTICATION_FAILED
    assert "401" in result.message


def test_valid_key_without_entitlement(registry: RegistryStandin) -> None:
    result = check_credentials(SUPER, "2.0.3", "nvapi-nano-only", registry.url, FAST)
    assert result.valid is False
    assert result.reason == Reason.NGC_NOT_ENTITLED
    assert "403" in result.message


@pytest.mark.parametrize(("repository", "tag"), [(NANO, "9.9.9"), ("nim/nvidia/nope", "1.0")])
def test_unknown_image_or_tag(registry: RegistryStandin, repository: str, tag: str) -> None:
    result = check_credentials(repository, tag, CANARY, registry.url, FAST)
    assert result.valid is False
    assert result.reason == Reason.IMAGE_NOT_FOUND


def test_image_reference_form(registry: RegistryStandin) -> None:
    image = f"nvcr.io/{NANO}:2.0.12"
    result = check_image_credentials(image, ApiKey(CANARY), registry_url=registry.url, timeout=FAST)
    assert result.valid is True


def test_unreachable_registry_is_unknown_not_failure(closed_port_url: str) -> None:
    result = check_credentials(NANO, "2.0.12", CANARY, closed_port_url, FAST)
    assert result.valid is None
    assert result.reason == Reason.REGISTRY_UNREACHABLE


def test_silent_registry_is_unknown_within_the_timeout(silent_url: str) -> None:
    started = time.monotonic()
    result = check_credentials(NANO, "2.0.12", CANARY, silent_url, timeout=0.3)
    assert time.monotonic() - started < 2
    assert result.valid is None
    assert result.reason == Reason.REGISTRY_UNREACHABLE
    assert "0.3 s" in result.message


def test_registry_outage_is_unknown() -> None:
    with RegistryStandin({**CONFIG, "registry_unavailable": True}) as down:
        result = check_credentials(NANO, "2.0.12", CANARY, down.url, FAST)
        anonymous = check_anonymous_pull(NANO, down.url, timeout=FAST)
    assert (result.valid, result.reason) == (None, Reason.REGISTRY_UNREACHABLE)
    assert (anonymous.valid, anonymous.reason) == (None, Reason.REGISTRY_UNREACHABLE)
    assert "503" in result.message


# ---------------------------------------------------------------------------------------------
# Keyless pulls


def test_public_repository_serves_anonymous_tokens(registry: RegistryStandin) -> None:
    before = len(registry.requests)
    result = check_anonymous_pull(NANO, registry.url, timeout=FAST)
    assert (result.valid, result.reason) == (True, Reason.ANONYMOUS_PULL_ALLOWED)
    (token,) = registry.requests[before:]
    assert token.auth_scheme is None
    assert token.query == {"scope": f"repository:{NANO}:pull"}


@pytest.mark.parametrize(
    ("repository", "tag", "valid", "reason"),
    [
        (NANO, "2.0.12", True, Reason.ANONYMOUS_PULL_ALLOWED),
        (NANO, "2.1.5-pb7", False, Reason.NGC_KEY_REQUIRED),
        (SUPER, None, False, Reason.NGC_KEY_REQUIRED),
        (SUPER, "2.0.3", False, Reason.NGC_KEY_REQUIRED),
        (NANO, "9.9.9", False, Reason.IMAGE_NOT_FOUND),
    ],
)
def test_keyless_pull_by_repository_and_tag(
    registry: RegistryStandin, repository: str, tag: str | None, valid: bool, reason: Reason
) -> None:
    result = check_anonymous_pull(repository, registry.url, tag, timeout=FAST)
    assert (result.valid, result.reason) == (valid, reason)


def test_keyless_check_of_unreachable_registry_is_unknown(closed_port_url: str) -> None:
    result = check_anonymous_pull(NANO, closed_port_url, "2.0.12", timeout=FAST)
    assert (result.valid, result.reason) == (None, Reason.REGISTRY_UNREACHABLE)


# ---------------------------------------------------------------------------------------------
# The key never shows


def test_api_key_hides_itself() -> None:
    key = ApiKey(CANARY)
    assert CANARY not in repr(key) and CANARY not in str(key) and CANARY not in f"{key}"
    assert CANARY not in repr([key]) and key.reveal() == CANARY


def test_canary_key_never_appears_in_results_or_logs(
    registry: RegistryStandin,
    closed_port_url: str,
    silent_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    results: list[CredentialCheck] = []
    for key in (CANARY, WRONG_CANARY):
        for url in (registry.url, closed_port_url, silent_url):
            results.append(check_credentials(NANO, "2.0.12", key, url, timeout=0.3))
            results.append(check_image_credentials(f"nvcr.io/{SUPER}:2.0.3", key, url, 0.3))
    assert {r.valid for r in results} == {True, False, None}
    assert caplog.records, "the checks log what they found"
    for secret in (CANARY, WRONG_CANARY):
        assert secret not in caplog.text
        for result in results:
            assert secret not in repr(result) and secret not in result.message


def test_request_errors_that_quote_the_key_are_not_repeated(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def leaky_get(*args: object, **kwargs: object) -> None:
        raise requests.ConnectionError(f"could not send headers {kwargs.get('headers')}")

    monkeypatch.setattr(requests.Session, "get", leaky_get)
    caplog.set_level(logging.DEBUG)
    result = check_credentials(NANO, "2.0.12", CANARY, "http://127.0.0.1:9", FAST)
    assert (result.valid, result.reason) == (None, Reason.REGISTRY_UNREACHABLE)
    encoded = ngc.base64.b64encode(f"$oauthtoken:{CANARY}".encode()).decode()
    for secret in (CANARY, encoded):
        assert secret not in result.message and secret not in caplog.text


# ---------------------------------------------------------------------------------------------
# NIM Metadata API


def test_published_profiles_of_a_tag(registry: RegistryStandin) -> None:
    profiles = fetch_published_profiles(NANO, "2.0.12", registry.url, FAST)
    assert profiles is not None and len(profiles) == 12
    fp8_tp2 = next(p for p in profiles if (p.precision, p.tensor_parallel_size) == ("fp8", 2))
    assert fp8_tp2.min_memory_per_gpu_gb == 19.0
    assert fp8_tp2.pipeline_parallel_size == 1
    assert fp8_tp2.backend == "vllm"
    assert len(fp8_tp2.profile_id) == 64
    metadata_request = registry.requests[-1]
    assert metadata_request.path == "/v2/nim/metadata"
    assert metadata_request.query == {"resourceId": NANO, "tag": "2.0.12"}


@pytest.mark.parametrize(
    ("repository", "tag"),
    [(NANO, "2.0.9"), (NANO, "2.1.5-pb7"), (SUPER, "2.0.3"), (NANO, "0.0.1")],
    ids=["400", "malformed-json", "500", "404"],
)
def test_broken_answers_give_no_profiles(registry: RegistryStandin, repository: str, tag: str):
    assert fetch_published_profiles(repository, tag, registry.url, FAST) is None


def test_slow_api_gives_no_profiles_within_the_timeout(registry: RegistryStandin) -> None:
    started = time.monotonic()
    assert fetch_published_profiles(NANO, "2.1.6", registry.url, timeout=0.3) is None
    assert time.monotonic() - started < 2


def test_unreachable_api_gives_no_profiles(closed_port_url: str) -> None:
    assert fetch_published_profiles(NANO, "2.0.12", closed_port_url, FAST) is None


def test_the_documented_shape() -> None:
    document = {
        "profiles": [
            {
                "profile_id": "a" * 64,
                "precision": "FP8",
                "tensor_parallel_size": 4,
                "pipeline_parallel_size": 2,
                "min_vram_per_device_gb": 80.0,
                "gpu": "H100",
                "gpu_device": "2330:10de",
                "inference_backend": "tensorrt_llm",
                "tested_gpu_devices": ["2330:10de"],
                "throughput": 123,
            },
            {"profile_id": "b" * 64, "gpu": ["H100", "H200"], "tested_gpu_devices": []},
        ],
        "release_details": {"version": "2.0.12"},
    }
    profiles = published_profiles(document)
    assert profiles is not None
    first, second = profiles
    assert first == PublishedProfile(
        profile_id="a" * 64,
        precision="fp8",
        tensor_parallel_size=4,
        pipeline_parallel_size=2,
        min_memory_per_gpu_gb=80.0,
        gpus=("H100",),
        backend="tensorrt_llm",
    )
    assert second == PublishedProfile(profile_id="b" * 64, gpus=("H100", "H200"))


def test_other_shapes_are_tolerated() -> None:
    document = [
        {
            "profileId": "c" * 64,
            "description": "vllm-nvfp4-tp2-pp1-13.0",
        },
        {
            "id": "d" * 64,
            "tags": {"precision": "bf16", "tp": "8", "pp": "1", "llm_engine": "vllm"},
            "minMemoryPerGPUGB": "12",
        },
        {"precision": "fp8"},
        "not a profile",
    ]
    profiles = published_profiles(document)
    assert profiles is not None
    described, tagged = profiles
    assert (described.precision, described.tensor_parallel_size) == ("nvfp4", 2)
    assert described.min_memory_per_gpu_gb == 13.0
    assert described.description == "vllm-nvfp4-tp2-pp1-13.0"
    assert (tagged.precision, tagged.tensor_parallel_size, tagged.backend) == ("bf16", 8, "vllm")
    assert tagged.min_memory_per_gpu_gb == 12.0


@pytest.mark.parametrize(
    "document",
    [None, {}, {"profiles": []}, {"profiles": "x"}, {"requestStatus": {"statusCode": "X"}}, 3],
)
def test_documents_without_usable_profiles(document: object) -> None:
    assert published_profiles(document) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["profiles", "profile_id", "tp", "tags", "precision", "gpu", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=25,
)


@given(json_values)
def test_any_json_gives_profiles_or_none(document: object) -> None:
    profiles = published_profiles(document)
    assert profiles is None or all(isinstance(p, PublishedProfile) for p in profiles)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def metadata_requests(registry: RegistryStandin, tag: str) -> int:
    return sum(r.query.get("tag") == tag for r in registry.requests if "metadata" in r.path)


def test_cache_keeps_answers_for_their_time(registry: RegistryStandin) -> None:
    clock = FakeClock()
    cache = PublishedProfileCache(registry.url, FAST, ttl_seconds=600, clock=clock)
    before = metadata_requests(registry, "2.0.12")
    first = cache.get(NANO, "2.0.12")
    clock.now = 599
    assert cache.get(NANO, "2.0.12") == first is not None
    assert metadata_requests(registry, "2.0.12") == before + 1
    clock.now = 601
    assert cache.get(NANO, "2.0.12") == first
    assert metadata_requests(registry, "2.0.12") == before + 2


def test_cache_asks_a_failing_api_again_only_after_the_retry_time(
    registry: RegistryStandin,
) -> None:
    clock = FakeClock()
    cache = PublishedProfileCache(registry.url, FAST, retry_seconds=60, clock=clock)
    before = metadata_requests(registry, "2.0.9")
    assert cache.get(NANO, "2.0.9") is None
    clock.now = 59
    assert cache.get(NANO, "2.0.9") is None
    assert metadata_requests(registry, "2.0.9") == before + 1
    clock.now = 61
    cache.get(NANO, "2.0.9")
    assert metadata_requests(registry, "2.0.9") == before + 2


# ---------------------------------------------------------------------------------------------
# Image references and the stand-in as a process


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (f"nvcr.io/{NANO}:2.0.12", ImageReference("nvcr.io", NANO, "2.0.12")),
        (f"nvcr.io/{NANO}", ImageReference("nvcr.io", NANO, "latest")),
        (
            f"nvcr.io/{NANO}@sha256:{'e' * 64}",
            ImageReference("nvcr.io", NANO, f"sha256:{'e' * 64}"),
        ),
        ("localhost:5000/nim/x:2.1.5-pb7", ImageReference("localhost:5000", "nim/x", "2.1.5-pb7")),
        ("acme/nim:1", ImageReference("docker.io", "acme/nim", "1")),
        ("ubuntu", ImageReference("docker.io", "library/ubuntu", "latest")),
    ],
)
def test_image_references(image: str, expected: ImageReference) -> None:
    assert ImageReference.parse(image) == expected


def test_standin_runs_as_a_process_with_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "standin.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "keys": {CANARY: [SUPER]},
                "repositories": {SUPER: {"tags": ["2.1.6"]}},
                "metadata": {SUPER: {"2.1.6": metadata_document(SUPER)}},
            }
        )
    )
    script = Path(__file__).parents[1] / "standins" / "registry.py"
    process = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--config", str(config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert check_credentials(SUPER, "2.1.6", CANARY, url, FAST).valid is True
        profiles = fetch_published_profiles(SUPER, "2.1.6", url, FAST)
        assert profiles is not None and len(profiles) == 12
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
