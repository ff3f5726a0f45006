"""A key Secret watch ends when its namespace no longer needs it (key_secrets.KeySecretWatches),
and costs the API server one request every 5-10 minutes while it runs. Which NemotronDeployments
a change converges: test_controller.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from nemotron_operator.shell.key_secrets import SECRETS, KeySecretWatches
from nemotron_operator.shell.namespace_watches import NamespaceWatches


def test_a_namespace_whose_deployments_no_longer_read_a_key_is_not_watched() -> None:
    changes: list[tuple[str, str | None]] = []
    watches = KeySecretWatches(lambda ns, secret: changes.append((ns, secret)), lambda ns: False)
    watches.follow("team-a")
    deadline = time.monotonic() + 5
    while watches.followed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watches.followed == set()  # the watch ended before asking the API server anything
    assert changes == []


def test_key_secret_watches_are_renewed_every_five_to_ten_minutes_and_not_in_step() -> None:
    asked: list[tuple[int, float]] = []  # (the watch's timeoutSeconds, the client's read timeout)

    class Stream:  # a watch the API server ends without an event
        def __iter__(self) -> Iterator[bytes]:
            return iter(())

        def release_conn(self) -> None:
            pass

    def request(namespace: str, query: dict[str, str], suffix: str, timeout: Any) -> Stream:
        asked.append((int(query["timeoutSeconds"]), timeout[1]))
        return Stream()

    watches = NamespaceWatches(SECRETS, KeySecretWatches(lambda ns, s: None, lambda ns: True))
    watches._request = request  # type: ignore[method-assign]
    for namespace in range(50):
        list(watches._events(f"team-{namespace}", "1"))

    lengths = [seconds for seconds, _ in asked]
    assert min(lengths) >= 300 and max(lengths) <= 600
    assert max(lengths) - min(lengths) > 150  # 50 namespaces' watches are not renewed together
    assert all(read > seconds for seconds, read in asked)  # the server ends it, not the client
