"""Where `offerd-init` (the first process of every container) comes from.

It is a small C program (offerd-init.c beside this file): a container's launch
must not cost a Python interpreter, nor the dynamic linking of util-linux tools
(see bench/README.md). It is compiled once per machine, source version and compiler,
into a cache directory keyed by their hash, so a changed source is never
run stale and concurrent slaves do not race (each builds under a temporary name
and renames). `make` builds it ahead (`python -m offerd.slave.containerizer.init_binary`);
a slave builds it on first use otherwise.

    python -m offerd.slave.containerizer.init_binary     # build it, print its path
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading

log = logging.getLogger(__name__)

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "offerd-init.c")
_lock = threading.Lock()
_built: str | None = None


class InitBuildError(Exception):
    """offerd-init could not be built; the message says what to install."""


def cache_directory() -> str:
    configured = os.environ.get("OFFERD_INIT_DIR")
    if configured:
        return configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "offerd")


def _builds() -> list[tuple[str, list[str]]]:
    """(compiler, flags) to try, best first. musl's static startup is a few system
    calls; glibc's, even static, probes the CPU (slow in a VM): ~0.15 vs ~0.4 ms
    per exec here."""
    found = []
    for name, flags in ((os.environ.get("CC"), ["-static"]), ("musl-gcc", ["-static"]), ("cc", ["-static"]),
                        ("gcc", ["-static"]), ("clang", ["-static"])):
        compiler = shutil.which(name) if name else None
        if compiler and compiler not in {c for c, _ in found}:
            found.append((compiler, flags))
    # The last resort: dynamically linked against the system's C library, where no
    # static one is installed.
    system = [compiler for compiler, _ in found if not os.path.basename(compiler).startswith("musl")]
    return found + [(compiler, []) for compiler in system[:1]]


def path() -> str:
    """The built binary, building it first if this source version has none yet."""
    global _built
    if _built is not None:
        return _built
    with _lock:
        if _built is None:
            _built = _build()
    return _built


def _build() -> str:
    with open(SOURCE, "rb") as handle:
        source = handle.read()
    builds = _builds()
    # Keyed by the source and the best compiler here: installing musl later rebuilds it.
    best = repr(builds[:1]).encode()
    digest = hashlib.sha256(source + b"\0" + best).hexdigest()[:16]
    directory = cache_directory()
    target = os.path.join(directory, f"offerd-init-{digest}")
    if os.access(target, os.X_OK):
        return target
    if not builds:
        raise InitBuildError("building offerd-init (the containers' first process) needs a C compiler: "
                             "install one (apt-get install musl-tools, or gcc libc6-dev) or set CC")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise InitBuildError(f"cannot create {directory} for offerd-init: {exc.strerror}; "
                             "set OFFERD_INIT_DIR to a writable directory") from None
    fd, temporary = tempfile.mkstemp(prefix=".offerd-init-", dir=directory)
    os.close(fd)
    errors = []
    try:
        for compiler, flags in builds:
            result = subprocess.run([compiler, "-O2", "-Wall", *flags, "-o", temporary, SOURCE],
                                    capture_output=True, text=True)
            if result.returncode == 0:
                os.chmod(temporary, 0o755)
                os.replace(temporary, target)
                log.info("built %s with %s %s", target, compiler, " ".join(flags))
                return target
            errors.append(f"{compiler} {' '.join(flags)}: {result.stderr.strip()[-800:]}")
        raise InitBuildError(f"compiling {SOURCE} failed: " + "; ".join(errors))
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def main() -> int:
    argparse.ArgumentParser(description="Build offerd-init for this machine (if not built yet) and "
                                        "print its path.").parse_args()
    try:
        print(path())
    except InitBuildError as exc:
        print(f"offerd-init: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
