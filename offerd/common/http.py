"""The HTTP side of a daemon: a real WSGI server on its own threads.

Views never touch actor state; they read the snapshot the actor publishes and
post commands through the actor's mailbox (DESIGN.md §4).
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from waitress.server import create_server

log = logging.getLogger(__name__)

class HttpServer:
    """Serve a WSGI app on host:port (0 picks a free port) until :meth:`close`."""

    def __init__(self, app, host: str, port: int, threads: int = 8, name: str = "http"):
        self._server = create_server(
            app, host=host, port=port, threads=threads, ident="offerd",
            clear_untrusted_proxy_headers=True, channel_timeout=300,
            max_request_body_size=16 * 1024 * 1024,
        )
        self.port = int(self._server.effective_port)
        self.host = host
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> "HttpServer":
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._server.run()
        except OSError:
            pass  # closed under our feet during shutdown

    def close(self) -> None:
        self._server.close()

def get_json(url: str, timeout: float = 5.0) -> Any:
    """GET a JSON document; raises OSError (urllib's errors) on failure."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))

def post_form(url: str, fields: dict[str, str], timeout: float = 10.0) -> tuple[int, str]:
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")

