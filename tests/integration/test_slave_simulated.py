"""The simulated containerizer and `--simulate N` fleets, against the fake master."""

import os
import time

import requests

from offerd.proto import offerd_pb2 as pb
from offerd.slave import SimulatedFleet
from offerd.slave.checkpoint import read_slave_info
from tests.fakes.master_for_slaves import Call, command_task, kill_task, run_task, slave_flags
from tests.support import wait_for


def test_simulated_tasks_sleep_for_their_time_and_nothing_runs(master, start_slave):
    slave = start_slave(containerizer="simulated")
    slave_id = wait_for(lambda: slave.slave_id)
    assert slave.executor_port is None  # no executors in simulation

    sent = time.monotonic()
    master.send(slave_id, run_task(command_task("nap", "sleep 1")))
    master.wait_state("nap", pb.TASK_RUNNING, timeout=1)
    running_after = time.monotonic() - sent
    finished = master.wait_terminal("nap", timeout=5)
    finished_after = time.monotonic() - sent
    assert running_after < 0.5
    assert finished.state == pb.TASK_FINISHED and 0.9 <= finished_after <= 2.0
    assert master.states("nap") == ["TASK_RUNNING", "TASK_FINISHED"]

    master.send(slave_id, run_task(command_task("quick", "echo hello; exit 3")))
    assert master.wait_terminal("quick", timeout=1).state == pb.TASK_FINISHED

    master.send(slave_id, run_task(command_task("forever", "sleep 3600")))
    master.wait_state("forever", pb.TASK_RUNNING)
    master.send(slave_id, kill_task("forever"))
    assert master.wait_terminal("forever", timeout=1).state == pb.TASK_KILLED

    # Nothing touched the disk besides the checkpoint.
    assert not os.path.exists(os.path.join(slave.flags.work_dir, "slaves"))


def test_simulated_fleet_registers_distinct_slaves(master, tmp_path):
    flags = slave_flags(master, tmp_path / "fleet", simulate=5, resources="cpus:8;mem:16384")
    fleet = SimulatedFleet(flags).start()
    try:
        registers = wait_for(lambda: len(master.received(Call.REGISTER)) == 5 and master.received(Call.REGISTER))
        infos = [call.register.slave_info for call in registers]
        assert sorted(info.hostname for info in infos) == [f"sim-{i}" for i in range(5)]
        assert all({r.name for r in info.resources} >= {"cpus", "mem", "disk", "ports"} for info in infos)
        ids = wait_for(lambda: len(fleet.slave_ids) == 5 and fleet.slave_ids)
        assert len(set(ids)) == 5
        for i, slave_id in enumerate(ids):
            assert read_slave_info(str(tmp_path / "fleet" / f"sim-{i}")).id.value == slave_id

        # Each simulated slave runs tasks as itself.
        for i, slave_id in enumerate(ids):
            master.send(slave_id, run_task(command_task(f"task-{i}", "sleep 0.2")))
        for i, slave_id in enumerate(ids):
            status = master.wait_terminal(f"task-{i}")
            assert status.state == pb.TASK_FINISHED and status.slave_id.value == slave_id

        state = requests.get(f"http://127.0.0.1:{fleet.http_port}/state").json()
        assert sorted(s["id"] for s in state["slaves"]) == sorted(ids)
        third = requests.get(f"http://127.0.0.1:{fleet.http_port}/slave(3)/state").json()
        assert third["hostname"] == "sim-2" and third["resources"]["cpus"] == 8
        assert requests.get(f"http://127.0.0.1:{fleet.http_port}/slave(9)/state").status_code == 404
        assert requests.get(f"http://127.0.0.1:{fleet.http_port}/health").status_code == 200
    finally:
        fleet.stop()


def test_fleet_restart_reregisters_every_slave(master, tmp_path):
    flags = slave_flags(master, tmp_path / "fleet", simulate=3)
    fleet = SimulatedFleet(flags).start()
    try:
        ids = wait_for(lambda: len(fleet.slave_ids) == 3 and fleet.slave_ids)
    finally:
        fleet.stop()
    again = SimulatedFleet(slave_flags(master, tmp_path / "fleet", simulate=3)).start()
    try:
        wait_for(lambda: len(master.received(Call.REREGISTER)) == 3)
        assert sorted(c.reregister.slave_info.id.value for c in master.received(Call.REREGISTER)) == sorted(ids)
        assert wait_for(lambda: len(again.slave_ids) == 3 and again.slave_ids) == ids
    finally:
        again.stop()


def test_fleet_carries_many_tasks_through_the_whole_protocol(master, tmp_path):
    """Not a benchmark (see bench/): a smoke check that batches of tasks flow."""
    fleet = SimulatedFleet(slave_flags(master, tmp_path / "fleet", simulate=4)).start()
    try:
        ids = wait_for(lambda: len(fleet.slave_ids) == 4 and fleet.slave_ids)
        per_slave = 250
        framework = pb.FrameworkInfo(id=pb.FrameworkID(value="F1"), name="bulk", user="tester")
        for i, slave_id in enumerate(ids):
            event = pb.SlaveEvent(type=pb.SlaveEvent.RUN_TASK)
            for n in range(per_slave):
                event.run_tasks.add(framework_info=framework, task=command_task(f"bulk-{i}-{n}", "true"))
            master.send(slave_id, event)
        # Distinct tasks: an update resent before its acknowledgement arrives is counted once.
        wait_for(lambda: len({c.update.status.task_id.value for c in master.received(Call.UPDATE)
                              if c.update.status.state == pb.TASK_FINISHED}) == 4 * per_slave, timeout=20)
        # Every terminal update was acknowledged: the slaves are back to empty.
        wait_for(lambda: fleet.actor.call(lambda: all(not c.frameworks and not len(c.updates) for c in fleet.cores)))
    finally:
        fleet.stop()
