"""Identifier schemes, as Mesos forms them.

A master picks a random id at start; framework, slave and offer ids extend it
(``<masterID>-0001``, ``<masterID>-S3``, ``<masterID>-O42``), so ids from two
master runs never collide.
"""

from __future__ import annotations

import itertools
import uuid


def new_master_id() -> str:
    return str(uuid.uuid4())


def new_uuid() -> bytes:
    """The 16 raw bytes carried in ``TaskStatus.uuid``."""
    return uuid.uuid4().bytes


class IdGenerator:
    def __init__(self, master_id: str):
        self.master_id = master_id
        self._frameworks = itertools.count()
        self._slaves = itertools.count()
        self._offers = itertools.count()

    def framework(self) -> str:
        return f"{self.master_id}-{next(self._frameworks):04d}"

    def slave(self) -> str:
        return f"{self.master_id}-S{next(self._slaves)}"

    def offer(self) -> str:
        return f"{self.master_id}-O{next(self._offers)}"
