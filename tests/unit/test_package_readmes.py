"""Every module of a package is named in that package's README, so a reader
finds what each file holds and a new module cannot be added without a line."""

from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# package directory -> (its README, how the README names its files)
PACKAGES = {
    "offerd/master": ("offerd/master/README.md", ""),
    "offerd/slave": ("offerd/slave/README.md", ""),
    "offerd/slave/containerizer": ("offerd/slave/README.md", "containerizer/"),
    "offerd/allocator": ("offerd/allocator/README.md", ""),
    "offerd/framework_sdk": ("offerd/framework_sdk/README.md", ""),
    "webui": ("webui/README.md", ""),
}


def _modules(package: str) -> list[str]:
    """Its source files: .py (and C) modules; for the web UI every file it serves."""
    names = []
    for name in sorted(os.listdir(os.path.join(ROOT, package))):
        if not os.path.isfile(os.path.join(ROOT, package, name)) or name in ("README.md", "__init__.py"):
            continue
        if package == "webui" or name.endswith((".py", ".c")):
            names.append(name)
    return names


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_readme_names_every_module(package):
    readme, prefix = PACKAGES[package]
    with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
        text = f.read()
    modules = _modules(package)
    assert modules, f"no modules found in {package}"
    missing = [name for name in modules if f"`{prefix}{name}`" not in text]
    assert not missing, f"{readme} does not name {', '.join(missing)}: add a line saying what each holds"
