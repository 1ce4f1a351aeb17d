"""The Marathon-like framework is a framework like any other: of offerd it imports only the
SDK, `offerd.common` and `offerd.proto`, and its README names every module it has."""

from __future__ import annotations

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "frameworks" / "marathon_like"
ALLOWED = ("offerd.framework_sdk", "offerd.common", "offerd.proto")


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _imported(path: pathlib.Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_imports_only_the_sdk_common_and_proto():
    offending = [f"{path.relative_to(PACKAGE)}: {name}" for path in _modules() for name in _imported(path)
                 if (name == "offerd" or name.startswith("offerd."))
                 and not any(name == a or name.startswith(a + ".") for a in ALLOWED)]
    assert offending == []


def test_readme_names_every_module():
    readme = (PACKAGE / "README.md").read_text()
    missing = [str(path.relative_to(PACKAGE)) for path in _modules()
               if path != PACKAGE / "__init__.py" and f"`{path.relative_to(PACKAGE)}`" not in readme]
    assert missing == []
    for name in ALLOWED:
        assert f"`{name}`" in readme
