"""`offerd master` and `offerd slave`: run one daemon until a signal stops it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from offerd.common.flags import FlagError, add_flags, resolve_flags
from offerd.common.logs import setup_logging

log = logging.getLogger("offerd")


def _flag_list(command: str):
    if command == "master":
        from offerd.master.flags import MASTER_FLAGS

        return MASTER_FLAGS
    from offerd.slave.flags import SLAVE_FLAGS

    return SLAVE_FLAGS


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    add_flags(parser, _flag_list(command))
    parser.set_defaults(handler=run_master if command == "master" else run_slave)


def wait_for_signal(done: threading.Event | None = None, extra: tuple = ()) -> int | None:
    """Block until SIGINT/SIGTERM (or a signal in `extra`), or until `done` is set
    (the daemon ended itself); returns the signal received, if any."""
    stop = done or threading.Event()
    received: list[int] = []

    def on_signal(signum, _frame):
        log.info("received %s, shutting down", signal.Signals(signum).name)
        received.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, *extra):
        signal.signal(signum, on_signal)
    while not stop.wait(1):
        pass
    return received[0] if received else None


def _resolve(args, command: str):
    try:
        return resolve_flags(args, _flag_list(command), "slave" if command == "agent" else command)
    except FlagError as exc:
        print(f"offerd {command}: {exc}", file=sys.stderr)
        raise SystemExit(2)


def run_master(args) -> int:
    flags = _resolve(args, "master")
    setup_logging(flags.logging_level)
    from offerd.master.daemon import Master

    from offerd.common.election import ElectionError
    from offerd.common.exposure import ExposureError

    master = None
    try:
        master = Master(flags)
        master.start()
    except (ValueError, ExposureError, ElectionError) as exc:
        print(f"offerd master: {exc}", file=sys.stderr)
        if master is not None and isinstance(exc, ElectionError):
            master.stop()  # it failed after opening its ports
        return 2
    except OSError as exc:
        log.error("cannot start the master: %s (is another process using that port? --port and --zmq_port choose others)", exc)
        return 1
    info = master.master_info
    log.info("master %s serving %s://%s:%d (ZeroMQ tcp://%s:%d)",
             info.id, master.http.scheme, info.address.ip, master.http_port, info.address.ip, master.zmq_port)
    try:
        wait_for_signal()
    finally:
        master.stop()
    return 0


def run_slave(args) -> int:
    command = args.subcommand
    flags = _resolve(args, command)
    setup_logging(flags.logging_level)
    if not flags.master:
        print(f"offerd {command}: --master HOST:PORT is required (the master's HTTP address, e.g. 127.0.0.1:5050)",
              file=sys.stderr)
        return 2
    from offerd.common.detector import DetectorError, check_master_address

    try:
        check_master_address(flags.master)
    except DetectorError as exc:
        print(f"offerd {command}: --master: {exc}", file=sys.stderr)
        return 2
    if getattr(flags, "simulate", 0):
        from offerd.slave.simulate import SimulatedFleet

        daemon = SimulatedFleet(flags, int(flags.simulate))
        what = f"{flags.simulate} simulated slaves"
    else:
        from offerd.slave.daemon import Slave

        daemon = Slave(flags)
        what = "slave"
    from offerd.common.exposure import ExposureError

    try:
        daemon.start()
    except ExposureError as exc:
        print(f"offerd {command}: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        log.error("cannot start the %s: %s", what, exc)
        return 1
    log.info("%s started, registering with the master at %s", what, flags.master)
    # SIGTERM/SIGINT: stop, leaving checkpointing frameworks' tasks running for the
    # next start (--recover=reconnect); SIGUSR1: shut down (kill all, unregister).
    received = None
    try:
        received = wait_for_signal(daemon.stopped, extra=(signal.SIGUSR1,))
    finally:
        if received == signal.SIGUSR1 and hasattr(daemon, "shutdown"):
            daemon.shutdown()
        else:
            daemon.stop()
    failure = getattr(daemon, "failure", None)
    if failure:
        # As Mesos' agent, which exits when the master refuses its credential.
        print(f"offerd {command}: {failure}; check --credential against the master's --credentials",
              file=sys.stderr)
        return 1
    reason = getattr(daemon, "shutdown_reason", None)
    if reason:
        log.warning("the master shut this slave down: %s", reason)
        return 1
    return 0
