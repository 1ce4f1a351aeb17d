"""/ui/: the static page (ui/ beside this package), served as is: no build, no CDN."""

from __future__ import annotations

import os

from flask import Blueprint, send_from_directory

UI_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ui")

bp = Blueprint("ui", __name__)


@bp.get("/ui/", defaults={"name": "index.html"})
@bp.get("/ui/<path:name>")
def ui(name: str):
    # send_from_directory refuses paths outside UI_DIR (404), so `..` cannot escape.
    response = send_from_directory(UI_DIR, name, max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response
