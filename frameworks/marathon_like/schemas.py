"""Marshmallow schemas: request bodies, query args and responses of the v2 API.

Loading checks JSON *types* only (Marathon's "Invalid JSON" 422 with Play-JSON
error keys); the semantic rules ("Object is not valid") live in validation.py.
Unknown and read-only request fields are dropped, as Marathon's readers do.
Defaults are applied by model.with_defaults, never here, so a partial update
can tell a missing field from a default one.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from frameworks.marathon_like.errors import InvalidJson, details_from_tree


class _Strict(fields.Field):
    """A JSON value of exactly one JSON type, with Play-JSON's error key."""

    kinds: tuple = ()
    error_key = "error.expected.jsvalue"
    openapi = {}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) and bool not in self.kinds:
            raise ValidationError(self.error_key)
        if not isinstance(value, self.kinds):
            raise ValidationError(self.error_key)
        return value

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class Number(_Strict):
    kinds = (int, float)
    error_key = "error.expected.jsnumber"
    openapi = {"type": "number"}


class Int(_Strict):
    kinds = (int, float)
    error_key = "error.expected.jsnumber"
    openapi = {"type": "integer"}

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValidationError("error.expected.int")
            value = int(value)
        return value


class Str(_Strict):
    kinds = (str,)
    error_key = "error.expected.jsstring"
    openapi = {"type": "string"}


class Bool(_Strict):
    kinds = (bool,)
    error_key = "error.expected.jsboolean"
    openapi = {"type": "boolean"}


class Obj(_Strict):
    kinds = (dict,)
    error_key = "error.expected.jsobject"
    openapi = {"type": "object"}


class Enum(Str):
    def __init__(self, choices, **kwargs):
        super().__init__(**kwargs)
        self.choices = tuple(choices)
        self.openapi = {"type": "string", "enum": list(self.choices)}

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if value not in self.choices:
            raise ValidationError("error.unknown.enum.literal")
        return value


class StrMap(Obj):
    """``{string: string}`` (env also allows ``{"secret": name}`` values)."""

    openapi = {"type": "object", "additionalProperties": {"type": "string"}}

    def __init__(self, allow_secret=False, **kwargs):
        super().__init__(**kwargs)
        self.allow_secret = allow_secret

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        errors = {}
        for key, item in value.items():
            if isinstance(item, str):
                continue
            if self.allow_secret and isinstance(item, dict) and isinstance(item.get("secret"), str):
                continue
            errors[key] = ["error.expected.jsstring"]
        if errors:
            raise ValidationError(errors)
        return value


class Arr(fields.List):
    default_error_messages = {"invalid": "error.expected.jsarray"}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("error.expected.jsarray")
        return super()._deserialize(value, attr, data, **kwargs)


class Nested(fields.Nested):
    default_error_messages = {"type": "error.expected.jsobject", "invalid": "error.expected.jsobject"}


class Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class PortDefinitionSchema(Lenient):
    port = Int()
    protocol = Enum(["tcp", "udp", "udp,tcp", "tcp,udp"])
    name = Str()
    labels = StrMap()


class HealthCheckSchema(Lenient):
    protocol = Enum(["HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"])
    path = Str()
    portIndex = Int()
    port = Int()
    command = Obj()
    gracePeriodSeconds = Int()
    intervalSeconds = Int()
    timeoutSeconds = Int()
    maxConsecutiveFailures = Int()
    delaySeconds = Int()
    ignoreHttp1xx = Bool()
    ipProtocol = Enum(["IPv4", "IPv6"])


class UpgradeStrategySchema(Lenient):
    minimumHealthCapacity = Number()
    maximumOverCapacity = Number()


class FetchSchema(Lenient):
    uri = Str()
    executable = Bool()
    extract = Bool()
    cache = Bool()
    destPath = Str()


class AppSchema(Lenient):
    """An app definition or a partial update of one (all fields optional here)."""

    id = Str()
    cmd = Str(allow_none=True)
    args = Arr(Str(), allow_none=True)
    user = Str(allow_none=True)
    env = StrMap(allow_secret=True)
    instances = Int()
    cpus = Number()
    mem = Number()
    disk = Number()
    gpus = Int()
    executor = Str()
    constraints = Arr(Arr(Str()))
    uris = Arr(Str())
    fetch = Arr(Nested(FetchSchema))
    storeUrls = Arr(Str())
    backoffSeconds = Number()
    backoffFactor = Number()
    maxLaunchDelaySeconds = Number()
    container = Obj(allow_none=True)
    healthChecks = Arr(Nested(HealthCheckSchema))
    readinessChecks = Arr(Obj())
    dependencies = Arr(Str())
    upgradeStrategy = Nested(UpgradeStrategySchema)
    labels = StrMap()
    acceptedResourceRoles = Arr(Str(), allow_none=True)
    ipAddress = Obj(allow_none=True)
    version = Str()
    residency = Obj(allow_none=True)
    secrets = Obj()
    taskKillGracePeriodSeconds = Int(allow_none=True)
    ports = Arr(Int())
    portDefinitions = Arr(Nested(PortDefinitionSchema))
    requirePorts = Bool()
    killSelection = Enum(["YOUNGEST_FIRST", "OLDEST_FIRST"])
    unreachableStrategy = fields.Raw()
    networks = Arr(Obj())


class TaskIdsSchema(Lenient):
    ids = Arr(Str(), required=True)


class GroupSchema(Lenient):
    id = Str()
    apps = Arr(fields.Raw())
    groups = Arr(fields.Raw())
    dependencies = Arr(Str())
    version = Str()
    scaleBy = Number()


# -- responses (documented in /openapi.json; contract tests check against them) --

class TaskResponse(Schema):
    id = Str(); appId = Str(); host = Str(); ports = Arr(Int()); servicePorts = Arr(Int())  # noqa: E702
    slaveId = Str(); state = Str(); stagedAt = Str(); startedAt = Str(allow_none=True)  # noqa: E702
    version = Str(); ipAddresses = Arr(Obj()); healthCheckResults = Arr(Obj())  # noqa: E702
    localVolumes = Arr(Obj())


class DeploymentResult(Schema):
    deploymentId = Str()
    version = Str()


class ErrorBody(Schema):
    message = Str()
    details = fields.Raw()
    deployments = Arr(Obj())


class AppInfoResponse(AppSchema):
    tasksStaged = Int(); tasksRunning = Int(); tasksHealthy = Int(); tasksUnhealthy = Int()  # noqa: E702
    deployments = Arr(Obj())
    tasks = Arr(Nested(TaskResponse))
    versionInfo = Obj()
    lastTaskFailure = Obj()


def load(schema: Schema, data, many: bool = False):
    """Load a body; wrong JSON types raise Marathon's 422 "Invalid JSON"."""
    if many and not isinstance(data, list):
        raise InvalidJson([{"path": "/", "errors": ["error.expected.jsarray"]}])
    if not many and not isinstance(data, dict):
        raise InvalidJson([{"path": "/", "errors": ["error.expected.jsobject"]}])
    try:
        return schema.load(data, many=many)
    except ValidationError as exc:
        raise InvalidJson(details_from_tree(exc.messages)) from None


APP = AppSchema()
GROUP = GroupSchema()
TASK_IDS = TaskIdsSchema()


# -- OpenAPI ---------------------------------------------------------------------

def field_schema(field) -> dict:
    if isinstance(field, fields.Nested):
        nested = field.nested if isinstance(field.nested, type) else type(field.nested)
        return {"$ref": f"#/components/schemas/{nested.__name__}"}
    if isinstance(field, fields.List):
        return {"type": "array", "items": field_schema(field.inner)}
    out = dict(getattr(field, "openapi", {}) or {})
    if getattr(field, "allow_none", False):
        out["nullable"] = True
    return out


def schema_component(schema_cls) -> dict:
    props = {name: field_schema(f) for name, f in schema_cls._declared_fields.items()}
    required = [name for name, f in schema_cls._declared_fields.items() if f.required]
    out = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


COMPONENTS = [AppSchema, PortDefinitionSchema, HealthCheckSchema, UpgradeStrategySchema, FetchSchema,
              TaskIdsSchema, GroupSchema, TaskResponse, DeploymentResult, ErrorBody, AppInfoResponse]
