"""`offerd local`: slaves share one host, so they must never offer the same port, and a user
must be able to tell which directory holds which slave."""

from __future__ import annotations

import json

import os

from offerd.cli.local import banner, registered_slaves, slave_resources
from offerd.proto import offerd_pb2 as pb


def test_one_range_is_split_into_disjoint_slices():
    assert slave_resources("cpus:4;ports:[31000-32000]", 0, 2) == "cpus:4;ports:[31000-31499]"
    assert slave_resources("cpus:4;ports:[31000-32000]", 1, 2) == "cpus:4;ports:[31500-32000]"
    assert slave_resources("cpus:1", 2, 3) == "cpus:1;ports:[31666-32000]"   # Mesos' default range, split
    assert slave_resources("ports(web):[1000-1009];cpus:1", 1, 2) == "ports(web):[1005-1009];cpus:1"
    assert slave_resources("cpus:1;ports:[1-2,5-9]", 1, 2) == "cpus:1;ports:[1-2,5-9]"   # the user's exact choice
    assert slave_resources("cpus:1", 0, 1) == "cpus:1;ports:[31000-32000]"


def test_local_slaves_offer_disjoint_ports(cluster_factory):
    cluster = cluster_factory(slaves=3)
    with cluster.urlopen(f"{cluster.master_url}/master/state") as response:
        slaves = json.load(response)["slaves"]
    # Mesos' state shape: "ports": "[31000-31332]".
    ranges = sorted(tuple(int(p) for p in s["resources"]["ports"].strip("[]").split("-")) for s in slaves)
    assert len(ranges) == 3
    assert all(previous[1] < following[0] for previous, following in zip(ranges, ranges[1:])), ranges


def test_the_master_advertises_the_address_everything_else_uses(cluster_factory):
    cluster = cluster_factory(slaves=1)
    with cluster.urlopen(f"{cluster.master_url}/master/state") as response:
        state = json.load(response)
    assert state["hostname"] == cluster.ip
    assert all(slave["hostname"] == cluster.ip for slave in state["slaves"])


def test_the_banner_names_the_directory_that_holds_each_slave(cluster_factory):
    cluster = cluster_factory(slaves=3)
    slaves = registered_slaves(cluster)
    assert len(slaves) == 3
    flags = type("Flags", (), {"slaves": 3, "marathon": False, "work_dir": None})
    text = banner(cluster, flags, None)
    for slave in slaves:
        directory = cluster.slave_work_dir(slave["port"] - cluster.port - 1)
        assert f"{slave['id']} at {cluster.ip}:{slave['port']}, sandboxes in {directory}" in text
        # The slave checkpointed the id the banner gives it in that very directory.
        info = pb.SlaveInfo()
        with open(os.path.join(directory, "meta", "slaves", "latest", "slave.info"), "rb") as f:
            info.ParseFromString(f.read())
        assert info.id.value == slave["id"]


def test_an_offerd_directory_in_the_working_directory_does_not_shadow_offerd(cluster_factory, tmp_path, monkeypatch):
    # e.g. running from the directory a clone named "offerd" sits in.
    (tmp_path / "offerd").mkdir()
    monkeypatch.chdir(tmp_path)
    cluster = cluster_factory(slaves=1)
    assert cluster.state()["activated_slaves"] == 1
