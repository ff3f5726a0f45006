"""The CredentialsValid fact of a NemotronDeployment: may its pods pull and download their NIM?

Asks the registry (ngc.py) with the key the spec names, or anonymously for keyless images, and
keeps each answer for a while (`recheck_seconds`): a key changed in its Secret is seen at once
(the key Secret watch converges its readers, and a new key is a new question), a key revoked at
NGC within about `recheck_seconds`.

One answer serves every NemotronDeployment that asks the same question (thousands may share one
image and key), but they do not come back together to ask it again: `check` gives each its own
moment in the period (`recheck_phase`, stable per object), so the rechecks of N objects spread
evenly over `recheck_seconds` instead of N converges at once. The first to come back once the
answer is `recheck_seconds` old asks the registry again; the others use that answer. When it
differs from the one before, `answer_changed` is told the image at once, so the objects using it
learn it then, not each at its own moment.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cachetools import TTLCache

from nemotron_operator.api import names
from nemotron_operator.api.types import NemotronDeploymentSpec, PlanStatus
from nemotron_operator.core.conditions import Condition
from nemotron_operator.shell import metrics, ngc

Why = names.StatusReason
CACHE_ENTRIES = 65536


class SecretReader(Protocol):
    def __call__(self, namespace: str, name: str, key: str) -> tuple[str | None, str]: ...


class SecretVersions(Protocol):
    def __call__(self, namespace: str, name: str) -> str | None: ...


class Registry(Protocol):
    """The registry questions (ngc.check_image_credentials, ngc.check_anonymous_pull)."""

    def image(self, image: str, key: ngc.ApiKey) -> ngc.CredentialCheck: ...

    def anonymous(self, repository: str, tag: str) -> ngc.CredentialCheck: ...


@dataclass(frozen=True)
class NgcRegistry:
    """The real registry, at `registry_url` when given (a mirror), else the image's own."""

    registry_url: str | None = None

    def image(self, image: str, key: ngc.ApiKey) -> ngc.CredentialCheck:
        return ngc.check_image_credentials(image, key, self.registry_url)

    def anonymous(self, repository: str, tag: str) -> ngc.CredentialCheck:
        return ngc.check_anonymous_pull(repository, self.registry_url, tag=tag)


@dataclass(frozen=True)
class Answer:
    condition: Condition
    recheck_in: float | None  # seconds until the registry is asked again (None: never)


class Credentials:
    def __init__(
        self,
        registry: Registry,
        read_secret: SecretReader,
        secret_version: SecretVersions,
        recheck_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._read_secret = read_secret
        self._secret_version = secret_version
        self._recheck = recheck_seconds
        self._clock = clock
        # kept two periods: an answer asked again is compared with the one before (`_asked`)
        self._answers: TTLCache[tuple[Any, ...], tuple[float, ngc.CredentialCheck]] = TTLCache(
            CACHE_ENTRIES, 2 * recheck_seconds, timer=clock
        )
        self._guard = threading.Lock()
        self.answer_changed: Callable[[str], None] = lambda image: None

    def check(
        self, namespace: str, name: str, spec: NemotronDeploymentSpec, plan: PlanStatus
    ) -> Answer:
        """The CredentialsValid fact of NemotronDeployment `name` (False stops pods from being
        created: they could not start)."""
        reader = (namespace, name)

        def fact(valid: bool | None, reason: str, message: str) -> Condition:
            return Condition(names.ConditionType.CREDENTIALS_VALID, valid, reason, message)

        if spec.ngc.offline:
            message = "air-gapped: the NIM loads its model from the cache and needs no key"
            return Answer(fact(True, Why.OFFLINE, message), None)
        secret = spec.ngc.api_key_secret
        image = str(plan.image)
        reference = ngc.ImageReference.parse(image)
        if secret is None:
            if plan.key_required:
                return Answer(
                    fact(
                        False,
                        names.NimReason.NGC_KEY_REQUIRED,
                        f"{plan.key_required_reason or 'this image needs an NGC API key'}: "
                        "create a Secret with your key (kubectl create secret generic ngc-api "
                        "--from-literal=NGC_API_KEY=<key>) and set spec.ngc.apiKeySecret.name",
                    ),
                    None,
                )
            asked, check = self._asked(
                ("anonymous", reference.repository, reference.tag),
                lambda: self._registry.anonymous(reference.repository, reference.tag),
                image,
            )
            return self._answer(fact(check.valid, check.reason, check.message), asked, reader)
        # The Secret as the key Secret watch last saw it: an answer for that very version needs
        # no read (without it, every converge of an object being created read the Secret again).
        version = self._secret_version(namespace, secret.name)
        by_version = ("secret", namespace, secret.name, secret.key, version, image)
        known = self._fresh(by_version) if version is not None else None
        if known is not None:
            asked, check = known
            return self._answer(fact(check.valid, check.reason, check.message), asked, reader)
        value, why_not = self._read_secret(namespace, secret.name, secret.key)
        if value is None:
            return Answer(
                fact(
                    False,
                    names.NimReason.SECRET_NOT_FOUND,
                    f"{why_not}: create it, or fix spec.ngc.apiKeySecret",
                ),
                None,
            )
        asked, check = self._asked(
            ("key", image, hash(value)),
            lambda: self._registry.image(image, ngc.ApiKey(value)),
            image,
            also_under=by_version if version is not None else None,
        )
        return self._answer(fact(check.valid, check.reason, check.message), asked, reader)

    def _answer(self, condition: Condition, asked: float, reader: tuple[str, str]) -> Answer:
        """`condition`, due again at the reader's own moment once the answer is due (`asked`
        `recheck_seconds` ago): within one period after that."""
        due = asked + self._recheck
        due += (self.recheck_phase(reader) - due) % self._recheck
        return Answer(condition, max(due - self._clock(), 0.0))

    def recheck_phase(self, reader: tuple[str, str]) -> float:
        """The moment of the period (seconds, [0, recheck_seconds)) at which NemotronDeployment
        `reader` (namespace, name) comes back to have its credentials checked: stable, and
        spread evenly over the period by a hash of its name."""
        spread = zlib.crc32("/".join(reader).encode()) / 2**32
        return spread * self._recheck

    def _fresh(self, key: tuple[Any, ...]) -> tuple[float, ngc.CredentialCheck] | None:
        with self._guard:
            known = self._answers.get(key)
        if known is None or self._clock() - known[0] >= self._recheck:
            return None
        return known

    def _asked(
        self,
        key: tuple[Any, ...],
        ask: Callable[[], ngc.CredentialCheck],
        image: str,
        also_under: tuple[Any, ...] | None = None,
    ) -> tuple[float, ngc.CredentialCheck]:
        """(when asked, the registry's answer about `image`), asked again once `recheck_seconds`
        passed; kept under `key` and, when given, `also_under`, with the same age."""
        known = self._fresh(key)
        if known is None:
            # outside the lock: the registry may be slow
            known = (self._clock(), metrics.ngc_checked(ask()))
            with self._guard:
                before = self._answers.get(key)
                self._answers[key] = known
            if before is not None and _verdict(before[1]) != _verdict(known[1]):
                self.answer_changed(image)
        if also_under is not None:
            with self._guard:
                self._answers[also_under] = known
        return known


def _verdict(check: ngc.CredentialCheck) -> tuple[bool | None, str]:
    return check.valid, check.reason
