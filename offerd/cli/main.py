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
    "execute": ("offerd.cli.execute", "Run one command as a task and wait for it (like mesos-execute)."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offerd",
        description="offerd: a two-level, resource-offer cluster manager in the family of Apache Mesos.",
        epilog="Run 'offerd COMMAND --help' for a command's flags. Every flag can also be set as "
               "OFFERD_<FLAG> in the environment or as a file /etc/offerd/<command>/<flag>.",
    )
    parser.add_argument("--version", action="version", version=f"offerd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import importlib

    for name, (module_name, summary) in COMMANDS.items():
        module = importlib.import_module(module_name)
        kwargs = {"help": summary} if summary else {"help": argparse.SUPPRESS}
        cmd = sub.add_parser(name, description=summary or COMMANDS["slave"][1], **kwargs)
        module.configure(name, cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return args.handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
