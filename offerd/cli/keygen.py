"""`offerd keygen`: make a CURVE key pair for encrypted ZeroMQ links."""

from __future__ import annotations

import argparse
import os
import sys

from offerd.common import curve

DESCRIPTION = """\
Make a CURVE key pair (ZeroMQ certificate files) for the master's encrypted ZeroMQ port.

Writes two files into --out:
  NAME.key_secret  the key pair (mode 0600): keep it on the master only and start it with
                   --zmq_key_file=NAME.key_secret
  NAME.key         the public key alone: give it to every slave, scheduler and tool, as
                   --master_public_key=NAME.key (or the 40-character key printed here)

A slave's executor endpoint can use a pair of its own the same way (the slave's --zmq_key_file).
"""


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = DESCRIPTION
    parser.add_argument("--out", default=".", metavar="DIR",
                        help="Directory to write the two files into (made if missing; default: the current one).")
    parser.add_argument("--name", default="master",
                        help="Base name of the files: NAME.key and NAME.key_secret (default: master).")
    parser.add_argument("--force", action="store_true",
                        help="Replace an existing NAME.key_secret (every client then needs the new public key).")
    parser.set_defaults(handler=run)


def _valid_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def run(args) -> int:
    if not _valid_name(args.name):
        print(f"offerd keygen: --name {args.name!r} must be a plain file name (no '/'), e.g. --name master",
              file=sys.stderr)
        return 2
    secret_path = os.path.join(args.out, f"{args.name}.key_secret")
    if os.path.lexists(secret_path) and not args.force:
        print(f"offerd keygen: {secret_path} already exists; keeping it. Its clients know its public key: "
              f"pass --force to replace it anyway, or choose another --name or --out.", file=sys.stderr)
        return 1
    try:
        # Replace, never write through an old file: it may be a link to somewhere else.
        for path in (secret_path, os.path.join(args.out, f"{args.name}.key")):
            if os.path.lexists(path):
                os.unlink(path)
        public_path, secret_path = curve.generate(args.out, args.name)
        public, _ = curve.load_key_pair(secret_path)
    except (OSError, curve.KeyFileError) as exc:
        print(f"offerd keygen: cannot write the key files into {args.out}: {exc}", file=sys.stderr)
        return 1
    print(f"secret key pair  {os.path.abspath(secret_path)}  (master: --zmq_key_file={os.path.abspath(secret_path)})")
    print(f"public key       {os.path.abspath(public_path)}  (clients: --master_public_key={os.path.abspath(public_path)})")
    print(f"public key value {public.decode('ascii')}")
    return 0
