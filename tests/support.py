"""The two helpers every suite needs: polling for a condition and finding a free port.

A plain module, not a conftest, so that tests, fakes and cluster helpers import
them the same way (`from tests.support import free_port, wait_for`).
"""

from __future__ import annotations

import socket
import time


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, message: str | None = None):
    """Poll `predicate()` until it returns something truthy and return that value.

    On timeout the test fails with an AssertionError naming what was awaited:
    `message`, else the predicate's name, else where the lambda was written,
    with the last value it returned. Exceptions from the predicate propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or _describe(predicate)} "
                                 f"(last value: {_short(value)})")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on at `host` right now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def _describe(predicate) -> str:
    name = getattr(predicate, "__name__", None)
    if name and name != "<lambda>":
        return name
    code = getattr(predicate, "__code__", None)
    if code is not None:
        return f"the condition at {code.co_filename}:{code.co_firstlineno}"
    return repr(predicate)


def _short(value, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
