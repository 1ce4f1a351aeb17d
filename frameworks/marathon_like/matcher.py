"""Match one app against what is left of one offer, and build the TaskInfo.

`match` answers a :class:`Placement` or a reject reason with Marathon's names
(`InsufficientCpus`, `UnfulfilledConstraint`, ...), which the launch queue
counts into ``processedOffersSummary``. Resource arithmetic is
``offerd.common.resources`` only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from offerd.common.resources import Resources
from offerd.proto import offerd_pb2 as pb

from frameworks.marathon_like import constraints as _constraints
from frameworks.marathon_like.health import to_mesos
from frameworks.marathon_like.model import mesos_check


@dataclass
class OfferView:
    """What is left of an offer while the queue is matched against it."""

    offer: pb.Offer
    remaining: Resources
    hostname: str
    attributes: dict
    launched: int = 0

    @classmethod
    def of(cls, offer: pb.Offer) -> "OfferView":
        return cls(offer, Resources.from_protos(offer.resources), offer.hostname, attributes_of(offer))


@dataclass
class Placement:
    resources: Resources
    ports: list[int]
    role: str


def attributes_of(offer: pb.Offer) -> dict:
    out = {}
    for attr in offer.attributes:
        if attr.type == pb.Value.TEXT:
            out[attr.name] = attr.text.value
        elif attr.type == pb.Value.SCALAR:
            out[attr.name] = f"{attr.scalar.value:g}"
        elif attr.type == pb.Value.SET:
            out[attr.name] = ",".join(attr.set.item)
        elif attr.type == pb.Value.RANGES:
            out[attr.name] = ",".join(f"[{r.begin}-{r.end}]" for r in attr.ranges.range)
    return out


def _pools(remaining: Resources, roles: list[str]) -> list[tuple[str, Resources]]:
    pools = []
    for role in roles:
        pool = remaining.unreserved() if role == "*" else remaining.reserved(role)
        if pool:
            pools.append((role, pool))
    return pools


def _pick_ports(pool: Resources, role: str, wanted: list[int], require: bool) -> list[int] | None:
    ranges = pool.ranges("ports", role)
    if require:
        ok = all(any(b <= p <= e for b, e in ranges) for p in wanted)
        return list(wanted) if ok else None
    picked: list[int] = []
    for begin, end in ranges:
        port = begin
        while port <= end and len(picked) < len(wanted):
            picked.append(port)
            port += 1
        if len(picked) == len(wanted):
            break
    return picked if len(picked) == len(wanted) else None


def match(app: dict, view: OfferView, roles: list[str], placed: list[tuple[str, dict]]) -> Placement | str:
    """A Placement for one instance of `app` on `view`, or the reason it does not fit."""
    pools = _pools(view.remaining, app.get("acceptedResourceRoles") or roles)
    if not pools:
        return "UnfulfilledRole"
    reason = "InsufficientCpus"
    for role, pool in pools:
        reason = _fit(app, pool, role)
        if isinstance(reason, Placement):
            break
    if not isinstance(reason, Placement):
        return reason
    if app.get("constraints") and _constraints.check(app["constraints"], view.hostname, view.attributes, placed):
        return _constraints.UNFULFILLED
    return reason


def _fit(app: dict, pool: Resources, role: str) -> Placement | str:
    need = {"cpus": app["cpus"], "mem": app["mem"], "disk": app["disk"], "gpus": app.get("gpus", 0)}
    names = {"cpus": "InsufficientCpus", "mem": "InsufficientMemory", "disk": "InsufficientDisk",
             "gpus": "InsufficientGpus"}
    for name, amount in need.items():
        if amount and pool.scalar(name, role) + 1e-9 < amount:
            return names[name]
    wanted = [p.get("port", 0) for p in app["portDefinitions"]]
    ports: list[int] = []
    if wanted:
        picked = _pick_ports(pool, role, wanted, app.get("requirePorts", False))
        if picked is None:
            return "InsufficientPorts"
        ports = picked
    resources = Resources.from_scalars(need, role) + Resources.from_ranges("ports", [(p, p) for p in ports], role)
    return Placement(resources, ports, role)


def _label_key(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", key).upper()


def task_env(app: dict, task_id: str, host: str, ports: list[int]) -> dict[str, str]:
    """The environment Marathon gives a task."""
    env = {k: v for k, v in (app.get("env") or {}).items() if isinstance(v, str)}
    definitions = app["portDefinitions"]
    for index, port in enumerate(ports):
        env[f"PORT{index}"] = str(port)
        service = definitions[index].get("port", 0) if index < len(definitions) else 0
        if service:
            env[f"PORT_{service}"] = str(port)
        name = definitions[index].get("name") if index < len(definitions) else None
        if name:
            env[f"PORT_{_label_key(name)}"] = str(port)
    if ports:
        env["PORT"] = str(ports[0])
        env["PORTS"] = ",".join(str(p) for p in ports)
    labels = app.get("labels") or {}
    env.update({
        "HOST": host, "MARATHON_APP_ID": app["id"], "MARATHON_APP_VERSION": app["version"],
        "MARATHON_APP_RESOURCE_CPUS": f"{app['cpus']:g}", "MARATHON_APP_RESOURCE_MEM": f"{app['mem']:g}",
        "MARATHON_APP_RESOURCE_DISK": f"{app['disk']:g}", "MARATHON_APP_RESOURCE_GPUS": str(app.get("gpus", 0)),
        "MARATHON_APP_LABELS": " ".join(_label_key(k) for k in labels), "MESOS_TASK_ID": task_id,
    })
    for key, value in labels.items():
        env[f"MARATHON_APP_LABEL_{_label_key(key)}"] = value
    image = ((app.get("container") or {}).get("docker") or {}).get("image")
    if image:
        env["MARATHON_APP_DOCKER_IMAGE"] = image
    return env


def build_task(app: dict, task_id: str, view: OfferView, placement: Placement) -> pb.TaskInfo:
    task = pb.TaskInfo(name=app["id"].strip("/").replace("/", "."))
    task.task_id.value = task_id
    task.slave_id.CopyFrom(view.offer.slave_id)
    task.resources.extend(placement.resources.to_protos())
    if app.get("args"):
        task.command.shell = False
        task.command.value = app["args"][0]
        task.command.arguments.extend(app["args"])
    else:
        task.command.value = app.get("cmd") or ""
    if app.get("user"):
        task.command.user = app["user"]
    for uri in app.get("uris") or []:
        task.command.uris.add(value=uri)
    for fetch in app.get("fetch") or []:
        task.command.uris.add(value=fetch["uri"], executable=fetch.get("executable", False),
                              extract=fetch.get("extract", True), cache=fetch.get("cache", False))
    for name, value in sorted(task_env(app, task_id, view.hostname, placement.ports).items()):
        task.command.environment.variables.add(name=name, value=value)
    grace = app.get("taskKillGracePeriodSeconds")
    if grace:
        task.kill_policy.grace_period.nanoseconds = int(grace * 1e9)
    check = mesos_check(app)
    if check is not None:
        task.health_check.CopyFrom(to_mesos(check, placement.ports))
    return task
