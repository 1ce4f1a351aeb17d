"""The documentation follows the code: a flag, an endpoint or a page that changes
without its docs fails here.

* every flag of every `offerd` command is in docs/operators.md with the code's
  default, and every flag row there names a flag that exists;
* every route of the master's Flask app is in docs/operators.md or
  docs/architecture.md, every route of the slave's under the slave's endpoints there,
  and every route of the Marathon-like app in docs/marathon.md, each on a line that
  also names the method;
* every relative link of README.md and docs/*.md reaches a file (and a heading, when
  it names one), every repository file they name exists, and every table row has as
  many cells as its header;
* the repository stands on its own: no file points at design notes outside it.
"""

from __future__ import annotations

import argparse
import os
import re

import pytest

from offerd.cli.main import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")


def _read(*parts: str) -> str:
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as handle:
        return handle.read()


# -- flags ----------------------------------------------------------------------------

def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _documented_flags(parser: argparse.ArgumentParser) -> set[str]:
    """The long options a user sees in --help (argparse.SUPPRESS hides the --no-FLAG
    twins of booleans, described once for all in operators.md, and internal options)."""
    own = {option for action in parser._actions if action.help != argparse.SUPPRESS
           for option in action.option_strings if option.startswith("--") and option != "--help"}
    # A command's own subcommands (offerd task exec|attach) count as the command's.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                own |= _documented_flags(child)
    return own


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_flag_is_in_operators_md(command):
    text = _read("docs", "operators.md")
    missing = sorted(flag for flag in _documented_flags(_commands()[command]) if f"`{flag}`" not in text)
    assert not missing, f"offerd {command}: flags missing from docs/operators.md: {', '.join(missing)}"


def test_every_flag_row_of_operators_md_is_a_real_flag():
    known = set().union(*(_documented_flags(parser) for parser in _commands().values()))
    rows = re.findall(r"^\| `(--[a-z0-9_]+)`", _read("docs", "operators.md"), re.MULTILINE)
    assert rows, "no flag tables found in docs/operators.md"
    stale = sorted(set(rows) - known)
    assert not stale, f"docs/operators.md documents flags no command has: {', '.join(stale)}"


def _flag_lists():
    from offerd.cli.execute import EXECUTE_FLAGS
    from offerd.cli.local import LOCAL_FLAGS
    from offerd.cli.marathon import MARATHON_FLAGS
    from offerd.master.flags import MASTER_FLAGS
    from offerd.slave.flags import SLAVE_FLAGS

    return {"master": MASTER_FLAGS, "slave": SLAVE_FLAGS, "marathon": MARATHON_FLAGS, "local": LOCAL_FLAGS,
            "execute": EXECUTE_FLAGS}


def _section(text: str, command: str) -> str:
    """The part of operators.md under the heading "### `offerd <command>`"."""
    match = re.search(rf"^### `offerd {command}`.*?$(.*?)(?=^#)", text, re.MULTILINE | re.DOTALL)
    assert match, f"docs/operators.md has no section for offerd {command}"
    return match.group(1)


@pytest.mark.parametrize("command", sorted(_flag_lists()))
def test_flag_defaults_in_operators_md_are_the_code_s(command):
    """The default column says what the flag's definition says (compared as parsed
    values, so `16MB` stands for 16777216)."""
    section = _section(_read("docs", "operators.md"), command)
    wrong = []
    for flag in _flag_lists()[command]:
        row = re.search(rf"^\| `--{flag.name}` \| ((?:[^|\\]|\\.)*) \|", section, re.MULTILINE)
        if row is None:
            wrong.append(f"--{flag.name}: no row")
            continue
        shown = row.group(1).strip().strip("`").replace("\\|", "|")  # a table cell escapes |
        if flag.default in (None, ""):
            ok = shown == ""
        else:
            try:
                ok = flag.type(shown) == flag.type(flag.default)
            except (TypeError, ValueError):
                ok = False
        if not ok:
            wrong.append(f"--{flag.name}: docs say {shown!r}, the code {flag.default!r}")
    assert not wrong, f"offerd {command} in docs/operators.md: {wrong}"


# -- routes ---------------------------------------------------------------------------

class _NoMaster:
    """Only the routes are read; no view is called."""


def _master_app():
    from offerd.master.http_api import create_app
    from offerd.master.http_leader import install_http

    app = create_app(_NoMaster())
    install_http(app, _NoMaster())
    return app


def _marathon_app():
    from frameworks.marathon_like.api import create_app
    from frameworks.marathon_like.core import Config, Core

    return create_app(Core(Config(master="127.0.0.1:5050")))


# Flask's own static route, which every Flask app gets; the Marathon-like app has no
# static folder (its page is served under /ui/), so it serves nothing there.
INTERNAL_ROUTES = {"/static/<path:filename>"}

_PARAMETER = re.compile(r"<(?:(\w+):)?\w+>")


def _route_pattern(rule: str) -> re.Pattern:
    """A route as the docs write it, in backticks: `<id>` as `{name}`; a `<path:...>`
    parameter may stand for several segments (`/v2/apps/{appId}/restart`)."""
    out, last = [], 0
    for match in _PARAMETER.finditer(rule):
        out.append(re.escape(rule[last:match.start()]))
        out.append(r"\{\w+\}[\w{}/*.-]*" if match.group(1) == "path" else r"\{\w+\}")
        last = match.end()
    out.append(re.escape(rule[last:]))
    return re.compile("`" + "".join(out) + "[`?]")


def _undocumented(app, text: str) -> list[str]:
    lines = text.splitlines()
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.rule in INTERNAL_ROUTES:
            continue
        pattern = _route_pattern(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            word = re.compile(rf"\b{method}\b")
            if not any(pattern.search(line) and word.search(line) for line in lines):
                missing.append(f"{method} {rule.rule}")
    return sorted(missing)


def test_every_master_route_is_documented():
    text = _read("docs", "operators.md") + "\n" + _read("docs", "architecture.md")
    missing = _undocumented(_master_app(), text)
    assert not missing, f"master routes missing from docs/operators.md: {missing}"


def test_every_slave_route_is_documented():
    from offerd.slave.http_api import create_app

    section = re.search(r"^### Slave$(.*?)(?=^##)", _read("docs", "operators.md"), re.MULTILINE | re.DOTALL)
    assert section, "docs/operators.md has no Slave section under Endpoints"
    missing = _undocumented(create_app(_NoMaster()), section.group(1))
    assert not missing, f"slave routes missing from the Slave endpoints of docs/operators.md: {missing}"


def test_every_marathon_route_is_documented():
    missing = _undocumented(_marathon_app(), _read("docs", "marathon.md"))
    assert not missing, f"Marathon-like routes missing from docs/marathon.md: {missing}"


# -- links ----------------------------------------------------------------------------

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _pages() -> list[str]:
    docs = sorted(os.path.join("docs", name) for name in os.listdir(DOCS) if name.endswith(".md"))
    return ["README.md", *docs]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: str) -> set[str]:
    with open(path, encoding="utf-8") as handle:
        text = re.sub(r"^```.*?^```", "", handle.read(), flags=re.MULTILINE | re.DOTALL)
    return {_anchor(h) for h in re.findall(r"^#+\s+(.*)$", text, re.MULTILINE)}


@pytest.mark.parametrize("page", _pages())
def test_relative_links_resolve(page):
    broken = []
    for target in _LINK.findall(_read(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path \
            else os.path.join(ROOT, page)
        if not os.path.exists(resolved):
            broken.append(f"{target} (no file {os.path.relpath(resolved, ROOT)})")
        elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{page}: broken links: {broken}"


@pytest.mark.parametrize("page", _pages())
def test_tables_have_as_many_cells_as_their_header(page):
    """An unescaped `|` (in `a|b`, say) splits a cell and shifts the rest of its row."""
    bad, columns = [], None
    for number, line in enumerate(_read(page).splitlines(), 1):
        if not line.startswith("|"):
            columns = None
            continue
        cells = len(re.findall(r"(?<!\\)\|", line))
        if columns is None:
            columns = cells
        elif cells != columns:
            bad.append(number)
    assert not bad, f"{page}: table rows with a different number of cells than their header, lines {bad}"


_REPO_PATH = re.compile(r"`((?:offerd|frameworks|tests|bench|examples|webui|deploy)/[\w/.-]*\.(?:py|c|md|proto))`")


@pytest.mark.parametrize("page", _pages())
def test_files_the_docs_name_exist(page):
    """A renamed or removed module must not live on in the docs."""
    missing = sorted({path for path in _REPO_PATH.findall(_read(page))
                      if not os.path.exists(os.path.join(ROOT, path))})
    assert not missing, f"{page} names files that do not exist: {missing}"


# -- self-contained -------------------------------------------------------------------

# Written in pieces so that this file does not name them itself.
FORBIDDEN = ("DESIGN" + ".md", "STYLE" + ".md", "shared" + "/reference", "mesos" + ".md", "reference" + " §")
SKIPPED_DIRECTORIES = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "build",
                       "test-artifacts"}


def _repository_files():
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [d for d in subdirectories
                             if d not in SKIPPED_DIRECTORIES and not d.endswith(".egg-info")]
        for name in files:
            yield os.path.join(directory, name)


def test_no_file_points_outside_the_repository():
    offenders = []
    for path in _repository_files():
        with open(path, "rb") as handle:
            data = handle.read()
        if b"\0" in data:
            continue  # binary
        text = data.decode("utf-8", errors="replace")
        for word in FORBIDDEN:
            if word in text:
                offenders.append(f"{os.path.relpath(path, ROOT)}: {word}")
    assert not offenders, f"files that point at notes outside the repository: {offenders}"
