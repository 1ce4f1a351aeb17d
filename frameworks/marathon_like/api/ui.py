"""/ui/: the static page (ui/ beside this package), served as is: no build, no CDN."""

from __future__ import annotations

import os

from flask import Blueprint, redirect, request, send_from_directory

UI_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ui")

bp = Blueprint("ui", __name__)


@bp.get("/ui/", defaults={"name": "index.html"})
@bp.get("/ui/<path:name>")
def ui(name: str):
    if request.path == "/ui":
        # The page loads app.js and style.css relative to itself: they resolve only under
        # /ui/, so the bare path redirects there (302, as Marathon does; `/` does too).
        return redirect("/ui/", 302)
    # send_from_directory refuses paths outside UI_DIR (404), so `..` cannot escape.
    response = send_from_directory(UI_DIR, name, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response
