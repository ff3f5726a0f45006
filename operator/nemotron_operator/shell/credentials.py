"""The CredentialsValid fact of a NemotronDeployment: may its pods pull and download their NIM?

Asks the registry (ngc.py) with the key the spec names, or anonymously for keyless images, and
keeps each answer for a while (`recheck_seconds`): a key revoked at NGC is seen at the next
check, a key changed in its Secret at once (the key Secret watch converges its readers, and a
new key is a new question). `check` says when its answer is due to be asked again, so the
controller can come back at exactly that moment.
"""

from __future__ import annotations

import threading
import time
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
        self._answers: TTLCache[tuple[Any, ...], tuple[float, ngc.CredentialCheck]] = TTLCache(
            CACHE_ENTRIES, recheck_seconds, timer=clock
        )
        self._guard = threading.Lock()

    def check(self, namespace: str, spec: NemotronDeploymentSpec, plan: PlanStatus) -> Answer:
        """The CredentialsValid fact (False stops pods from being created: they could not
        start)."""

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
            )
            return self._answer(fact(check.valid, check.reason, check.message), asked)
        # The Secret as the key Secret watch last saw it: an answer for that very version needs
        # no read (without it, every converge of an object being created read the Secret again).
        version = self._secret_version(namespace, secret.name)
        by_version = ("secret", namespace, secret.name, secret.key, version, image)
        known = self._fresh(by_version) if version is not None else None
        if known is not None:
            asked, check = known
            return self._answer(fact(check.valid, check.reason, check.message), asked)
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
            also_under=by_version if version is not None else None,
        )
        return self._answer(fact(check.valid, check.reason, check.message), asked)

    def _answer(self, condition: Condition, asked: float) -> Answer:
        return Answer(condition, max(asked + self._recheck - self._clock(), 0.0))

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
        also_under: tuple[Any, ...] | None = None,
    ) -> tuple[float, ngc.CredentialCheck]:
        """(when asked, the registry's answer), asked again once `recheck_seconds` passed; kept
        under `key` and, when given, `also_under`, with the same age."""
        known = self._fresh(key)
        if known is None:
            # outside the lock: the registry may be slow
            known = (self._clock(), metrics.ngc_checked(ask()))
            with self._guard:
                self._answers[key] = known
        if also_under is not None:
            with self._guard:
                self._answers[also_under] = known
        return known
