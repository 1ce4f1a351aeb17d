"""Group operations on top of the core's apps.

A group is the set of apps under its path, plus optional stored settings
(`core.groups`: dependencies, and empty groups created by POST). Versions of a
group are derived from the stored versions of its apps: the group "at" a
timestamp is each of its current apps at its newest version not after it.
"""

from __future__ import annotations

from frameworks.marathon_like import deployments as plans
from frameworks.marathon_like import ids
from frameworks.marathon_like.errors import BadRequest, NotFound, NotValid, group_not_found


def under(group_id: str, path: str) -> bool:
    return group_id == "/" or path == group_id or path.startswith(group_id.rstrip("/") + "/")


def exists(core, group_id: str) -> bool:
    return group_id == "/" or group_id in core.groups or any(under(group_id, a) for a in core.apps if a != group_id)


def flatten(group: dict, parent: str) -> tuple[list[dict], list[tuple[str, list[str]]]]:
    """The apps of a group body with absolute ids, and every group in it with its dependencies."""
    group_id = ids.canonical(group.get("id") or "", parent)
    apps, groups = [], [(group_id, [ids.canonical(d, group_id) for d in group.get("dependencies") or []
                                    if isinstance(d, str)])]
    for app in group.get("apps") or []:
        if not isinstance(app, dict):
            raise NotValid([{"path": "/apps", "errors": ["expected an object"]}])
        app = dict(app)
        app["id"] = ids.canonical(app.get("id") or "", group_id)
        apps.append(app)
    for child in group.get("groups") or []:
        if not isinstance(child, dict):
            raise NotValid([{"path": "/groups", "errors": ["expected an object"]}])
        more_apps, more_groups = flatten(child, group_id)
        apps += more_apps
        groups += more_groups
    return apps, groups


def check_ids(groups: list[tuple[str, list[str]]]) -> None:
    for group_id, _ in groups:
        if group_id != "/" and ids.path_errors(group_id):
            raise NotValid([{"path": "/id", "errors": ids.path_errors(group_id)}])


def save_settings(core, groups: list[tuple[str, list[str]]], version: str, replace: bool = True) -> None:
    check_ids(groups)
    for group_id, dependencies in groups:
        old = core.groups.get(group_id) or {}
        meta = {"id": group_id, "dependencies": dependencies if (replace or dependencies) else old.get("dependencies", []),
                "version": version}
        core.groups[group_id] = meta
        core.storage.save_group(meta)


def delete_settings(core, group_id: str) -> None:
    for gid in [g for g in core.groups if under(group_id, g)]:
        core.groups.pop(gid, None)
        core.storage.delete_group(gid)


def dry_run(core, apps: list[dict], partial: bool = True) -> plans.Deployment:
    """The plan PUT would start, without changing anything (`dryRun=true`)."""
    original, target = {}, {}
    version = ids.timestamp()
    for raw in apps:
        old = core.apps.get(raw["id"])
        app = core._new_app(raw, old if partial else None, raw["id"])
        core._stamp(app, old, version)
        original[app["id"]], target[app["id"]] = old, app
    return plans.build_plan(original, target, version=version)


def versions(core, group_id: str) -> list[str]:
    if not exists(core, group_id):
        raise group_not_found(group_id)
    found = {v for a in core.apps if under(group_id, a) for v in core.storage.app_versions(a)}
    found |= {g["version"] for k, g in core.groups.items() if under(group_id, k) and g.get("version")}
    return sorted(found, reverse=True)


def apps_at(core, group_id: str, version: str) -> dict[str, dict]:
    """Each current app of the group at its newest stored version not after `version`."""
    at = ids.parse_timestamp(version)
    if at is None:
        raise BadRequest(f"Invalid version '{version}'")
    out = {}
    for app_id in core.apps:
        if not under(group_id, app_id):
            continue
        for stored in core.storage.app_versions(app_id):
            moment = ids.parse_timestamp(stored)
            if moment is not None and moment <= at + 1e-6:
                app = core.storage.app_version(app_id, stored)
                if app:
                    out[app_id] = app
                break
    return out


def group_at(core, group_id: str, version: str) -> dict:
    if version not in versions(core, group_id):
        raise NotFound(f"Group {group_id} does not exist in version {version}")
    return core.group_json_of(apps_at(core, group_id, version), group_id)


def rollback(core, group_id: str, version: str, force: bool) -> plans.Deployment | None:
    """PUT {"version": ts}: every app of the group back to how it was at `ts`."""
    if version not in versions(core, group_id):
        raise NotFound(f"Group {group_id} does not exist in version {version}")
    deployment = None
    for app_id, app in sorted(apps_at(core, group_id, version).items()):
        deployment = core.rollback_app(app_id, app["version"], force)
    return deployment


def scale_by(core, group_id: str, factor: float, force: bool) -> plans.Deployment | None:
    deployment = None
    for app_id in sorted(a for a in core.apps if under(group_id, a)):
        app = core.apps[app_id]
        delta = round(app["instances"] * factor) - app["instances"]
        deployment = core.scale_app(app_id, delta, force)
    return deployment


def empty_plan(core) -> plans.Deployment:
    return plans.build_plan({}, {}, version=core.clock.next())
