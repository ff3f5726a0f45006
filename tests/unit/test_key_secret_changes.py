"""A key Secret watch ends when its namespace no longer needs it (key_secrets.KeySecretWatches).
Which NemotronDeployments a change converges: test_controller.py."""

from __future__ import annotations

import time

from nemotron_operator.shell.key_secrets import KeySecretWatches


def test_a_namespace_whose_deployments_no_longer_read_a_key_is_not_watched() -> None:
    changes: list[tuple[str, str | None]] = []
    watches = KeySecretWatches(lambda ns, secret: changes.append((ns, secret)), lambda ns: False)
    watches.follow("team-a")
    deadline = time.monotonic() + 5
    while watches.followed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert watches.followed == set()  # the watch ended before asking the API server anything
    assert changes == []
