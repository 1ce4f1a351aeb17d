"""WAIT_CONTAINER's waits: each holds an HTTP worker thread, so only a few may wait at once."""

from __future__ import annotations

import threading

import pytest

from offerd.slave.containerizer.base import Termination
from offerd.slave.operator_api_containers import MAX_WAITERS, ContainerWaits, TooManyWaiters
from tests.support import wait_for


def test_waiters_are_bounded_and_released_when_their_container_ends():
    waits = ContainerWaits()
    answers = {}
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, waits.wait(f"c{i}")), daemon=True)
               for i in range(MAX_WAITERS)]
    for thread in threads:
        thread.start()
    wait_for(lambda: waits._waiting == MAX_WAITERS, 10, message="every slot taken")
    with pytest.raises(TooManyWaiters, match="already waiting"):
        waits.wait("one-more")
    # An ended container is answered at once, slot or no slot.
    waits.ended("done", Termination(returncode=0))
    assert waits.wait("done").returncode == 0
    for i in range(MAX_WAITERS):
        waits.ended(f"c{i}", Termination(returncode=i))
    for thread in threads:
        thread.join(10)
    assert {i: t.returncode for i, t in answers.items()} == {i: i for i in range(MAX_WAITERS)}
    assert waits._waiting == 0


def test_stopping_releases_every_waiter():
    waits = ContainerWaits()
    answer = []
    thread = threading.Thread(target=lambda: answer.append(waits.wait("never")), daemon=True)
    thread.start()
    wait_for(lambda: waits._waiting == 1, 10, message="the waiter")
    waits.close()
    thread.join(10)
    assert answer == [None]
