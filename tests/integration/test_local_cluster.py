"""`offerd local`'s slaves share one host, so they must never offer the same port."""

from __future__ import annotations

import json

from offerd.cli.local import slave_resources


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
