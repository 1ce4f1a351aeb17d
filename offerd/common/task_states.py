"""Task state facts shared by every process (Mesos 1.x semantics)."""

from offerd.proto import offerd_pb2 as pb

# States after which a task never runs again. TASK_LOST is terminal for the
# master's bookkeeping even though a partitioned task may still be alive.
TERMINAL_STATES = frozenset({
    pb.TASK_FINISHED, pb.TASK_FAILED, pb.TASK_KILLED, pb.TASK_ERROR, pb.TASK_LOST,
    pb.TASK_DROPPED, pb.TASK_GONE, pb.TASK_GONE_BY_OPERATOR,
})


def is_terminal(state: int) -> bool:
    return state in TERMINAL_STATES
