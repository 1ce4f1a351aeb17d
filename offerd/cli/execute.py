"""`offerd execute`: run one command as a task and wait for it, like mesos-execute.

A tiny framework on the public SDK: it takes the first offer that holds the
task's resources, launches the task, prints each status update and exits 0
when the task finishes (1 otherwise, 2 for bad flags).

On a secured cluster it reads ``OFFERD_CONFIG`` (a client.conf): the master,
the principal and secret it authenticates with, the master's public key and
the CA of its https endpoints. ``--master`` still picks the master.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import threading
import time

from offerd.common.flags import Flag, FlagError, add_flags, duration, resolve_flags
from offerd.common.logs import setup_logging
from offerd.common.resources import Resources, ResourceError
from offerd.common.task_states import TERMINAL_STATES as TERMINAL
from offerd.proto import offerd_pb2 as pb


# Not subscribed this long after start: look at the master ourselves and say what is wrong.
REACHABLE_CHECK_AFTER = 2.0
# Subscribed this long without placing the task: say why (no offer fits, or no offers at all).
UNPLACEABLE_AFTER = 5.0
# Silence this long before subscribing earns a hint on stderr.
SUBSCRIBE_HINT_AFTER = 10.0

EXECUTE_FLAGS = [
    Flag("master", None, "The master's HTTP address, HOST:PORT (default: the master of the client.conf that "
                         "$OFFERD_CONFIG names, else 127.0.0.1:5050)."),
    Flag("name", "offerd-execute", "Name of the task (also its id, made unique)."),
    Flag("command", None, "Shell command to run (required)."),
    Flag("resources", "cpus:0.1;mem:32", "Resources of the task in Mesos text format."),
    Flag("role", "*", "Role the framework subscribes with."),
    Flag("user", None, "User the task runs as (default: you)."),
    Flag("env", None, "Environment of the task as JSON, e.g. '{\"A\": \"1\"}'."),
    Flag("kill_after", None, "Kill the task after this long, e.g. 30secs.", duration),
    Flag("timeout", "5mins", "Give up if the task has not ended after this long.", duration),
    Flag("logging_level", "WARNING", "INFO, WARNING or ERROR."),
]


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    add_flags(parser, EXECUTE_FLAGS)
    parser.set_defaults(handler=run)


class ExecuteScheduler:
    """Launch one task on the first offer that fits, then report until it ends."""

    def __init__(self, task_name: str, command: pb.CommandInfo, resources: Resources, kill_after):
        self.task_id = f"{task_name}-{int(time.time() * 1000)}"
        self.task_name = task_name
        self.command = command
        self.resources = resources
        self.kill_after = kill_after
        self.launched = False
        self.final_state = None
        self.message = ""
        self.done = threading.Event()
        # Set once the master has answered at all: subscribed, or refused us.
        self.answered = threading.Event()
        self.framework_id: str | None = None
        self.disconnected_at: float | None = None
        # The biggest offer that could not hold the task: (cpus, mem, resources, slave id, hostname).
        self.largest_refused: tuple | None = None

    # Scheduler callbacks (the SDK calls them on its driver thread).
    def registered(self, driver, framework_id, master_info):
        print(f"Subscribed with ID {framework_id.value}", flush=True)
        self.framework_id = framework_id.value
        self.answered.set()

    def reregistered(self, driver, master_info):
        self.disconnected_at = None
        print("Reconnected to the master", flush=True)

    def disconnected(self, driver):
        self.disconnected_at = time.monotonic()
        print("Disconnected from the master; waiting for it to come back (until --timeout)", flush=True)

    def resourceOffers(self, driver, offers):
        for offer in offers:
            offered = Resources.from_protos(offer.resources)
            if not self.launched and not offered.contains(self.resources):
                size = (offered.scalar("cpus"), offered.scalar("mem"), offered, offer.slave_id.value, offer.hostname)
                if self.largest_refused is None or size[:2] > self.largest_refused[:2]:
                    self.largest_refused = size
            if self.launched or not offered.contains(self.resources):
                driver.declineOffer(offer.id, pb.Filters(refuse_seconds=5 if not self.launched else 3600))
                continue
            task = pb.TaskInfo(name=self.task_name)
            task.task_id.value = self.task_id
            task.slave_id.CopyFrom(offer.slave_id)
            task.command.CopyFrom(self.command)
            task.resources.extend(self.resources.to_protos())
            driver.launchTasks(offer.id, [task])
            self.launched = True
            print(f"Submitted task '{self.task_id}' to slave {offer.slave_id.value} ({offer.hostname})", flush=True)
            driver.suppressOffers()
            if self.kill_after:
                threading.Timer(self.kill_after, driver.killTask, args=(task.task_id,)).start()

    def offerRescinded(self, driver, offer_id):
        pass

    def statusUpdate(self, driver, status):
        if status.task_id.value != self.task_id:
            return
        line = f"Received status update {pb.TaskState.Name(status.state)} for task '{self.task_id}'"
        if status.message:
            line += f"\n  message: '{status.message}'"
        if status.HasField("reason"):
            line += f"\n  reason: {pb.TaskStatus.Reason.Name(status.reason)}"
        print(line, flush=True)
        if status.state in TERMINAL:
            self.final_state = status.state
            self.message = status.message
            self.done.set()

    def frameworkMessage(self, driver, executor_id, slave_id, data):
        pass

    def slaveLost(self, driver, slave_id):
        pass

    def executorLost(self, driver, executor_id, slave_id, status):
        pass

    def error(self, driver, message):
        print(f"Error from the master: {message}", file=sys.stderr, flush=True)
        self.message = message
        self.answered.set()
        self.done.set()


def _say_why_not_subscribed(master: str, config) -> None:
    """The driver retries quietly: if the master cannot be reached at all, say so and where we look."""
    from offerd.common.detector import DetectorError, master_info
    from offerd.common.tls import client_context

    try:
        context = client_context(config.ca_file) if config.ca_file else None
        master_info(master, timeout=2.0, ssl_context=context)
    except (DetectorError, OSError, ValueError) as exc:
        print(f"offerd execute: {exc}; still trying (Ctrl-C to stop, --timeout to give up sooner)",
              file=sys.stderr, flush=True)


def _say_why_not_placed(scheduler: ExecuteScheduler, master: str, config) -> None:
    """Nothing launched yet: name the biggest offer that could not hold the task, or
    ask the master's allocator why this framework gets no offers at all."""
    wanted = scheduler.resources
    if scheduler.largest_refused is not None:
        _, _, offered, slave_id, hostname = scheduler.largest_refused
        print(f"offerd execute: no offer can hold the task ({wanted}): the largest so far, from slave {slave_id} "
              f"({hostname}), has {offered}; still waiting for one that can (--timeout gives up)",
              file=sys.stderr, flush=True)
        return
    reasons = _allocator_reasons(scheduler.framework_id, master, config)
    why = "; ".join(reasons) if reasons else "the allocator gives no reason (are any slaves registered?)"
    print(f"offerd execute: no offers yet for the task ({wanted}): {why}; still waiting (--timeout gives up)",
          file=sys.stderr, flush=True)


def _allocator_reasons(framework_id: str | None, master: str, config) -> list[str]:
    """The allocator's own explanation (GET /master/allocator?framework_id=), as sentences."""
    from urllib.parse import quote

    from offerd.common.credentials import basic_auth_header
    from offerd.common.detector import DetectorError, master_info
    from offerd.common.http import get_json
    from offerd.common.tls import client_context

    if framework_id is None:
        return []
    try:
        context = client_context(config.ca_file) if config.ca_file else None
        info = master_info(master, timeout=2.0, ssl_context=context)
        address = info.get("address") or {}
        scheme = "https" if context is not None or master.startswith("https://") else "http"
        headers = {}
        if config.credential is not None:
            headers["Authorization"] = basic_auth_header(config.credential.principal, config.credential.secret)
        document = get_json(f"{scheme}://{address.get('hostname') or address.get('ip')}:{address.get('port')}"
                            f"/master/allocator?framework_id={quote(framework_id)}",
                            timeout=2.0, ssl_context=context, headers=headers)
    except (DetectorError, OSError, ValueError) as exc:
        return [f"cannot ask the master's allocator: {exc}"]
    entry = (document.get("frameworks") or {}).get(framework_id) or {}
    return [reason.get("message", "") for reason in entry.get("reasons", []) if reason.get("message")]


def run(args) -> int:
    try:
        flags = resolve_flags(args, EXECUTE_FLAGS, "execute")
        if not flags.command:
            raise FlagError("--command is required, e.g. --command 'echo hello'")
        resources = Resources.parse(flags.resources)
    except (FlagError, ResourceError) as exc:
        print(f"offerd execute: {exc}", file=sys.stderr)
        return 2
    from offerd.common.client_config import ClientConfigError, from_environment

    try:
        config = from_environment()
        credential = config.credential
    except ClientConfigError as exc:
        print(f"offerd execute: {exc}; fix the file or unset OFFERD_CONFIG", file=sys.stderr)
        return 2
    setup_logging(flags.logging_level)
    from offerd.framework_sdk import MesosSchedulerDriver

    command = pb.CommandInfo(value=flags.command, shell=True)
    if flags.env:
        import json

        try:
            env = json.loads(flags.env)
            if not isinstance(env, dict):
                raise ValueError("expected a JSON object")
        except ValueError as exc:
            print(f"offerd execute: --env: {exc}", file=sys.stderr)
            return 2
        for key, value in env.items():
            command.environment.variables.add(name=str(key), value=str(value))
    framework = pb.FrameworkInfo(name="offerd-execute", user=flags.user or getpass.getuser(), roles=[flags.role])
    framework.capabilities.add(type=pb.FrameworkInfo.Capability.MULTI_ROLE)
    proto_credential = None
    if credential is not None:
        # The master binds the framework to the principal it proved: they must agree.
        framework.principal = credential.principal
        proto_credential = pb.Credential(principal=credential.principal, secret=credential.secret.encode("utf-8"))
    scheduler = ExecuteScheduler(flags.name, command, resources, flags.kill_after)
    master = flags.master or config.master or "127.0.0.1:5050"
    from offerd.common.detector import DetectorError, check_master_address

    try:
        check_master_address(master)
    except DetectorError as exc:
        print(f"offerd execute: --master: {exc}", file=sys.stderr)
        return 2
    driver = MesosSchedulerDriver(scheduler, framework, master,
                                  credential=proto_credential, master_public_key=config.master_public_key,
                                  ca_file=config.ca_file)
    driver.start()
    deadline = time.monotonic() + flags.timeout
    try:
        if not scheduler.answered.wait(min(REACHABLE_CHECK_AFTER, flags.timeout)):
            _say_why_not_subscribed(master, config)
        if not scheduler.answered.wait(min(SUBSCRIBE_HINT_AFTER, flags.timeout)):
            # The driver retries quietly (at the default log level): say why it may be stuck.
            print(f"offerd execute: not subscribed with the master at {master} after {SUBSCRIBE_HINT_AFTER:g}s; "
                  "still trying. Is it reachable? A secured cluster needs OFFERD_CONFIG (a client.conf with its "
                  "public key, CA and a principal); --logging_level INFO shows each attempt.",
                  file=sys.stderr, flush=True)
        if (scheduler.answered.is_set() and not scheduler.done.wait(min(UNPLACEABLE_AFTER, flags.timeout))
                and not scheduler.launched):
            _say_why_not_placed(scheduler, master, config)
        if not scheduler.done.wait(max(0.0, deadline - time.monotonic())):
            if scheduler.disconnected_at is not None:
                print(f"offerd execute: the master at {master} has been gone for "
                      f"{time.monotonic() - scheduler.disconnected_at:.0f}s and did not come back within --timeout "
                      f"({flags.timeout:g}s); giving up. Task '{scheduler.task_id}' may still run: "
                      "'offerd tasks' shows it once the master is back.", file=sys.stderr)
                return 1
            print(f"offerd execute: the task did not end within {flags.timeout:g}s; killing it", file=sys.stderr)
            task_id = pb.TaskID(value=scheduler.task_id)
            driver.killTask(task_id)
            scheduler.done.wait(10)
    except KeyboardInterrupt:
        driver.killTask(pb.TaskID(value=scheduler.task_id))
        scheduler.done.wait(10)
    finally:
        driver.stop()
        driver.join()
    return 0 if scheduler.final_state == pb.TASK_FINISHED else 1
