"""Where a container runs and what environment it sees."""

from __future__ import annotations

import logging
import os

from offerd.proto import offerd_pb2 as pb

log = logging.getLogger(__name__)

EXECUTOR_TOKEN_VARIABLE = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"


def sandbox_directory(work_dir: str, slave_id: str, framework_id: str, executor_id: str, container_id: str) -> str:
    """Mesos' layout: work_dir/slaves/<sid>/frameworks/<fid>/executors/<eid>/runs/<cid>."""
    return os.path.join(work_dir, "slaves", slave_id, "frameworks", framework_id,
                        "executors", executor_id, "runs", container_id)


def container_environment(base: dict[str, str], variables: dict[str, str],
                          command: pb.CommandInfo | None = None) -> dict[str, str]:
    """`base` (the slave's own environment, so PATH, PYTHONPATH and VIRTUAL_ENV
    reach executors and tasks), then MESOS_<NAME> and OFFERD_<NAME> for each of
    `variables`, then the command's own environment, which wins."""
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
