"""``offerd maintenance schedule|status|down|up``: Mesos' maintenance endpoints
(``/master/maintenance/schedule``, ``/master/maintenance/status``,
``/master/machine/down``, ``/master/machine/up``) from the command line.

A machine is written ``HOSTNAME/IP`` (``HOSTNAME`` or ``/IP`` when it has only one):
the hostname and ip its slaves announce (their --hostname and --ip).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

from offerd.cli.tables import render
from offerd.cli.tools import DEFAULT_MASTER, MasterClient, ToolError, _config, _dump, client_from_config

SUBCOMMANDS = {
    "schedule": "Print the maintenance schedule, or replace it with --file (Mesos' JSON Schedule).",
    "status": "Print draining machines with the frameworks' answers to inverse offers, and down machines.",
    "down": "Bring DRAINING machines DOWN: their slaves are shut down and removed, their tasks lost.",
    "up": "Bring DOWN machines UP: their slaves may register again; the machines leave the schedule.",
}


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="maintenance_command", metavar="SUBCOMMAND", required=True)
    for name, summary in SUBCOMMANDS.items():
        cmd = sub.add_parser(name, help=summary, description=summary)
        cmd.add_argument("--master", default=None, metavar="HOST:PORT",
                         help="The master's HTTP address (default: $OFFERD_MASTER, else the master of the "
                              f"client.conf that $OFFERD_CONFIG names, else {DEFAULT_MASTER}).")
        if name in ("schedule", "status"):
            cmd.add_argument("--json", action="store_true", help="Print the JSON document instead of a table.")
        if name == "schedule":
            cmd.add_argument("--file", metavar="FILE",
                             help="Post this JSON schedule ('-' for stdin); it replaces the current one.")
        if name in ("down", "up"):
            cmd.add_argument("machines", metavar="MACHINE", nargs="+",
                             help="HOSTNAME/IP as the machine's slaves announce it (HOSTNAME or /IP for one).")
        cmd.set_defaults(handler=lambda args, name=name: run(name, args))


def parse_machine(text: str) -> dict:
    hostname, _, ip = text.partition("/")
    machine = {}
    if hostname:
        machine["hostname"] = hostname
    if ip:
        machine["ip"] = ip
    if not machine:
        raise ToolError(f"'{text}' names no machine: write HOSTNAME/IP")
    return machine


def run(name: str, args) -> int:
    try:
        client = client_from_config(args.master, _config())
        # The maintenance endpoints take JSON bodies.
        client.headers["Content-Type"] = "application/json"
        return COMMANDS[name](client, args) or 0
    except ToolError as exc:
        print(f"offerd maintenance {name}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0


def _post(client: MasterClient, endpoint: str, body) -> None:
    with client._open(endpoint, data=json.dumps(body).encode()) as response:
        response.read()


def _machine_text(machine: dict) -> str:
    return f"{machine.get('hostname', '')}/{machine.get('ip', '')}".rstrip("/")


def _time(nanoseconds) -> str:
    return datetime.fromtimestamp(int(nanoseconds) / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(nanoseconds) -> str:
    seconds = int(nanoseconds) / 1e9
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def cmd_schedule(client: MasterClient, args) -> None:
    if args.file:
        try:
            text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
            body = json.loads(text)
        except (OSError, ValueError) as exc:
            raise ToolError(f"cannot read a JSON schedule from {args.file}: {exc}") from None
        _post(client, "/master/maintenance/schedule", body)
        print(f"maintenance schedule replaced: {len(body.get('windows', []))} window(s)")
        return
    document = client.get("/master/maintenance/schedule")
    if args.json:
        _dump(document)
        return
    rows = []
    for window in document.get("windows", []):
        unavailability = window.get("unavailability", {})
        duration = unavailability.get("duration", {}).get("nanoseconds")
        for machine in window.get("machine_ids", []):
            rows.append([_machine_text(machine), _time(unavailability.get("start", {}).get("nanoseconds", 0)),
                         _duration(duration) if duration is not None else "-"])
    print(render(["MACHINE", "UNAVAILABLE FROM", "FOR"], rows))


def cmd_status(client: MasterClient, args) -> None:
    document = client.get("/master/maintenance/status")
    if args.json:
        _dump(document)
        return
    rows = []
    for machine in document.get("draining_machines", []):
        answers = ", ".join(f"{s['framework_id']['value']}: {s['status']}" for s in machine.get("statuses", []))
        rows.append([_machine_text(machine["id"]), "DRAINING", answers or "-"])
    for machine in document.get("down_machines", []):
        rows.append([_machine_text(machine), "DOWN", "-"])
    print(render(["MACHINE", "MODE", "INVERSE OFFER ANSWERS"], rows))


def cmd_down(client: MasterClient, args) -> None:
    machines = [parse_machine(m) for m in args.machines]
    _post(client, "/master/machine/down", machines)
    print(f"DOWN: {', '.join(_machine_text(m) for m in machines)}")


def cmd_up(client: MasterClient, args) -> None:
    machines = [parse_machine(m) for m in args.machines]
    _post(client, "/master/machine/up", machines)
    print(f"UP: {', '.join(_machine_text(m) for m in machines)}")


COMMANDS = {"schedule": cmd_schedule, "status": cmd_status, "down": cmd_down, "up": cmd_up}
