"""Where a container runs and what environment it sees."""

from __future__ import annotations

import json
import logging
import os
import pwd
import stat

from offerd.proto import offerd_pb2 as pb
from offerd.slave import safe_files

log = logging.getLogger(__name__)

EXECUTOR_TOKEN_VARIABLE = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"   # Mesos' host default
INHERITED = ("PATH", "LANG", "LC_ALL")
# Executors written with offerd's SDK are Python programs run by the slave's own
# interpreter; where offerd is not installed system-wide (a virtualenv, a source
# checkout) these two are how that interpreter finds it. They locate code, hold no secret.
SDK_VARIABLES = ("PYTHONPATH", "VIRTUAL_ENV")


def sandbox_directory(work_dir: str, slave_id: str, framework_id: str, executor_id: str, container_id: str) -> str:
    """Mesos' layout: work_dir/slaves/<sid>/frameworks/<fid>/executors/<eid>/runs/<cid>."""
    return os.path.join(work_dir, "slaves", slave_id, "frameworks", framework_id,
                        "executors", executor_id, "runs", container_id)


def environment_variables(value) -> dict[str, str] | None:
    """--executor_environment_variables: a JSON object of names to string values,
    given as text or as the path of a file holding it."""
    if value is None or isinstance(value, dict):
        return value
    text = str(value).strip()
    if not text.startswith("{"):
        path = text[len("file://"):] if text.startswith("file://") else text
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError as exc:
            raise ValueError(f"expected a JSON object or the path of a file holding one: {exc}") from None
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not a JSON object: {exc}") from None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise ValueError('expected a JSON object of names to string values, e.g. {"PATH": "/usr/bin:/bin"}')
    return parsed


def base_environment(slave_environment: dict[str, str], configured: dict[str, str] | None) -> dict[str, str]:
    """What every executor and task starts from, as Mesos gives it: the
    operator's --executor_environment_variables when given (they replace the
    inherited set), else PATH, LANG and LC_ALL of the slave; PATH defaults to
    Mesos' host path. Never the rest of the slave's environment: its secrets
    (cloud keys, tokens) are not the tasks' to read."""
    if configured is not None:
        env = dict(configured)
    else:
        env = {name: slave_environment[name] for name in INHERITED + SDK_VARIABLES if name in slave_environment}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def user_environment(user, sandbox: str) -> dict[str, str]:
    """HOME, USER and LOGNAME of the user a container runs as (`user`: a resolved
    user, or None for the slave's own); HOME is the sandbox when that user has no
    home directory here (nobody's /nonexistent)."""
    if user is None:
        try:
            entry = pwd.getpwuid(os.geteuid())
        except KeyError:
            return {"HOME": sandbox}
        name, home = entry.pw_name, entry.pw_dir
    else:
        name, home = user.name, user.home
    return {"HOME": home if home and os.path.isdir(home) else sandbox, "USER": name, "LOGNAME": name}


def container_environment(base: dict[str, str], variables: dict[str, str],
                          command: pb.CommandInfo | None = None) -> dict[str, str]:
    """`base` (base_environment: never the slave's whole environment), then
    MESOS_<NAME> and OFFERD_<NAME> for each of `variables`, then the command's
    own environment, which wins. The containerizer adds the user's HOME, USER
    and LOGNAME where none of these set them."""
    env = dict(base)
    # A slave started from inside an executor must not hand that executor's
    # secret on; each executor's own token is set by the slave after this.
    env.pop(EXECUTOR_TOKEN_VARIABLE, None)
    for name, value in variables.items():
        env[f"MESOS_{name}"] = value
        env[f"OFFERD_{name}"] = value
    if command is not None and command.HasField("environment"):
        for variable in command.environment.variables:
            if variable.type == pb.Environment.Variable.SECRET:
                log.warning("environment variable %s is a secret, which this slave cannot resolve; skipped",
                            variable.name)
                continue
            env[variable.name] = variable.value
    return env


def last_stderr_line(sandbox: str, limit: int = 200) -> str | None:
    """The last non-blank line the task wrote to its sandbox's stderr, printable and
    at most `limit` characters, or None. The task owns the sandbox and may have put a
    link or a FIFO there: neither is followed nor waited on."""
    try:
        directory = os.open(sandbox, safe_files.DIRECTORY_FLAGS)
    except OSError:
        return None
    try:
        fd = os.open("stderr", safe_files.READ_FLAGS, dir_fd=directory)
    except OSError:
        return None
    finally:
        os.close(directory)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        os.lseek(fd, max(0, info.st_size - 4096), os.SEEK_SET)
        tail = os.read(fd, 4096).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    if not lines:
        return None
    line = "".join(ch if ch.isprintable() else "?" for ch in lines[-1])
    return line if len(line) <= limit else line[:limit - 1] + "…"
