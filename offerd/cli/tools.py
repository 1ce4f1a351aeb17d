"""Operator commands: ``offerd state|frameworks|slaves|tasks|logs|top|teardown``.

Each reads the master's HTTP endpoints (the same ones the web UI uses) and
prints a table, or the JSON document with ``--json``. Sandbox files come
through the master's proxy, so only the master has to be reachable.

A secured cluster is reached through ``OFFERD_CONFIG`` (a client.conf, as
``offerd local --secure`` writes): its master, https verified with its CA, and
HTTP Basic authentication as its principal. ``--master`` still picks the master.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from offerd.cli import tables
from offerd.common.client_config import ClientConfig, ClientConfigError, from_environment
from offerd.common.credentials import basic_auth_header
from offerd.common.detector import DetectorError, master_info, split_host_port
from offerd.common.exposure import is_loopback
from offerd.common.task_states import TERMINAL_STATES
from offerd.common.tls import TlsError, client_context
from offerd.proto import offerd_pb2 as pb

DEFAULT_MASTER = "127.0.0.1:5050"
SCALARS = ("cpus", "mem", "disk", "gpus")
TERMINAL_NAMES = {pb.TaskState.Name(s) for s in TERMINAL_STATES}

class ToolError(Exception):
    """Shown to the user as ``offerd COMMAND: message`` with exit status 1."""


def _config() -> ClientConfig:
    try:
        return from_environment()
    except ClientConfigError as exc:
        raise ToolError(f"{exc}; fix the file or unset OFFERD_CONFIG") from None


def client_from_config(master: str | None, config: ClientConfig, timeout: float = 10.0) -> "MasterClient":
    """A MasterClient for `master` (else $OFFERD_MASTER, the config's, or the default),
    with the config's CA and credential. ``http://`` in `master` turns TLS off."""
    master = master or os.environ.get("OFFERD_MASTER") or config.master or DEFAULT_MASTER
    ssl_context = None
    if not master.startswith("http://") and (config.ca_file or master.startswith("https://")):
        try:
            ssl_context = client_context(config.ca_file)
        except TlsError as exc:
            raise ToolError(f"{exc} (ca_file in OFFERD_CONFIG={config.path})") from None
    try:
        credential = config.credential
    except ClientConfigError as exc:
        raise ToolError(str(exc)) from None
    return MasterClient(master, timeout, ssl_context=ssl_context, credential=credential, config_path=config.path)


class MasterClient:
    def __init__(self, master: str, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None,
                 credential=None, config_path: str | None = None):
        try:
            if master.startswith(("zk://", "file://")):
                # The leader's MasterInfo from ZooKeeper, as slaves and schedulers find it.
                info = master_info(master, timeout)
                address = info.get("address") or {}
                host = address.get("ip") or address.get("hostname") or info.get("hostname")
                port = address.get("port") or info.get("port")
            else:
                host, port = split_host_port(master)
        except DetectorError as exc:
            raise ToolError(str(exc)) from None
        self.base = f"{'https' if ssl_context is not None else 'http'}://{host}:{port}"
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.config_path = config_path
        # A secret goes over plain http only to this machine: elsewhere anyone on the path would read it.
        self.withheld = credential is not None and ssl_context is None and not is_loopback(host)
        if self.withheld:
            credential = None
        self.principal = credential.principal if credential is not None else None
        self.headers = {}
        if credential is not None:
            self.headers["Authorization"] = basic_auth_header(credential.principal, credential.secret)

    def _open(self, endpoint: str, params: dict | None = None, data: bytes | None = None):
        url = endpoint if endpoint.startswith("http") else self.base + endpoint
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        try:
            request = urllib.request.Request(url, data=data, headers=self.headers)
            return urllib.request.urlopen(request, timeout=self.timeout, context=self.ssl_context)
        except urllib.error.HTTPError as exc:
            location = exc.headers.get("Location")
            if exc.code == 307 and data is not None and location and endpoint.startswith("/"):
                # A standby names the leader; urllib follows 307 only for GET.
                return self._open(urllib.parse.urljoin(url, location), data=data)
            message = exc.read().decode("utf-8", "replace").strip()
            raise ToolError(f"{endpoint}: {exc.code} {message}{self._advice(exc.code)}") from None
        except OSError as exc:
            raise ToolError(self._unreachable(exc)) from None

    def _advice(self, status: int) -> str:
        """What to do about a refusal, from what this client sent."""
        if status == 401 and self.withheld:
            return ("\nThe secret in OFFERD_CONFIG was not sent: this is plain http to another machine. "
                    "Use https: give --master https://HOST:PORT, or a ca_file in the client.conf.")
        if status == 401 and self.principal is None:
            return ("\nThe master requires authentication: set OFFERD_CONFIG to a client.conf with a principal "
                    "and secret (offerd local --secure writes DIR/client.conf).")
        if status == 401:
            return (f"\nThe master did not accept principal '{self.principal}' and its secret: check "
                    f"{self.config_path or 'OFFERD_CONFIG'} against the master's --credentials.")
        if status == 403:
            who = f"principal '{self.principal}'" if self.principal else "an unauthenticated request"
            return (f"\nThe master's ACLs refuse this to {who}: use a principal they allow "
                    f"(set OFFERD_CONFIG to its client.conf).")
        return ""

    def _unreachable(self, exc: OSError) -> str:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLCertVerificationError):
            return (f"cannot verify the master's certificate at {self.base}: {reason.verify_message or reason}; "
                    "set OFFERD_CONFIG to a client.conf whose ca_file is the CA that signed it")
        if isinstance(reason, ssl.SSLError):
            return (f"TLS with the master at {self.base} failed: {reason.reason or reason} "
                    "(is it serving plain http? then give --master http://HOST:PORT)")
        hint = ""
        if self.ssl_context is None and isinstance(reason, (ConnectionResetError, ConnectionAbortedError)):
            # http.client's RemoteDisconnected is one: what a TLS port does to plain http.
            hint = " (a master serving https closes plain http: set OFFERD_CONFIG, or give --master https://...)"
        return f"cannot reach the master at {self.base}: {reason}{hint}"

    def get(self, endpoint: str, **params):
        with self._open(endpoint, params) as response:
            return json.loads(response.read())

    def post(self, endpoint: str, **fields) -> str:
        with self._open(endpoint, data=urllib.parse.urlencode(fields).encode()) as response:
            return response.read().decode("utf-8", "replace")


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    command = "slaves" if command == "agents" else command
    parser.add_argument("--master", default=None, metavar="HOST:PORT",
                        help="The master's HTTP address (default: $OFFERD_MASTER, else the master of the "
                             f"client.conf that $OFFERD_CONFIG names, else {DEFAULT_MASTER}).")
    parser.add_argument("--json", action="store_true", help="Print the JSON document instead of a table.")
    if command == "frameworks":
        parser.add_argument("--all", action="store_true", help="Include completed frameworks.")
    elif command == "tasks":
        parser.add_argument("--all", action="store_true", help="Include completed tasks.")
        parser.add_argument("--framework", help="Only tasks of this framework (id or name).")
        parser.add_argument("--state", help="Only tasks in this state (e.g. running or TASK_RUNNING).")
    elif command == "logs":
        parser.add_argument("task", metavar="TASK", help="The task id.")
        parser.add_argument("--framework", help="The framework id, if task ids are not unique.")
        parser.add_argument("--stderr", action="store_true", help="Print stderr instead of stdout.")
        parser.add_argument("--follow", "-f", action="store_true",
                            help="Keep printing new output until the task ends.")
        parser.add_argument("--interval", type=float, default=0.5, help=argparse.SUPPRESS)
    elif command == "top":
        parser.add_argument("--interval", type=float, default=2.0, help="Seconds between refreshes (default 2).")
        parser.add_argument("--iterations", "-n", type=int, default=0,
                            help="Stop after N refreshes (default: until Ctrl-C).")
    elif command == "teardown":
        parser.add_argument("framework", metavar="FRAMEWORK", help="The framework id.")
    parser.set_defaults(handler=lambda args: run(command, args))


def run(command: str, args) -> int:
    try:
        client = client_from_config(args.master, _config())
        return COMMAND_FUNCTIONS[command](client, args) or 0
    except ToolError as exc:
        print(f"offerd {command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _dump(doc) -> None:
    json.dump(doc, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _used(entry: dict, key: str = "used_resources") -> list[float]:
    return [(entry.get(key) or {}).get(name, 0.0) or 0.0 for name in SCALARS]


def _all_tasks(state: dict) -> list[dict]:
    out = []
    for group in ("frameworks", "completed_frameworks"):
        for framework in state[group]:
            for key in ("tasks", "unreachable_tasks", "completed_tasks"):
                for task in framework[key]:
                    out.append(dict(task, framework_name=framework["name"]))
    return out


def cmd_state(client: MasterClient, args) -> None:
    state = client.get("/master/state")
    if args.json:
        _dump(state)
        return
    counts: dict[str, int] = {}
    for task in _all_tasks(state):
        counts[task["state"]] = counts.get(task["state"], 0) + 1
    total = [sum(s["resources"].get(n, 0) or 0 for s in state["slaves"]) for n in SCALARS]
    used = [sum(_used(s)[i] for s in state["slaves"]) for i in range(len(SCALARS))]
    offered = [sum(_used(s, "offered_resources")[i] for s in state["slaves"]) for i in range(len(SCALARS))]
    print(tables.key_values([
        ("cluster", state.get("cluster") or "(unnamed)"), ("master", f"{state['id']} ({state['pid']})"),
        ("leader", state.get("leader") or "none"), ("version", state["version"]),
        ("slaves", f"{state['activated_slaves']} active, {state['deactivated_slaves']} inactive, "
                   f"{state['unreachable_slaves']} unreachable"),
        ("frameworks", f"{len(state['frameworks'])} active, {len(state['completed_frameworks'])} completed"),
        ("tasks", ", ".join(f"{n.replace('TASK_', '').lower()} {c}" for n, c in sorted(counts.items())) or "none"),
    ]))
    print()
    print(tables.render(["resource", "total", "allocated", "offered", "idle"],
                        [[name, total[i], used[i], offered[i], max(0.0, total[i] - used[i] - offered[i])]
                         for i, name in enumerate(SCALARS)]))


def cmd_frameworks(client: MasterClient, args) -> None:
    doc = client.get("/master/frameworks")
    frameworks = doc["frameworks"] + (doc["completed_frameworks"] if args.all else [])
    if args.json:
        _dump(doc if args.all else {"frameworks": doc["frameworks"]})
        return
    print(tables.render(
        ["id", "name", "user", "roles", "active", "tasks", *SCALARS],
        [[f["id"], f["name"], f["user"], ",".join(f.get("roles") or [f.get("role", "*")]), f["active"],
          len(f["tasks"]), *_used(f)] for f in frameworks]))


def cmd_slaves(client: MasterClient, args) -> None:
    doc = client.get("/master/slaves")
    if args.json:
        _dump(doc)
        return
    rows = []
    for s in doc["slaves"]:
        used = _used(s)
        rows.append([s["id"], s["hostname"], s["active"],
                     *(f"{tables.fmt(used[i])}/{tables.fmt((s['resources'].get(n) or 0))}"
                       for i, n in enumerate(SCALARS[:3]))])
    print(tables.render(["id", "host", "active", "cpus", "mem", "disk"], rows))


def _state_name(text: str) -> str:
    text = text.upper()
    return text if text.startswith("TASK_") else "TASK_" + text


def select_tasks(state: dict, framework: str | None, task_state: str | None, include_all: bool) -> list[dict]:
    wanted = _state_name(task_state) if task_state else None
    out = []
    for task in _all_tasks(state):
        if framework and framework not in (task["framework_id"], task["framework_name"]):
            continue
        if wanted and task["state"] != wanted:
            continue
        if not include_all and not wanted and task["state"] in TERMINAL_NAMES:
            continue
        out.append(task)
    return out


def cmd_tasks(client: MasterClient, args) -> None:
    if args.state and _state_name(args.state) not in pb.TaskState.keys():
        raise ToolError(f"unknown state {args.state!r}; one of: "
                        + ", ".join(k.replace("TASK_", "").lower() for k in pb.TaskState.keys()))
    found = select_tasks(client.get("/master/state"), args.framework, args.state, args.all)
    if args.json:
        _dump({"tasks": found})
        return
    print(tables.render(["id", "name", "state", "framework", "slave", "cpus", "mem"],
                        [[t["id"], t["name"], t["state"], t["framework_name"], t["slave_id"],
                          (t["resources"] or {}).get("cpus", 0.0), (t["resources"] or {}).get("mem", 0.0)]
                         for t in found]))


def cmd_logs(client: MasterClient, args) -> None:
    try:
        box = client.get("/master/sandbox", task_id=args.task, framework_id=args.framework)
    except ToolError as exc:
        if ": 404 " not in str(exc):
            raise
        raise ToolError(f"no task '{args.task}' is known to the master"
                        + (f" in framework {args.framework}" if args.framework else "")
                        + "; 'offerd tasks --all' lists the tasks it knows") from None
    path = box["directory"].rstrip("/") + ("/stderr" if args.stderr else "/stdout")
    params = {"slave_id": box["slave_id"], "path": path}
    offset = 0
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    finished_reads = 0
    while True:
        chunk = client.get("/files/read", offset=offset, length=1 << 20, **params)
        data = chunk["data"]
        if data:
            encoded = data.encode("utf-8")
            if out is not None:
                out.write(encoded)
                out.flush()
            else:
                sys.stdout.write(data)
            offset = chunk["offset"] + len(encoded)
            continue
        if not args.follow:
            return
        if finished_reads:
            return  # the task had ended and nothing more was written
        tasks = client.get("/master/tasks", task_id=args.task, framework_id=args.framework)["tasks"]
        if not tasks or tasks[0]["state"] in TERMINAL_NAMES:
            finished_reads += 1  # one more read catches what was written just before it ended
            continue
        time.sleep(args.interval)


def top_rows(state: dict) -> tuple[list[list], list[float]]:
    total = [sum(s["resources"].get(n, 0) or 0 for s in state["slaves"]) for n in SCALARS]
    rows = []
    for f in state["frameworks"]:
        used = _used(f)
        share = max((used[i] / total[i] for i in range(len(SCALARS)) if total[i]), default=0.0)
        rows.append([f["id"], f["name"], ",".join(f.get("roles") or [f.get("role", "*")]), len(f["tasks"]),
                     *used, f"{share * 100:.1f}%"])
    rows.sort(key=lambda r: (-float(r[-1][:-1]), r[1]))
    return rows, total


def cmd_top(client: MasterClient, args) -> None:
    iteration = 0
    while True:
        state = client.get("/master/state")
        rows, total = top_rows(state)
        if args.json:
            _dump({"total": dict(zip(SCALARS, total)),
                   "frameworks": [dict(zip(["id", "name", "roles", "tasks", *SCALARS, "dominant_share"], r))
                                  for r in rows]})
        else:
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            print(f"offerd top · {state.get('cluster') or state['pid']} · {time.strftime('%H:%M:%S')} · "
                  f"{state['activated_slaves']} slaves · total "
                  + ", ".join(f"{n} {tables.fmt(total[i])}" for i, n in enumerate(SCALARS)))
            print(tables.render(["id", "name", "roles", "tasks", *SCALARS, "share"], rows))
        sys.stdout.flush()
        iteration += 1
        if args.iterations and iteration >= args.iterations:
            return
        time.sleep(args.interval)


def cmd_teardown(client: MasterClient, args) -> None:
    client.post("/master/teardown", frameworkId=args.framework)
    if args.json:
        _dump({"framework_id": args.framework, "torn_down": True})
    else:
        print(f"framework {args.framework} torn down")


COMMAND_FUNCTIONS = {
    "state": cmd_state, "frameworks": cmd_frameworks, "slaves": cmd_slaves, "tasks": cmd_tasks,
    "logs": cmd_logs, "top": cmd_top, "teardown": cmd_teardown,
}
