"""Why a NIM pod is not serving, in plain words: pod status and events in, one diagnosis out.

A pure function of data as the Kubernetes API returns it (camelCase JSON as dicts). It reads:

- container states: ``waiting`` (ErrImagePull, ImagePullBackOff, CreateContainerConfigError,
  CrashLoopBackOff), ``terminated`` / ``lastState.terminated`` with the log tail the kubelet
  copies into ``message`` (``terminationMessagePolicy: FallbackToLogsOnError``), ``OOMKilled``;
- the pod's ``PodScheduled`` condition and eviction status;
- the scheduler's and kubelet's events about the pod (FailedScheduling, Failed, FailedMount,
  Killing, FailedToRetrieveImagePullSecret).

Texts vary by NIM release, serving engine, container runtime and registry, so the rules match
meaning, never one exact string, skip log lines a logger marked INFO/DEBUG/WARNING, and fall back
to an honest ``CrashLoop`` quoting the last lines rather than guessing. Anything quoted has NGC
keys redacted first.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from nemotron_operator.api import names
from nemotron_operator.api.types import PlanStatus

DEFAULT_STARTUP_ALLOWANCE_SECONDS = 1200
"""What the NIM Operator's startup probe allows (failureThreshold 120 x period 10 s)."""

CREATION_RETRY_SECONDS = 600
"""How recent a volume's or sandbox's failure Event must be to count: the kubelet and the
attach controller post it again while they retry (the recorder lets one through per 5 minutes
at worst)."""

CLAIM_BINDING_GRACE_SECONDS = 60
"""How long a new pod may wait for its cache volume to be provisioned before that is reported."""

SIGBUS_EXIT_CODE = 128 + 7
"""How a container ends when the kernel sends SIGBUS: in a NIM, shared memory ran out."""

EVIDENCE_CHARS = 300
CRASH_EVIDENCE_LINES = 3
OUTPUT_FORMATS = ("text", "json")


Reason = names.NimReason

DIAGNOSIS_REASONS: tuple[Reason, ...] = (
    Reason.SECRET_NOT_FOUND,
    Reason.NGC_KEY_REQUIRED,
    Reason.NGC_AUTHENTICATION_FAILED,
    Reason.NGC_NOT_ENTITLED,
    Reason.HUGGING_FACE_ACCESS_DENIED,
    Reason.IMAGE_PULL_UNAUTHORIZED,
    Reason.IMAGE_NOT_FOUND,
    Reason.MODEL_PROFILE_NOT_FOUND,
    Reason.CONTAINER_CONFIG_ERROR,
    Reason.VOLUME_MOUNT_FAILED,
    Reason.GPU_DRIVER_INCOMPATIBLE,
    Reason.GPU_UNAVAILABLE,
    Reason.NO_PROFILE_FOR_GPU,
    Reason.MODEL_NOT_SUPPORTED,
    Reason.INSUFFICIENT_GPU_MEMORY,
    Reason.HOST_MEMORY_EXHAUSTED,
    Reason.SHARED_MEMORY_TOO_SMALL,
    Reason.DISK_FULL,
    Reason.CACHE_NOT_WRITABLE,
    Reason.MODEL_SOURCE_UNREACHABLE,
    Reason.DISTRIBUTED_INIT_FAILED,
    Reason.CONTAINER_START_FAILED,
    Reason.UNSCHEDULABLE,
    Reason.IMAGE_PULL_FAILED,
    Reason.CRASH_LOOP,
    Reason.STARTUP_TIMEOUT,
)
"""The reasons a diagnosis can carry, most decisive first: when pods disagree, the earliest wins
(a missing Secret or a refused key explains everything after it; a crash loop explains little)."""


@dataclass(frozen=True)
class Diagnosis:
    reason: Reason
    message: str
    """What is wrong, quoting the decisive evidence briefly (keys redacted)."""
    hint: str
    """What to change."""
    pod: str = ""
    container: str = ""


def _diagnosed(reason: Reason, message: str) -> Diagnosis:
    """A diagnosis with the usual advice for its reason."""
    return Diagnosis(reason, message, _HINTS[reason])


# ---------------------------------------------------------------------------------------------
# Redaction

_REDACTED = "***"
_SECRET_PATTERNS = (
    re.compile(r"nvapi-[A-Za-z0-9_\-]+"),
    re.compile(r"(?i)(NGC_(?:CLI_)?API_KEY['\"]?\s*[=:]\s*['\"]?)[^\s'\",;}]+"),
    re.compile(
        r"(?i)(\b(?:authorization|x-api-key)['\"]?\s*[=:]\s*['\"]?(?:basic|bearer)?\s*)[^\s'\",;}]+"
    ),
    re.compile(
        r"(?i)(\b(?:password|passwd|secret|token|api[_-]?key)['\"]?\s*[=:]\s*['\"]?)"
        r"(?=[^\s'\",;}]*\d)[^\s'\",;}]{16,}"  # a value that looks generated, not a word
    ),
    # Legacy NGC keys and other long mixed-case base64 blobs (hex ids and digests are lowercase).
    re.compile(
        r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*[A-Z])(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*\d)"
        r"[A-Za-z0-9+/]{40,}={0,2}"
    ),
)


def redact(text: str) -> str:
    """The text with NGC keys and other credentials replaced by ``***``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(
            lambda m: (m.group(1) if m.re.groups else "") + _REDACTED,
            text,
        )
    return text


# ---------------------------------------------------------------------------------------------
# Tolerant access to API objects that may be partial or malformed


def _field(obj: object, *path: str) -> object:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _mappings(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list | tuple):
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        return 0
    return max(value, 0)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def timestamp(value: object) -> datetime | None:
    """An API timestamp (RFC 3339) as an aware datetime; None for anything else."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _quote(text: str, keep_end: bool = False) -> str:
    """Evidence in quotes, redacted, one line, cut to its start (or its end, where runtimes put
    the cause of a failed pull)."""
    text = " ".join(redact(text).split())
    if len(text) > EVIDENCE_CHARS:
        cut = EVIDENCE_CHARS - 3
        text = "..." + text[-cut:] if keep_end else text[:cut] + "..."
    return f'"{text}"'


# ---------------------------------------------------------------------------------------------
# Log tails

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_JSON_MESSAGE_KEYS = ("message", "msg", "log", "text", "error", "exception", "exc_info")
_JSON_LEVEL_KEYS = ("level", "levelname", "severity", "log.level")
_QUIET_LEVELS = frozenset({"trace", "debug", "info", "notice", "warn", "warning"})
_TEXT_LEVEL = re.compile(
    r"^.{0,60}?(?:(?<![A-Za-z])(?:TRACE|DEBUG|INFO|NOTICE|(?<!NCCL )WARN|WARNING)(?![A-Za-z])|"
    r"(?<![A-Za-z0-9])[IW]\d{3,4} \d{1,2}:\d\d:\d\d)"
)
"""A line's level where the logger writes one: a word (NCCL writes its errors as ``NCCL
WARN``), or glog's letter before the date (``W0505 14:36:29``, PyTorch's ``[W505 14:36:29``)."""


@dataclass(frozen=True)
class _LogLine:
    text: str
    quiet: bool
    """Marked by its logger as below error level: never the evidence of a failure."""


def _log_lines(tail: str) -> list[_LogLine]:
    """Lines of a log tail, with JSON lines (NIM_JSONL_LOGGING=1) reduced to their message."""
    lines: list[_LogLine] = []
    for raw in tail.splitlines():
        line = _ANSI_ESCAPE.sub("", raw).strip()
        if not line:
            continue
        record = _json_object(line)
        if record is None:
            lines.append(_LogLine(line, bool(_TEXT_LEVEL.match(line))))
            continue
        level = next((_text(record.get(k)) for k in _JSON_LEVEL_KEYS if _text(record.get(k))), "")
        quiet = level.lower() in _QUIET_LEVELS
        parts = [_text(record.get(k)) for k in _JSON_MESSAGE_KEYS if _text(record.get(k)).strip()]
        for part in parts or [line]:
            lines.extend(_LogLine(p.strip(), quiet) for p in part.splitlines() if p.strip())
    return lines


def _json_object(line: str) -> Mapping[str, Any] | None:
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


@dataclass(frozen=True)
class _LogRule:
    reason: Reason
    matches: re.Pattern[str]
    unless: re.Pattern[str] | None = None
    instead: tuple[re.Pattern[str], Reason] | None = None
    """Another reason, when anything in the same text says so (the context decides)."""
    within: re.Pattern[str] | None = None
    """The rule applies only to a text that says this somewhere (a line alone is too terse)."""
    also_quiet: bool = False
    """Its evidence counts in lines logged below error level too, when no loud line says why:
    texts a working GPU start never prints (engines log why CUDA is unusable at DEBUG)."""


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_NGC_CONTEXT = r"(?=.*\b(?:ngc|nvcr|manifest|download|registry|api\.ngc)\b)"
_HF_CONTEXT = r"(?=.*(?:hugging ?face|\bhf\.co\b|\bhf_(?:hub|token)\b|\bhf token\b))"
_DOWNLOAD_WORDS = (
    r"(?:https?://|hugging ?face|\bhf\.co\b|\bngc\b|nvcr\.io|\bs3\b|amazonaws|botocore|download|"
    r"urllib3|\brequests\b|https?connectionpool|max retries exceeded|\bhub\b|\bmanifest\b)"
)
_DOWNLOAD_CONTEXT = rf"(?=.*{_DOWNLOAD_WORDS})"
_LOW_GPU_MEMORY = _rx(
    r"not runnable due to low (?:gpu )?(?:free )?memory|non-free gpus|"
    r"(?:insufficient|not enough|low) (?:free )?gpu memory|"
    r"\butilization: (?:[1-9]\d|100)%"
)
_LOG_RULES: tuple[_LogRule, ...] = (
    _LogRule(
        Reason.MODEL_PROFILE_NOT_FOUND,
        _rx(
            r"NIM_MODEL_PROFILE\b.*\b(?:no matching|not found|not valid|invalid)|"
            r"no matching profile|unknown profiles? (?:provided|requested|selected)|"
            r"provided profiles? (?:are|is) not (?:supported|valid|known)"
        ),
    ),
    _LogRule(
        Reason.NGC_KEY_REQUIRED,
        _rx(
            r"\bNGC_(?:CLI_)?API_KEY\b.*\b(?:not set|not (?:been )?provided|missing|is required|"
            r"must be (?:set|provided)|is empty)|\bno (?:ngc )?api key\b"
        ),
    ),
    _LogRule(
        Reason.HUGGING_FACE_ACCESS_DENIED,
        _rx(
            r"gatedrepoerror|\bgated (?:repo|model)|cannot access gated|"
            r"access to (?:model|repo\w*) \S+ is restricted|"
            r"awaiting a review from the repo authors|not in the authorized list|"
            + _HF_CONTEXT
            + r".*(?:\b40[13]\b|unauthori[sz]ed|forbidden|invalid (?:user )?(?:token|credentials)|"
            r"invalid username or password|must be authenticated|token is not valid)"
        ),
    ),
    _LogRule(
        Reason.NGC_AUTHENTICATION_FAILED,
        _rx(
            r"authentication (?:error|failed|failure)|"
            r"invalid (?:ngc )?api[ _-]?key|invalid ngc key|"
            r"\bapi[ _-]?key\b.*\b(?:invalid|expired|revoked|rejected)\b|"
            + _NGC_CONTEXT
            + r".*(?:\b401\b|\bunauthori[sz]ed\b)"
        ),
    ),
    _LogRule(
        Reason.NGC_NOT_ENTITLED,
        _rx(
            r"\bpermission error\b|permissions that the user does not have|"
            r"not (?:be )?(?:a )?member of the org|\bnot entitled\b|"
            + _NGC_CONTEXT
            + r".*(?:\b403\b|\bforbidden\b|\baccess denied\b)"
        ),
    ),
    _LogRule(
        Reason.CONTAINER_START_FAILED,
        _rx(
            r"exec format error|exec user process caused|starting container process caused|"
            r"oci runtime (?:create|start|exec) failed|executable file not found in \$path"
        ),
    ),
    _LogRule(
        Reason.GPU_DRIVER_INCOMPATIBLE,
        _rx(
            r"nvidia driver on your system is too old|"
            r"driver version is insufficient for cuda runtime|insufficient ?driver|"
            r"unsatisfied condition: cuda\s*[<>=]|please update your (?:nvidia |gpu )?driver|"
            r"forward compatibility was attempted on non supported|compat_not_supported|"
            r"unsupported display driver\s*/\s*cuda driver combination|system_driver_mismatch|"
            r"ptx was compiled with an unsupported toolchain|unsupported_?ptx_?version|"
            r"requires (?:an? )?(?:nvidia |gpu )?driver (?:version )?(?:>=|of at least|\d)|"
            r"cuda (?:driver|version|runtime).{0,60}(?:mismatch|too old|incompatible|"
            r"not compatible|newer than|older than)|"
            r"driver\b.{0,60}\b(?:too old|older than (?:the )?required|does not support cuda)|"
            r"built for nvidia driver release .{0,60}but version|"
            r"cuda initiali[sz]ation failure with error:? 35\b|"
            r"libcuda\.so[.\d]*: version .{0,30}not found"
        ),
        also_quiet=True,
    ),
    _LogRule(
        Reason.GPU_UNAVAILABLE,
        _rx(
            r"no cuda gpus are available|no cuda-capable device|cudaerrornodevice|"
            r"cuda_error_no_device|found no nvidia driver|nvidia-container-cli|"
            r"\bnvml\b.{0,60}(?:error|not loaded|failed|unknown|mismatch|not found)|"
            r"failed to initiali[sz]e nvml|driver/library version mismatch|"
            r"(?:libcuda|libnvidia-ml)\.so[.\d]*:? cannot open shared object|"
            r"could not select device driver .{0,20}with capabilities: \[\[gpu\]\]|"
            r"unresolvable cdi devices|cdi device injection failed|"
            r"failed to infer device type|cuda driver initialization failed|"
            r"no platform detected|unspecifiedplatform|device string must not be empty|"
            r"unexpected error from cudagetdevicecount|system not yet initiali[sz]ed|"
            r"cudaerrorsystemnotready|fabric ?manager|"
            r"gpu (?:is lost|has fallen off the bus)|fallen off the bus|"
            r"allocate failed due to|device plugin.{0,80}(?:failed|error|unavailable)|"
            r"uncorrectable ecc error|\bxid\b.{0,20}\b(?:48|62|64|74|79|94|95)\b|"
            r"no runtime for \W?nvidia|(?:devices?|device\(s\)) (?:is|are|is/are) busy or "
            r"unavailable|cudaerrordevicesunavailable|"
            r"(?:detected|found) 0 (?:nvidia |cuda )?gpus?\b|"
            r"no (?:supported |nvidia |cuda )?gpus?(?:\(s\))? (?:were |was |are )?"
            r"(?:found|detected|available)|nvidia driver was not detected|number of gpus \(0\)|"
            r"(?=.*nvidia\.com/gpu).*(?:allocate failed|devices? unavailable|unhealthy|"
            r"capacity: 0)"
        ),
        also_quiet=True,
    ),
    _LogRule(
        Reason.NO_PROFILE_FOR_GPU,
        _rx(
            r"could not find a profile that is (?:currently runnable|compatible)|"
            r"no (?:compatible|supported|runnable) (?:model )?profiles?|"
            r"(?:none of the|no) (?:model )?profiles? (?:is |are )?(?:compatible|supported)|"
            r"\b(?:profile|engine)\b.{0,80}\bnot compatible with (?:the |this )?(?:current |"
            r"detected )?(?:system|gpus?|hardware|device)|"
            r"\b(?:gpu|device|hardware)\b.{0,60}\b(?:is|are) not supported|"
            r"not supported (?:on|for|by) (?:this|the (?:current|detected|given)|your) "
            r"(?:gpu|device|hardware|architecture)|minimum capability: \d+\W+current capability|"
            r"unsupported (?:gpu|hardware|device|compute capability)|"
            r"no kernel image is available for execution on the device|"
            r"(?:generated|built|compiled|serialized) (?:on|for) an? (?:incompatible|different) "
            r"(?:device|gpu)|expecting compute \d+\.?\d* got compute|"
            r"only supported on gpus with compute capability|"
            r"(?:ampere|hopper|blackwell|ada(?: lovelace)?|turing|volta) (?:gpus? )?or "
            r"(?:newer|later)|unsupported (?:sm|arch)\b|"
            r"(?:sm_?\d{2,3}|compute capability \d+\.\d) (?:is )?not supported|"
            # native kernels assert on the GPU's architecture, naming their source file
            r"unsupported architecture\W.{0,200}\.(?:cpp|cu|cuh|h)\b|"
            r"requires? (?:a )?(?:gpu|device)s? with compute capability"
        ),
        instead=(_LOW_GPU_MEMORY, Reason.INSUFFICIENT_GPU_MEMORY),
    ),
    _LogRule(
        Reason.MODEL_NOT_SUPPORTED,
        _rx(
            r"architectures? .{0,100}(?:(?:is|are) not supported|failed to be inspected)|"
            r"(?:unsupported|unrecognized|unknown) (?:model )?(?:architecture|model type|"
            r"configuration class)|does not recognize this architecture|"
            r"contains custom code which must be executed|execute the configuration file|"
            r"(?:pass|set|requires?|needs?|enable) (?:the )?(?:argument |option |flag )?"
            r"`?-?-?trust[_-]remote[_-]code|"
            r"(?:divisible by|multiple of) (?:the )?(?:tensor|pipeline|tp\b|pp\b|world)|"
            r"not divisible by|must be divisible|"
            r"(?:quantization|quant method).{0,60}(?:not supported|unsupported|unknown)|"
            r"unknown quantization|model type .{0,60}not supported|"
            r"version tag does not match|serialized engine version|kserialization_version|"
            r"(?:engine|plan)\b.{0,40}(?:built|serialized|created) (?:with|by) (?:a )?"
            r"(?:different|another|newer|older) (?:version|tensorrt)|"
            r"is not supported (?:by|in) (?:vllm|sglang|tensorrt-llm|trt-llm|"
            r"this (?:version|engine))"
        ),
    ),
    _LogRule(
        Reason.CONTAINER_CONFIG_ERROR,
        _rx(
            r"user-specified .{0,80}(?:greater|larger) than|"
            r"(?:unrecognized|unknown) (?:command[- ]line )?arguments?:|error: argument -|"
            r"invalid choice: |invalid (?:value|literal) for (?:argument|option|--)|"
            r"invalid value for (?:the )?(?:environment variable )?\w+_\w+|"
            r"\d+ validation errors? for "
        ),
    ),
    _LogRule(
        Reason.SHARED_MEMORY_TOO_SMALL,
        _rx(
            r"(?=.*(?:/dev/shm|shared memory|\bshm\b|</torch_))"
            r".*(?:no space|too small|insufficient|not enough|failed|error|cannot|unable|exceed|"
            r"\bonly [\d.]+ ?(?:bytes|[kmg]i?b)\b)|"
            r"\bbus error\b|\bsigbus\b"
        ),
        unless=_rx(r"out of resource: shared memory|hardware limit|smem|per block"),
        also_quiet=True,
    ),
    _LogRule(
        Reason.INSUFFICIENT_GPU_MEMORY,
        _rx(
            r"no available memory for the cache blocks|"
            r"no gpus? with (?:sufficient|enough) (?:free )?memory|"
            r"\bcuda\b.*\bout of memory|outofmemory(?:error)?\b|"
            r"cudaerrormemoryallocation|cuda_error_out_of_memory|"
            r"gpu memory.{0,60}could not be allocated|"
            r"(?:not enough|insufficient) (?:gpu |device |cuda )?memory|"
            r"larger than the (?:maximum number of tokens that can be stored in|available)"
            r" kv cache|"
            r"kv cache\b.*\b(?:is needed|not enough|insufficient|exceeds)|"
            r"free memory on device.*less than desired gpu memory utilization"
        ),
        unless=_rx(r"illegal memory access|low on memory|memory on the node|java heap"),
    ),
    _LogRule(
        Reason.DISK_FULL,
        _rx(
            r"no space left on device|\benospc\b|\[errno (?:28|122)\]|disk quota exceeded|"
            r"(?:not enough|insufficient) (?:free )?(?:disk|storage) space|"
            r"\b(?:disk|filesystem|file system) (?:is )?full\b|"
            r"ephemeral[- ]storage|ephemeral local storage|\bdiskpressure\b|"
            r"\bover \d+(?:\.\d+)?% full\b"
        ),
    ),
    _LogRule(
        Reason.CACHE_NOT_WRITABLE,
        _rx(
            r"\[errno (?:30|13)\]|\(os error (?:30|13)\)|read-only file system|"
            r"(?=.*(?:/opt/nim|/model-store|nim_cache_path|\.cache\b|model (?:cache|store)|"
            r"cache (?:dir|directory|path|volume)))"
            r".*(?:permission denied|not writable|cannot write|unable to write|failed to write)"
        ),
        unless=_rx(r"kv[ _]cache"),
    ),
    _LogRule(
        Reason.HOST_MEMORY_EXHAUSTED,
        _rx(
            r"\[errno 12\]|cannot allocate memory|std::bad_alloc|(?<![A-Za-z])MemoryError\b|"
            r"\boom[- ]killer\b|running low on memory|exceeds the memory usage threshold|"
            r":\s+\d+\s+killed\s|^killed$|"
            r"memory_usage_threshold|memory_monitor_refresh_ms"
        ),
    ),
    _LogRule(
        Reason.DISTRIBUTED_INIT_FAILED,
        _rx(
            r"\bnccl\b.{0,80}(?:error|failure|failed|timeout|timed out|abort)|"
            r"\bgloo\b.{0,120}(?:connect|timed out|timeout|refused|error)|"
            r"nccl(?:internal|system|invalid\w*|unhandledcuda|remote)error|"
            r"watchdog caught collective operation timeout|\bc10d\b|distnetworkerror|"
            r"diststoreerror|tcpstore|init_process_group|"
            r"torch\.distributed.{0,80}(?:error|timeout|timed out|failed)|"
            r"failed to connect to gcs|raysystemerror|"
            r"\bgcs\b.{0,60}(?:timeout|timed out|failed|unavailable)|"
            r"(?:rendezvous|rdzv).{0,60}(?:timeout|timed out|failed|error)|"
            r"(?:timed out|timeout) (?:initializing|waiting for|in) .{0,40}"
            r"(?:process group|barrier|workers?|peers?|ranks?)|"
            r"(?:process group|barrier).{0,60}(?:timed out|timeout)|"
            r"placement group.{0,80}(?:not|exceed|fail|timeout|timed out|infeasible)|"
            r"(?:exceeds?|not enough).{0,80}placement group|"
            r"\bmpi error\b|\bmpi_(?:init|abort|comm)\w*.{0,40}(?:error|fail)|mpiutils"
        ),
    ),
    _LogRule(
        Reason.MODEL_SOURCE_UNREACHABLE,
        _rx(
            r"temporary failure in name resolution|name or service not known|"
            r"nodename nor servname|getaddrinfo failed|could not resolve host|\bno such host\b|"
            r"nameresolutionerror|failed to resolve '|"
            r"certificate verify failed|certificate_verify_failed|self[- ]signed certificate|"
            r"unable to get local issuer certificate|proxyerror|tunnel connection failed|"
            r"unable to connect to proxy|we couldn't connect to '?https?://|"
            r"couldn't reach .{0,60}(?:hub|hugging ?face|ngc)|localentrynotfounderror|"
            r"offline ?mode ?is ?enabled|error sending request for url|error trying to connect|"
            r"offline mode.{0,40}(?:is set|set to|enabled|is on)|"
            r"\b451\b.{0,40}unavailable for legal reasons|"
            # the source (or a proxy before it) answers with a server error: requests' wording
            r"\b5\d\d server error: .{0,60} for url: https?://|"
            + _DOWNLOAD_CONTEXT
            + r".*(?:connection (?:refused|reset|timed out|aborted|error)|connecttimeout|"
            r"readtimeout|timed out|network is unreachable|no route to host|connectionerror|"
            r"newconnectionerror|failed to establish a new connection|max retries exceeded)"
        ),
    ),
    _LogRule(
        Reason.MODEL_SOURCE_UNREACHABLE,
        _rx(
            r"connection ?refused|connection (?:reset|timed out|aborted)|"
            r"\[errno (?:101|110|111|113)\]|network is unreachable|no route to host|"
            r"connecttimeout|newconnectionerror|endpointconnectionerror|"
            r"could not connect to the endpoint"
        ),
        within=_rx(_DOWNLOAD_WORDS),
    ),
)
_RUNTIME_REASONS = frozenset(
    {
        Reason.GPU_DRIVER_INCOMPATIBLE,
        Reason.GPU_UNAVAILABLE,
        Reason.DISK_FULL,
        Reason.HOST_MEMORY_EXHAUSTED,
    }
)
"""What a container runtime's refusal to create or start a container can name; anything else it
says is reported as it is (ContainerStartFailed)."""


def _classify_log(
    tail: str, reasons: frozenset[Reason] = frozenset(DIAGNOSIS_REASONS)
) -> tuple[Reason, str] | None:
    """The first rule (of `reasons`) any loud line matches, with the last such line as
    evidence; failing that, the first rule that also reads quiet lines."""
    lines = _log_lines(tail)
    loud = [redact(line.text) for line in lines if not line.quiet]
    quiet = [redact(line.text) for line in lines if line.quiet]
    rules = [rule for rule in _LOG_RULES if rule.reason in reasons]
    for rule, texts in [(r, loud) for r in rules] + [(r, quiet) for r in rules if r.also_quiet]:
        if rule.within and not any(rule.within.search(line) for line in loud):
            continue
        hits = [
            line
            for line in texts
            if rule.matches.search(line) and not (rule.unless and rule.unless.search(line))
        ]
        if hits:
            if rule.instead and any(rule.instead[0].search(line.text) for line in lines):
                return rule.instead[1], hits[-1]
            return rule.reason, hits[-1]
    return None


def _last_lines(tail: str) -> str:
    lines = _log_lines(tail)
    loud = [line.text for line in lines if not line.quiet] or [line.text for line in lines]
    return " | ".join(loud[-CRASH_EVIDENCE_LINES:])


# ---------------------------------------------------------------------------------------------
# Events


def _events_about(
    pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Events whose involvedObject is this pod, newest first."""
    name = _text(_field(pod, "metadata", "name"))
    namespace = _text(_field(pod, "metadata", "namespace"))
    uid = _text(_field(pod, "metadata", "uid"))
    about = []
    for event in _mappings(list(events) if isinstance(events, Sequence) else []):
        involved = _field(event, "involvedObject") or _field(event, "regarding")
        kind = _text(_field(involved, "kind"))
        if kind not in ("", "Pod") or not name or _text(_field(involved, "name")) != name:
            continue
        other_namespace = _text(_field(involved, "namespace"))
        other_uid = _text(_field(involved, "uid"))
        if namespace and other_namespace and other_namespace != namespace:
            continue
        if uid and other_uid and other_uid != uid:
            continue
        about.append(event)
    return sorted(about, key=event_time, reverse=True)


def event_time(event: Mapping[str, Any]) -> datetime:
    """When the event was last seen: the latest of lastTimestamp, series.lastObservedTime (a
    repeated events.k8s.io Event) and eventTime; firstTimestamp or creation when none is set."""
    seen = [
        moment
        for path in (("lastTimestamp",), ("series", "lastObservedTime"), ("eventTime",))
        if (moment := timestamp(_field(event, *path)))
    ]
    if seen:
        return max(seen)
    for path in (("firstTimestamp",), ("metadata", "creationTimestamp")):
        moment = timestamp(_field(event, *path))
        if moment:
            return moment
    return datetime.min.replace(tzinfo=UTC)


def _event_messages(
    events: Iterable[Mapping[str, Any]], reason: str, found: re.Pattern[str] | None = None
) -> list[str]:
    return [
        _text(_field(e, "message") or _field(e, "note"))
        for e in events
        if _text(_field(e, "reason")) == reason
        and (found is None or found.search(_text(_field(e, "message") or _field(e, "note"))))
    ]


# ---------------------------------------------------------------------------------------------
# Hints that use the plan's numbers


def _plan_number(plan: PlanStatus | None, attribute: str) -> float | None:
    return _number(getattr(plan, attribute)) if plan is not None else None


_LOWER_PRECISION = {"bf16": "fp8", "fp16": "fp8", "fp8": "nvfp4 (Blackwell)"}


def _gpu_memory_hint(plan: PlanStatus | None) -> str:
    need = _plan_number(plan, "memory_per_gpu_gib")
    usable = _plan_number(plan, "usable_per_gpu_gib")
    gpus = _plan_number(plan, "gpus_per_replica") or _plan_number(plan, "tensor_parallel_size")
    product = (plan.gpu_product if plan else None) or "GPU"
    precision = ((plan.precision if plan else None) or "").lower()
    max_len = _plan_number(plan, "max_model_length")
    changes = ["lower maxModelLength" + (f" (now {max_len:.0f})" if max_len else "")]
    if precision in _LOWER_PRECISION:
        changes.append(f"use {_LOWER_PRECISION[precision]}")
    changes.append(f"{gpus * 2:.0f} GPUs per replica" if gpus else "more GPUs per replica")
    remedy = ", ".join(changes[:-1]) + f", or {changes[-1]}"
    if need is None or usable is None or gpus is None:
        return f"The model, its context and KV cache need more GPU memory: {remedy}."
    setup = f"{gpus:.0f} x {product} with {usable:.0f} GiB usable"
    if need <= usable:
        return (
            f"The plan expected ~{need:.0f} GiB per GPU to fit on {setup}; something else may hold "
            f"GPU memory (other processes, a shared or MIG GPU). Otherwise: {remedy}."
        )
    return f"Needs ~{need:.0f} GiB per GPU on {setup}: {remedy}."


_UNBOUND_CLAIM = _rx(
    r"unbound (?:immediate )?persistentvolumeclaims|bound to non-existent persistentvolume"
)
"""A claim still being provisioned or bound (the scheduler may see the claim bound before the
volume it is bound to)."""
_MISSING_CLAIM = _rx(r"persistentvolumeclaim \S+ not found")
_SELECTOR_MISMATCH = _rx(r"didn't match (?:pod's )?node (?:affinity|selector)")
_NODE_COUNTS = re.compile(r"\d+/\d+ nodes are available:.*?\.(?=\s|$)")
_NODES_IN_ALL = _rx(r"\b0/(\d+) nodes are available")
_NODES_NOT_SELECTED = _rx(r"\b(\d+) node\(s\) didn't match (?:pod's )?node (?:affinity|selector)")


def _some_nodes_match(message: str) -> bool:
    """Whether the scheduler found nodes with the selected labels (failing for another reason):
    then the other nodes not matching is the selector doing its job, not the cause."""
    everyone, unselected = _NODES_IN_ALL.search(message), _NODES_NOT_SELECTED.search(message)
    return bool(everyone and unselected and int(unselected.group(1)) < int(everyone.group(1)))


_UNSCHEDULABLE_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        _rx(r"insufficient nvidia\.com/gpu"),
        "not enough free GPUs{need}: free some, lower replicas, or add GPU nodes (nodes that "
        "show no nvidia.com/gpu at all lack a running NVIDIA device plugin)",
    ),
    (
        _rx(r"untolerated taint"),
        "GPU nodes carry a taint the pod does not tolerate{taint}: add a matching toleration",
    ),
    (
        _SELECTOR_MISMATCH,
        "no node has the labels the pod selects{selector}: check gpuProduct against the nodes' "
        "nvidia.com/gpu.product labels",
    ),
    (
        _rx(r"insufficient (?:cpu|memory|ephemeral-storage)"),
        "GPU nodes lack the CPU, memory or ephemeral storage the pod requests: lower the requests",
    ),
    (
        _UNBOUND_CLAIM,
        "the cache PersistentVolumeClaim is not bound: check its storage class and size",
    ),
    (_MISSING_CLAIM, "the PersistentVolumeClaim the pod mounts does not exist"),
)


def _unschedulable_causes(message: str) -> list[tuple[re.Pattern[str], str]]:
    """The known causes the scheduler's message names (a selector that leaves out some nodes
    while others match is the selector doing its job, not a cause)."""
    return [
        (found, text)
        for found, text in _UNSCHEDULABLE_CAUSES
        if found.search(message)
        and not (found is _SELECTOR_MISMATCH and _some_nodes_match(message))
    ]


def _unschedulable_hint(
    pod: Mapping[str, Any],
    message: str,
    causes: list[tuple[re.Pattern[str], str]],
    plan: PlanStatus | None,
) -> str:
    gpus = sum(
        _count(_gpu_request(c)) for c in _mappings(_field(pod, "spec", "containers"))
    ) or _plan_number(plan, "gpus_per_replica")
    taint = re.search(r"untolerated taint\(?s?\)?\s*(\{[^}]*\})", message)
    selector = _field(pod, "spec", "nodeSelector")
    details = {
        "need": f" (the pod asks for {gpus:.0f} nvidia.com/gpu)" if gpus else "",
        "taint": f" {taint.group(1)}" if taint else "",
        "selector": (
            " (" + ", ".join(f"{k}={v}" for k, v in selector.items()) + ")"
            if isinstance(selector, Mapping) and selector
            else ""
        ),
    }
    if not causes:
        return "No node satisfies the pod's requirements; the scheduler's message says which."
    joined = "; ".join(text.format(**details) for _, text in causes)
    return joined[0].upper() + joined[1:] + "."


def _gpu_request(container: Mapping[str, Any]) -> int:
    for kind in ("limits", "requests"):
        value = _field(container, "resources", kind, "nvidia.com/gpu")
        if isinstance(value, str) and value.isdigit():
            return int(value)
        if _count(value):
            return _count(value)
    return 0


# ---------------------------------------------------------------------------------------------
# Classification of one pod

_PULL_WAITING = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"})
_PULL_UNAUTHORIZED = _rx(
    r"\b40[123]\b|unauthori[sz]ed|\bdenied\b|forbidden|insufficient_scope|payment required|"
    r"authentication required|failed to authorize|no basic auth credentials|"
    r"failed to fetch (?:anonymous|oauth) token"
)
_PULL_WRONG_PLATFORM = _rx(r"no match for platform|no matching manifest for")
"""The tag exists, but not for the node's OS and architecture: not a missing image."""
_PULL_NOT_FOUND = _rx(
    r"manifest unknown|name unknown|\bnot found\b|repository (?:\S+ )?does not exist|"
    r"no such manifest|not_found|manifest_unknown|name_unknown"
)
_SECRET_MISSING = _rx(r"secrets? \"?[^\s\"]*\"? not found|couldn't find key \S+ in secret")
_PULL_EVENT = _rx(r"pull|image")
_DOCKER_OFFICIAL_IMAGE = re.compile(
    r"(?:docker\.io/)?(?:library/)?[a-z0-9._-]+(?::[\w.-]+)?(?:@sha256:[0-9a-f]+)?$"
)
_KUBELET_SUMMARY = re.compile(r"Error: [A-Za-z]+$")
_DISK = frozenset({Reason.DISK_FULL})
# A container killed by its startup probe, or by a liveness probe that began before it could
# answer (an image's own probes, without a startup probe): it did not start in time.
_STARTUP_PROBE_KILL = _rx(r"failed (?:startup|liveness) probe")

_HINTS = {
    Reason.NGC_AUTHENTICATION_FAILED: (
        "Check the NGC API key in the Secret the deployment references: it must be a current, "
        "valid key (nvapi-...) from ngc.nvidia.com."
    ),
    Reason.NGC_NOT_ENTITLED: (
        "Use a key from an NGC org entitled to this NIM (NVIDIA AI Enterprise or developer "
        "access), or pick a model and tag this key can download."
    ),
    Reason.NGC_KEY_REQUIRED: (
        "Create a Secret holding an NGC API key and reference it from the NemotronDeployment: "
        "Production Branch (-pbN) tags, releases before 2.0.10 and gated models need one."
    ),
    Reason.IMAGE_PULL_UNAUTHORIZED: (
        "The pull secret must be a docker-registry Secret for nvcr.io with username $oauthtoken "
        "and an NGC API key entitled to this image; keyless pulls work only for public images."
    ),
    Reason.IMAGE_NOT_FOUND: (
        "Check the image repository and tag: this version may not be published for this model."
    ),
    Reason.IMAGE_PULL_FAILED: (
        "The node could not fetch the image: check its network, DNS, proxy or registry mirror."
    ),
    Reason.MODEL_PROFILE_NOT_FOUND: (
        "Set the profile to the bare 64-hex profile id or the exact description that "
        "list-model-profiles prints for this image, or leave it unset."
    ),
    Reason.SECRET_NOT_FOUND: (
        "Create the Secret (with the key the pod reads) in the pod's namespace, or fix the "
        "Secret name in the NemotronDeployment."
    ),
    Reason.CONTAINER_CONFIG_ERROR: "Fix the reference or setting the kubelet names in the message.",
    Reason.HOST_MEMORY_EXHAUSTED: (
        "Raise the NIM container's memory limit: loading and converting weights needs host RAM, "
        "separate from GPU memory."
    ),
    Reason.CACHE_NOT_WRITABLE: (
        "The NIM cache volume must be writable by uid 1000 (fsGroup 2000) and large enough for "
        "the model download: check the volume's size, access mode and storage class."
    ),
    Reason.CRASH_LOOP: (
        "The cause is not one this operator recognises: the quoted lines are the container's last "
        "output (kubectl logs --previous shows more)."
    ),
    Reason.STARTUP_TIMEOUT: (
        "Downloading or loading the model takes too long: check the cache volume and the network "
        "to NGC, pre-fill the cache, or allow a longer startup."
    ),
    Reason.GPU_DRIVER_INCOMPATIBLE: (
        "The GPU node's NVIDIA driver is too old for the CUDA version this image is built with: "
        "upgrade the driver on the GPU nodes (with the GPU Operator: its driver version), or "
        "pin an older NIM release that this driver supports."
    ),
    Reason.GPU_UNAVAILABLE: (
        "The container has no usable GPU: check that the NVIDIA driver is loaded on the node "
        "(nvidia-smi there), that the GPU Operator's device plugin and container toolkit pods "
        "are running, that the node's container runtime (or runtimeClassName) is NVIDIA's, and "
        "that the pod requests nvidia.com/gpu."
    ),
    Reason.MODEL_SOURCE_UNREACHABLE: (
        "The pod cannot reach where the model is downloaded from: allow egress to "
        "api.ngc.nvidia.com and its download hosts (or huggingface.co), set HTTPS_PROXY and "
        "NO_PROXY in env when a proxy is required, trust a TLS-inspecting proxy's CA, or "
        "pre-fill the cache for an offline start."
    ),
    Reason.HUGGING_FACE_ACCESS_DENIED: (
        "Check the model id (Hugging Face answers 401 for a repository that does not exist as "
        "for a private one); for a gated or private model, accept its licence on huggingface.co "
        "with the account whose token the pod uses, and give the pod that token as HF_TOKEN "
        "from a Secret."
    ),
    Reason.SHARED_MEMORY_TOO_SMALL: (
        "/dev/shm is too small for NCCL and the engine's workers: mount an emptyDir with "
        "medium: Memory at /dev/shm (several GiB for multi-GPU), or raise its sizeLimit."
    ),
    Reason.DISK_FULL: (
        "The node or the volume ran out of disk space: put the NIM cache on a "
        "PersistentVolumeClaim large enough for the model (cache.size), raise the "
        "ephemeral-storage limit, or free disk on the node (images, old caches)."
    ),
    Reason.NO_PROFILE_FOR_GPU: (
        "This NIM release has no profile for the GPU it found: run it on a GPU the release "
        "supports (list-model-profiles prints them), pick a release or precision that supports "
        "this GPU, or set gpu.product to one it supports."
    ),
    Reason.VOLUME_MOUNT_FAILED: (
        "A volume cannot be attached or mounted: a ReadWriteOnce volume still attached to "
        "another node must be released first (its old pod gone, or use ReadWriteMany), and the "
        "claim, ConfigMap or storage driver the message names must exist and work."
    ),
    Reason.CONTAINER_START_FAILED: (
        "The container runtime could not create or start the container: fix what the quoted "
        "error names (the image reference, command, a mount, the runtime or the node)."
    ),
    Reason.MODEL_NOT_SUPPORTED: (
        "The serving engine does not support this model or setting: use a NIM or engine release "
        "that supports the architecture, a tensor-parallel size that divides the model's "
        "attention heads, or the settings the model card gives."
    ),
    Reason.DISTRIBUTED_INIT_FAILED: (
        "The GPUs or nodes of one replica could not set up their communication (NCCL, "
        "torch.distributed, Ray): check /dev/shm size, that the replica's pods reach each other "
        "(network policies, NCCL_SOCKET_IFNAME, InfiniBand), and that every worker starts."
    ),
}

_LOG_SUMMARIES = {
    Reason.NGC_AUTHENTICATION_FAILED: "NGC rejected the API key while the NIM fetched the model",
    Reason.NGC_NOT_ENTITLED: "The NGC key has no access to this model",
    Reason.NGC_KEY_REQUIRED: "The NIM needs an NGC API key and has none",
    Reason.MODEL_PROFILE_NOT_FOUND: "The NIM does not know the requested model profile",
    Reason.INSUFFICIENT_GPU_MEMORY: "The model does not fit in GPU memory",
    Reason.CACHE_NOT_WRITABLE: "The NIM cannot write its model cache",
    Reason.HOST_MEMORY_EXHAUSTED: "The NIM ran out of host memory",
    Reason.GPU_DRIVER_INCOMPATIBLE: "The GPU driver is too old for this image's CUDA",
    Reason.GPU_UNAVAILABLE: "No GPU is usable in the container",
    Reason.MODEL_SOURCE_UNREACHABLE: "The model download cannot reach its source",
    Reason.HUGGING_FACE_ACCESS_DENIED: "Hugging Face refused access to the model",
    Reason.SHARED_MEMORY_TOO_SMALL: "Shared memory (/dev/shm) is too small",
    Reason.DISK_FULL: "The disk is full",
    Reason.NO_PROFILE_FOR_GPU: "No profile of this release runs on the detected GPU",
    Reason.MODEL_NOT_SUPPORTED: "The engine does not support this model or setting",
    Reason.DISTRIBUTED_INIT_FAILED: "Multi-GPU communication could not be set up",
    Reason.CONTAINER_START_FAILED: "The container's program cannot be started",
    Reason.CONTAINER_CONFIG_ERROR: "The engine rejects a setting",
}


def diagnose(
    pod: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] = (),
    plan: PlanStatus | None = None,
    now: datetime | None = None,
    startup_allowance_seconds: int = DEFAULT_STARTUP_ALLOWANCE_SECONDS,
) -> Diagnosis | None:
    """Why this pod is not serving, or None when there is nothing wrong to report (yet)."""
    if not isinstance(pod, Mapping):
        return None
    name = _text(_field(pod, "metadata", "name"))
    about = _events_about(pod, events)
    moment = now if isinstance(now, datetime) else datetime.now(UTC)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    plan = plan if isinstance(plan, PlanStatus) else None
    found = [
        _pod_failed(pod),
        _unschedulable(pod, about, plan, moment),
        *(
            _container_problem(pod, status, about, plan, moment, startup_allowance_seconds)
            for status in _container_statuses(pod)
        ),
        _creation_problem(pod, about, moment),
    ]
    candidates = [replace(d, pod=name) for d in found if d is not None]
    return min(candidates, key=lambda d: DIAGNOSIS_REASONS.index(d.reason), default=None)


def diagnose_pods(
    pods: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]] = (),
    plan: PlanStatus | None = None,
    now: datetime | None = None,
    startup_allowance_seconds: int = DEFAULT_STARTUP_ALLOWANCE_SECONDS,
) -> Diagnosis | None:
    """The most decisive diagnosis among pods that are not being deleted, nor failed and since
    replaced by a ready pod (an evicted pod stays listed long after; ties: by pod name)."""
    listed = _mappings(list(pods) if isinstance(pods, Sequence) else [])
    live = [
        pod
        for pod in listed
        if not _field(pod, "metadata", "deletionTimestamp") and not _replaced(pod, listed)
    ]
    found = [
        d
        for d in (diagnose(pod, events, plan, now, startup_allowance_seconds) for pod in live)
        if d is not None
    ]
    if not found:
        return None
    chosen = min(found, key=lambda d: (DIAGNOSIS_REASONS.index(d.reason), d.pod, d.container))
    sharing = sum(d.reason == chosen.reason for d in found)
    if len(live) > 1:
        chosen = replace(chosen, message=f"{chosen.message} ({sharing} of {len(live)} pods)")
    return chosen


def _replaced(pod: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> bool:
    """Whether the pod failed as a whole (evicted, not admitted) and a pod created after it
    is ready: what it says is history then."""
    if _text(_field(pod, "status", "phase")) != "Failed":
        return False
    failed_at = timestamp(_field(pod, "metadata", "creationTimestamp"))
    # creation times have whole seconds: a replacement may carry the same one
    return failed_at is not None and any(
        other is not pod
        and (created := timestamp(_field(other, "metadata", "creationTimestamp"))) is not None
        and created >= failed_at
        and _ready(other)
        for other in pods
    )


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = _mappings(_field(pod, "status", "conditions"))
    return any(_field(c, "type") == "Ready" and _field(c, "status") == "True" for c in conditions)


def _container_statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return _mappings(_field(pod, "status", "initContainerStatuses")) + _mappings(
        _field(pod, "status", "containerStatuses")
    )


_EVICTION_CAUSES: tuple[tuple[re.Pattern[str], Reason], ...] = (
    (
        _rx(r"ephemeral[- ]storage|ephemeral local storage|nodefs|imagefs|disk ?pressure|emptydir"),
        Reason.DISK_FULL,
    ),
    (_rx(r"\bmemory\b|memorypressure"), Reason.HOST_MEMORY_EXHAUSTED),
)


_NOT_THE_PODS_FAULT = frozenset({"Terminated", "Shutdown", "NodeShutdown", "Preempting"})
"""Reasons a pod fails whole because its node goes away or preempts it: its replacement runs."""


def _pod_failed(pod: Mapping[str, Any]) -> Diagnosis | None:
    """A pod the kubelet failed as a whole (status.reason): evicted for disk or memory, or not
    admitted (the node's GPUs could not be allocated, another resource or rule)."""
    why = _text(_field(pod, "status", "reason"))
    message = _text(_field(pod, "status", "message"))
    if why == "Evicted":
        reason = next((r for found, r in _EVICTION_CAUSES if found.search(message)), None)
        if reason is None:
            return None
        return _diagnosed(reason, f"The pod was evicted: {_quote(message)}")
    if _text(_field(pod, "status", "phase")) != "Failed" or not why or why in _NOT_THE_PODS_FAULT:
        return None
    classified = _classify_log(f"{why}: {message}", _RUNTIME_REASONS)
    return _diagnosed(
        classified[0] if classified else Reason.CONTAINER_START_FAILED,
        f"The kubelet failed the pod ({why}): {_quote(message or why)}",
    )


def _scheduling_messages(
    pod: Mapping[str, Any], about: list[Mapping[str, Any]]
) -> list[str] | None:
    """Why the scheduler cannot place the pod, freshest first: the pod's own PodScheduled
    condition (the scheduler rewrites it on every attempt), then the FailedScheduling Events,
    newest first (an Event's text may be its first attempt's: a repeated Event keeps its first
    message and only counts on). None when the pod is scheduled or not yet tried."""
    if _text(_field(pod, "spec", "nodeName")):
        return None
    conditions = _mappings(_field(pod, "status", "conditions"))
    scheduled = next((c for c in conditions if _field(c, "type") == "PodScheduled"), None)
    if scheduled is not None and _field(scheduled, "status") == "True":
        return None
    unschedulable = _field(scheduled, "reason") == "Unschedulable"
    condition = _text(_field(scheduled, "message")) if unschedulable else ""
    found = [m for m in [condition, *_event_messages(about, "FailedScheduling")] if m]
    if found:
        return found
    return [""] if unschedulable else None


def _waits_for_its_claim(message: str) -> bool:
    return [found for found, _ in _unschedulable_causes(message)] == [_UNBOUND_CLAIM]


def _unschedulable(
    pod: Mapping[str, Any], about: list[Mapping[str, Any]], plan: PlanStatus | None, now: datetime
) -> Diagnosis | None:
    messages = _scheduling_messages(pod, about)
    if messages is None:
        return None
    # A new pod's cache volume being provisioned is not a failure yet: then the freshest text
    # that names another cause speaks, if any does.
    young = _age_seconds(pod, now) < CLAIM_BINDING_GRACE_SECONDS
    message = next((m for m in messages if not (young and _waits_for_its_claim(m))), None)
    if message is None:
        return None
    causes = _unschedulable_causes(message)
    # "0/9 nodes are available: <why, per node>." then, in newer schedulers, DRA and
    # preemption notes ("no new claims to deallocate, preemption: ...") that explain nothing
    counts = _NODE_COUNTS.search(message)
    first_sentence = (
        counts.group(0) if counts else re.split(r"\s+preemption:", message, maxsplit=1)[0]
    )
    if [found for found, _ in causes] == [_MISSING_CLAIM]:
        return _diagnosed(
            Reason.VOLUME_MOUNT_FAILED,
            f"The pod's volume claim does not exist: {_quote(first_sentence)}",
        )
    return Diagnosis(
        Reason.UNSCHEDULABLE,
        f"No node can run the pod: {_quote(first_sentence or 'Unschedulable')}",
        _unschedulable_hint(pod, message, causes, plan),
    )


def _age_seconds(pod: Mapping[str, Any], now: datetime) -> float:
    created = timestamp(_field(pod, "metadata", "creationTimestamp"))
    return (now - created).total_seconds() if created else math.inf


_VOLUME_EVENTS = ("FailedMount", "FailedAttachVolume", "FailedMapVolume")
_KUBELET_CACHE_RACE = _rx(r"\bnot registered\b")
"""'object "ns"/"kube-root-ca.crt" not registered': the kubelet's own cache catching up."""
_SANDBOX_EVENT = "FailedCreatePodSandBox"
_START_PROGRESS = ("Pulling", "Pulled", "Created", "Started")
"""The kubelet's Normal Events of the steps after the volumes and the sandbox."""


def _creation_problem(
    pod: Mapping[str, Any], about: list[Mapping[str, Any]], now: datetime
) -> Diagnosis | None:
    """A volume that cannot be attached or mounted, or a pod sandbox the runtime cannot create,
    keeps the pod in ContainerCreating with no other sign than the Events about it: those still
    posted (an old one is a failure retried away) and not followed by a later step of the
    start (the image being pulled: the failure was overcome)."""
    if _text(_field(pod, "status", "phase")) not in ("", "Pending"):
        return None
    if any(_field(s, "state", "running") for s in _container_statuses(pod)):
        return None
    progress = max(
        (event_time(e) for e in about if _field(e, "reason") in _START_PROGRESS),
        default=None,
    )
    current = [
        e
        for e in about
        if (now - event_time(e)).total_seconds() <= CREATION_RETRY_SECONDS
        and (progress is None or event_time(e) > progress)
        and not _KUBELET_CACHE_RACE.search(_text(_field(e, "message")))
    ]
    volume = [
        _text(_field(e, "message") or _field(e, "note"))
        for e in current
        if _field(e, "reason") in _VOLUME_EVENTS
    ]
    missing = next((m for m in volume if _SECRET_MISSING.search(m)), None)
    if missing:
        return _diagnosed(Reason.SECRET_NOT_FOUND, f"A volume cannot be mounted: {_quote(missing)}")
    if volume:
        classified = _classify_log(volume[0], _RUNTIME_REASONS)
        if classified:
            return _diagnosed(classified[0], f"A volume cannot be mounted: {_quote(volume[0])}")
        return _diagnosed(
            Reason.VOLUME_MOUNT_FAILED,
            f"A volume cannot be attached or mounted: {_quote(volume[0])}",
        )
    sandbox = _event_messages(current, _SANDBOX_EVENT)
    if not sandbox:
        return None
    classified = _classify_log(sandbox[0], _RUNTIME_REASONS)
    return _diagnosed(
        classified[0] if classified else Reason.CONTAINER_START_FAILED,
        f"The pod's sandbox cannot be created: {_quote(sandbox[0], keep_end=True)}",
    )


_RUNTIME_REFUSALS = frozenset({"StartError", "ContainerCannotRun"})
"""Termination reasons of a container the runtime never started (containerd, dockershim)."""
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})
"""Waiting reasons of a container on its way to start (a slow image pull waits in
ContainerCreating); any other waiting reason but a crash loop's is a failure to start."""


def _container_problem(
    pod: Mapping[str, Any],
    status: Mapping[str, Any],
    about: list[Mapping[str, Any]],
    plan: PlanStatus | None,
    now: datetime,
    allowance: int,
) -> Diagnosis | None:
    container = _text(_field(status, "name"))
    waiting = _text(_field(status, "state", "waiting", "reason"))
    waiting_message = _text(_field(status, "state", "waiting", "message"))
    found: Diagnosis | None
    if waiting in _PULL_WAITING:
        found = _pull_problem(pod, status, waiting, waiting_message, about)
    elif waiting == "CreateContainerConfigError":
        found = _config_problem(waiting_message or _first(_event_messages(about, "Failed")))
    elif waiting and waiting not in _STARTING and waiting != "CrashLoopBackOff":
        found = _start_problem(status, waiting, waiting_message, about)
    elif _field(status, "ready") is True:
        found = None
    else:
        found = _termination_problem(pod, status, waiting, about, plan) or _startup_timeout(
            status, now, allowance
        )
    return replace(found, container=container) if found else None


def _first(messages: list[str]) -> str:
    return messages[0] if messages else ""


def _runtime_errors(about: list[Mapping[str, Any]]) -> list[str]:
    """The kubelet's Failed Events that quote the runtime or registry, newest first (not its
    "Error: ErrImagePull"-style summaries, which say nothing more than the container state)."""
    return [m for m in _event_messages(about, "Failed") if not _KUBELET_SUMMARY.match(m)]


def _start_problem(
    status: Mapping[str, Any], why: str, message: str, about: list[Mapping[str, Any]]
) -> Diagnosis:
    """The runtime could not create or start the container (CreateContainerError,
    RunContainerError, StartError, InvalidImageName, ...): a GPU, driver or disk cause when its
    error names one, else the error as it is."""
    text = message or _first(_runtime_errors(about)) or why
    classified = _classify_log(text, _RUNTIME_REASONS)
    if classified:
        reason, line = classified  # runtimes chain causes: the last one is the root
        return _diagnosed(
            reason, f"The container cannot start ({why}): {_quote(line, keep_end=True)}"
        )
    if why == "InvalidImageName":
        image = _text(_field(status, "image")) or "the image"
        return _diagnosed(
            Reason.CONTAINER_START_FAILED,
            f"The image reference {image} is not valid: {_quote(text)}",
        )
    return _diagnosed(
        Reason.CONTAINER_START_FAILED,
        f"The container cannot start ({why}): {_quote(text, keep_end=True)}",
    )


def _spec_image(pod: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    """The image the pod's spec gives the container (a status may not name it before a pull)."""
    return _text(_field(_container_spec(pod, status), "image"))


def _pull_problem(
    pod: Mapping[str, Any],
    status: Mapping[str, Any],
    waiting: str,
    waiting_message: str,
    about: list[Mapping[str, Any]],
) -> Diagnosis:
    image = _text(_field(status, "image")) or _spec_image(pod, status) or "the image"
    pull_errors = [m for m in _runtime_errors(about) if _PULL_EVENT.search(m)]
    # The newest text that says why (the current state's, then the newest Event's): an older
    # attempt's refusal must not outlive it. Within one text, a refusal wins over "not found"
    # ("repository does not exist or may require authorization"), except for a Docker Hub
    # official image ("name" alone): those are all public, so a refusal means there is none.
    evidence = next(
        (
            m
            for m in [waiting_message, *pull_errors]
            if (_PULL_UNAUTHORIZED.search(m) or _PULL_NOT_FOUND.search(m))
            and not _PULL_WRONG_PLATFORM.search(m)
        ),
        None,
    )
    if (
        evidence
        and _PULL_UNAUTHORIZED.search(evidence)
        and not (_DOCKER_OFFICIAL_IMAGE.match(image) and _PULL_NOT_FOUND.search(evidence))
    ):
        missing_secret = _event_messages(about, "FailedToRetrieveImagePullSecret")
        if missing_secret:
            return _diagnosed(
                Reason.SECRET_NOT_FOUND,
                f"The image pull secret does not exist: {_quote(missing_secret[0])}",
            )
        return _diagnosed(
            Reason.IMAGE_PULL_UNAUTHORIZED,
            f"The registry refused to pull {image}: {_quote(evidence, keep_end=True)}",
        )
    if evidence:
        return _diagnosed(
            Reason.IMAGE_NOT_FOUND,
            f"The image {image} does not exist: {_quote(evidence, keep_end=True)}",
        )
    described = next((m for m in [*pull_errors, waiting_message] if m), waiting)
    disk_full = next(
        (m for m in [waiting_message, *pull_errors] if _classify_log(m, _DISK)),
        None,
    )
    if disk_full:
        return _diagnosed(
            Reason.DISK_FULL,
            f"The node has no disk space left for {image}: {_quote(disk_full, keep_end=True)}",
        )
    return _diagnosed(
        Reason.IMAGE_PULL_FAILED,
        f"Pulling {image} failed: {_quote(described, keep_end=True)}",
    )


def _config_problem(message: str) -> Diagnosis:
    if _SECRET_MISSING.search(message):
        return _diagnosed(
            Reason.SECRET_NOT_FOUND,
            f"The container cannot start: {_quote(message)}",
        )
    return _diagnosed(
        Reason.CONTAINER_CONFIG_ERROR,
        f"The container cannot be created: {_quote(message or 'CreateContainerConfigError')}",
    )


def _termination_problem(
    pod: Mapping[str, Any],
    status: Mapping[str, Any],
    waiting: str,
    about: list[Mapping[str, Any]],
    plan: PlanStatus | None,
) -> Diagnosis | None:
    """The cause of the container's current or last exit, if it exited in trouble."""
    terminated = _field(status, "state", "terminated")
    if not isinstance(terminated, Mapping):
        terminated = _field(status, "lastState", "terminated")
    if not isinstance(terminated, Mapping):
        return None
    restarts = _count(_field(status, "restartCount"))
    exit_code = _field(terminated, "exitCode")
    exited = f"exit code {exit_code}" if isinstance(exit_code, int) else "no exit code"
    if exit_code == 0 and waiting != "CrashLoopBackOff" and not restarts:
        return None
    if exit_code == 0 and _field(status, "state", "running"):
        return None  # it ended cleanly and runs again
    times = f"{restarts} restart{'s' if restarts != 1 else ''}"
    why = _text(_field(terminated, "reason"))
    if why in _RUNTIME_REFUSALS:
        return _start_problem(status, why, _text(_field(terminated, "message")), about)
    if why == "OOMKilled":
        return _diagnosed(
            Reason.HOST_MEMORY_EXHAUSTED,
            f"The container exceeded its memory limit and was OOMKilled ({exited}, {times}).",
        )
    tail = _text(_field(terminated, "message"))
    classified = _classify_log(tail)
    if classified:
        reason, line = classified
        if reason in (Reason.NGC_AUTHENTICATION_FAILED, Reason.NGC_NOT_ENTITLED) and not _has_key(
            pod, status
        ):
            reason = Reason.NGC_KEY_REQUIRED
        hint = (
            _gpu_memory_hint(plan) if reason is Reason.INSUFFICIENT_GPU_MEMORY else _HINTS[reason]
        )
        return Diagnosis(reason, f"{_LOG_SUMMARIES[reason]}: {_quote(line)}", hint)
    if exit_code == SIGBUS_EXIT_CODE:
        return _diagnosed(
            Reason.SHARED_MEMORY_TOO_SMALL,
            f"The container was killed by SIGBUS ({exited}, {times}), as when a process maps "
            f"more shared memory than /dev/shm holds: {_quote(_last_lines(tail) or exited)}",
        )
    probe_kills = _event_messages(about, "Killing", _STARTUP_PROBE_KILL)
    if probe_kills and all(line.quiet for line in _log_lines(tail)):  # killed while loading
        return _diagnosed(
            Reason.STARTUP_TIMEOUT,
            f"The kubelet restarted the container after its startup probe ran out ({times}): "
            f"{_quote(probe_kills[0])}",
        )
    evidence = _last_lines(tail) or _first(_event_messages(about, "Killing")) or exited
    return _diagnosed(
        Reason.CRASH_LOOP,
        f"The container keeps exiting ({exited}, {times}); its last output: {_quote(evidence)}",
    )


def _container_spec(pod: Mapping[str, Any], status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    name = _field(status, "name")
    specs = _mappings(_field(pod, "spec", "containers")) + _mappings(
        _field(pod, "spec", "initContainers")
    )
    return next((c for c in specs if _field(c, "name") == name), None)


def _has_key(pod: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether the container may have an NGC key (True when envFrom makes it unknowable)."""
    spec = _container_spec(pod, status)
    if spec is None or _mappings(_field(spec, "envFrom")):
        return True
    names = {_field(env, "name") for env in _mappings(_field(spec, "env"))}
    return bool(names & {"NGC_API_KEY", "NGC_CLI_API_KEY"})


def _startup_timeout(status: Mapping[str, Any], now: datetime, allowance: int) -> Diagnosis | None:
    started = timestamp(_field(status, "state", "running", "startedAt"))
    if started is None:
        return None
    if (now - started).total_seconds() <= allowance:
        return None
    # The start time, not the time waited, so that the message stays the same while it waits.
    return _diagnosed(
        Reason.STARTUP_TIMEOUT,
        f"The container started at {started.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ} and is not ready "
        f"after the startup allowance of {_duration(allowance)}.",
    )


def _duration(seconds: int) -> str:
    """``20 min``, ``90 s``, ``1 h 30 min``: whole units, never ``0.05 min``."""
    if seconds % 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h" + (f" {minutes} min" if minutes else "")


# ---------------------------------------------------------------------------------------------
# Input documents and output


def pods_and_events(document: object) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Pods and Events from a Pod, a PodList or a List (``kubectl get pod,events -o json``)."""
    items = _mappings(_field(document, "items")) if _field(document, "items") else [document]
    pods, events = [], []
    for item in _mappings(items):
        kind = _field(item, "kind")
        if kind == "Event":
            events.append(item)
        elif kind in ("Pod", None):
            pods.append(item)
    return pods, events


def format_diagnosis(diagnosis: Diagnosis | None, output: str = "text") -> str:
    """The diagnosis as ``text`` for people or ``json`` (reason, message, hint, pod, container)."""
    if output not in OUTPUT_FORMATS:
        raise ValueError(f"output must be one of {', '.join(OUTPUT_FORMATS)}, not {output!r}")
    if output == "json":
        fields = (
            {
                "reason": str(diagnosis.reason),
                "message": diagnosis.message,
                "hint": diagnosis.hint,
                "pod": diagnosis.pod,
                "container": diagnosis.container,
            }
            if diagnosis
            else {"reason": None, "message": "No problem found.", "hint": ""}
        )
        return json.dumps(fields, indent=2)
    if diagnosis is None:
        return "No problem found."
    where = "/".join(part for part in (diagnosis.pod, diagnosis.container) if part)
    title = f"{diagnosis.reason}" + (f" ({where})" if where else "")
    return f"{title}\n  {diagnosis.message}\n  Hint: {diagnosis.hint}"
