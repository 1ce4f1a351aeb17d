"""`offerd marathon`: the Marathon-like framework with its REST API on :8080."""

from __future__ import annotations

import argparse
import sys

from offerd.common.flags import Flag, FlagError, add_flags, duration, positive_int, resolve_flags
from offerd.common.logs import setup_logging

MARATHON_FLAGS = [
    Flag("master", "127.0.0.1:5050", "The master: host:port or zk://host:port/path."),
    Flag("http_port", 8080, "Port of the REST API (0 picks a free one).", int),
    Flag("hostname", "127.0.0.1", "Address the API binds and advertises."),
    Flag("zk", "", "ZooKeeper URL for state and leader election, zk://host:port/marathon."),
    Flag("zk_session_timeout", "10secs", "ZooKeeper session timeout: how soon a standby takes over "
         "from a leader that died.", duration),
    Flag("work_dir", "/tmp/offerd/marathon",
         "Directory of the local state store (apps, versions, deployments, tasks, framework id) "
         "when --zk is not given; '' keeps state in memory only."),
    Flag("framework_name", "marathon", "Name of the framework."),
    Flag("mesos_role", "*", "Role to receive resources in."),
    Flag("decline_offer_duration", "120secs", "How long declined offers stay away.", duration),
    Flag("min_revive_offers_interval", "2secs", "Least time between two revives.", duration),
    Flag("max_instances_per_offer", 100, "Most instances launched on one offer.", positive_int),
    Flag("reconciliation_interval", "10mins", "How often to reconcile tasks with the master.", duration),
    Flag("failover_timeout", "1weeks", "How long the master keeps our tasks while we are gone "
         "(a restart within it adopts them).", duration),
    Flag("logging_level", "INFO", "INFO, WARNING or ERROR."),
]


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    add_flags(parser, MARATHON_FLAGS)
    parser.set_defaults(handler=run)


def run(args) -> int:
    try:
        flags = resolve_flags(args, MARATHON_FLAGS, "marathon")
    except FlagError as exc:
        print(f"offerd marathon: {exc}", file=sys.stderr)
        return 2
    setup_logging(flags.logging_level)
    from frameworks.marathon_like.core import Config
    from frameworks.marathon_like.service import MarathonService
    from offerd.cli.daemons import wait_for_signal

    config = Config(master=flags.master, hostname=flags.hostname, http_port=flags.http_port, zk=flags.zk,
                    framework_name=flags.framework_name, mesos_role=flags.mesos_role,
                    decline_offer_duration=flags.decline_offer_duration,
                    min_revive_offers_interval=flags.min_revive_offers_interval,
                    max_instances_per_offer=flags.max_instances_per_offer,
                    reconciliation_interval=flags.reconciliation_interval,
                    failover_timeout=flags.failover_timeout, work_dir=flags.work_dir,
                    zk_session_timeout=flags.zk_session_timeout)
    from frameworks.marathon_like.storage import StorageError

    try:
        service = MarathonService(config).start()
    except (StorageError, OSError) as exc:
        print(f"offerd marathon: {exc}", file=sys.stderr)
        return 1
    try:
        wait_for_signal(service.core.fatal)
    finally:
        service.stop()
    return 1 if service.core.fatal_reason else 0
