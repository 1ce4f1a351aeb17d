"""Paths as Mesos' HTTP server reads them: split on "/", empty segments dropped.

``/master/frameworks/`` and ``//master//frameworks`` both name
``/master/frameworks`` in Mesos, and clients depend on it (the Mesos CLI asks
for ``/master/frameworks/``). Flask would answer 404. :class:`LenientPaths`
sits in front of a Flask app and, only for a path no route matches, retries it
with the empty segments dropped; a path that matches as sent (``/ui/``) is left
alone, and so is anything the tidied path does not match either.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import RequestRedirect


class LenientPaths:
    def __init__(self, app: Flask, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if len(path) > 1 and (path.endswith("/") or "//" in path):
            tidy = self._tidy(path, environ.get("REQUEST_METHOD", "GET"))
            if tidy is not None:
                environ = {**environ, "PATH_INFO": tidy}
        return self.wsgi_app(environ, start_response)

    def _tidy(self, path: str, method: str) -> str | None:
        adapter = self.app.url_map.bind("offerd")
        try:
            adapter.match(path, method=method)
            return None
        except (NotFound, RequestRedirect):
            pass              # (werkzeug would redirect a doubled slash: answered here instead)
        except HTTPException:
            return None       # matched, with another method: as sent
        tidy = "/" + "/".join(part for part in path.split("/") if part)
        try:
            adapter.match(tidy, method=method)
        except NotFound:
            return None
        except HTTPException:
            pass              # the tidied path exists (its method may be wrong): say so there
        return tidy


def install(app: Flask) -> Flask:
    app.wsgi_app = LenientPaths(app, app.wsgi_app)
    return app
