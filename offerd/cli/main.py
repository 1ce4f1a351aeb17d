"""`offerd` — the one command: daemons, the local cluster, and tools."""

from __future__ import annotations

import argparse
import sys

from offerd import __version__

COMMANDS = {
    "master": ("offerd.cli.daemons", "Run a master: the allocator, offers, the web UI and endpoints on :5050."),
    "slave": ("offerd.cli.daemons", "Run a slave (alias: agent): offers this machine's resources and runs tasks."),
    "agent": ("offerd.cli.daemons", None),
    "local": ("offerd.cli.local", "Run a whole cluster on this machine: a master and --slaves N slaves."),
    "keygen": ("offerd.cli.keygen", "Make a CURVE key pair for the master's encrypted ZeroMQ port."),
    "execute": ("offerd.cli.execute", "Run one command as a task and wait for it (like mesos-execute)."),
    "marathon": ("offerd.cli.marathon", "Run the Marathon-like framework: long-running apps, REST API on :8080."),
    # Operator tools over the master's HTTP endpoints (offerd/cli/tools.py).
    "state": ("offerd.cli.tools", "Show the cluster at a glance: leader, slaves, frameworks, tasks and resources."),
    "frameworks": ("offerd.cli.tools", "List the frameworks registered with the master."),
    "slaves": ("offerd.cli.tools", "List the slaves (alias: agents) and their resources."),
    "agents": ("offerd.cli.tools", "Same as 'slaves'."),
    "tasks": ("offerd.cli.tools", "List tasks (active unless --all), of one --framework or --state."),
    "logs": ("offerd.cli.tools", "Print a task's stdout or --stderr through the master; --follow until it ends."),
    "top": ("offerd.cli.tools", "A refreshing view of resource use per framework."),
    "teardown": ("offerd.cli.tools", "Tear down a framework: kill its tasks and forget it."),
    "task": ("offerd.cli.task", "Run a command in a running task's container (exec), or follow its output (attach)."),
    "maintenance": ("offerd.cli.maintenance", "Maintenance: the schedule, machines' status, bring machines down and up."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offerd",
        description="offerd: a two-level, resource-offer cluster manager in the family of Apache Mesos.",
        epilog="Run 'offerd COMMAND --help' for a command's flags. Every flag can also be set as "
               "OFFERD_<FLAG> in the environment or as a file /etc/offerd/<command>/<flag>.",
    )
    parser.add_argument("--version", action="version", version=f"offerd {__version__}")
    # Not dest="command": `offerd execute --command` would overwrite the subcommand's name.
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    import importlib

    for name, (module_name, summary) in COMMANDS.items():
        module = importlib.import_module(module_name)
        # Without a help entry argparse leaves an alias out of the command list.
        kwargs = {"help": summary} if summary else {}
        cmd = sub.add_parser(name, description=summary or COMMANDS["slave"][1], **kwargs)
        module.configure(name, cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.subcommand:
        parser.print_help()
        return 2
    return args.handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
