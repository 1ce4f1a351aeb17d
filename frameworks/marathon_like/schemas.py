"""Marshmallow schemas: request bodies, query args and responses of the v2 API.

Loading checks JSON *types* only: Marathon's 422 ``{"message": "Invalid JSON",
"details": [{"path", "errors"}]}``, each error the Play-JSON key Marathon gives
(``error.expected.jsnumber``) followed by the same in words ("expected a number,
got a string"). The semantic rules ("Object is not valid") live in validation.py.

Every field of Marathon's app and group definitions is declared here; any other
field is refused at its path (``error.unknown.field``), so a misspelt or misplaced
field never goes unnoticed. The read-only fields that GET returns (``tasks``,
``tasksRunning``, ``deployments``, ``lastTaskFailure``, ...) are accepted and left
out, as Marathon's readers ignore them, so a GET document can be sent back. A null
optional field is the field left out, as in Marathon's readers. Defaults are applied
by model.with_defaults, never here, so a partial update can tell a missing field
from a default one.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, pre_load

from frameworks.marathon_like.errors import InvalidJson, details_from_tree

UNKNOWN_FIELD = ["error.unknown.field", "unknown field: not part of this definition (misspelt, or at the wrong level?)"]


def json_type(value) -> str:
    """The JSON type of a decoded value, in words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def type_error(key: str, expected: str, value) -> ValidationError:
    """Marathon's Play-JSON key, then the same in words."""
    return ValidationError([key, f"expected {expected}, got {json_type(value)}"])


class _Strict(fields.Field):
    """A JSON value of exactly one JSON type, with Play-JSON's error key."""

    kinds: tuple = ()
    error_key = "error.expected.jsvalue"
    expected = "a JSON value"
    openapi = {}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) and bool not in self.kinds:
            raise type_error(self.error_key, self.expected, value)
        if not isinstance(value, self.kinds):
            raise type_error(self.error_key, self.expected, value)
        return value

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class Number(_Strict):
    kinds = (int, float)
    error_key = "error.expected.jsnumber"
    expected = "a number"
    openapi = {"type": "number"}


class Int(_Strict):
    kinds = (int, float)
    error_key = "error.expected.jsnumber"
    expected = "a number"
    openapi = {"type": "integer"}

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if isinstance(value, float):
            if not value.is_integer():
                raise ValidationError(["error.expected.int", f"expected a whole number, got {value}"])
            value = int(value)
        return value


class Str(_Strict):
    kinds = (str,)
    error_key = "error.expected.jsstring"
    expected = "a string"
    openapi = {"type": "string"}


class Bool(_Strict):
    kinds = (bool,)
    error_key = "error.expected.jsboolean"
    expected = "a boolean"
    openapi = {"type": "boolean"}


class Obj(_Strict):
    kinds = (dict,)
    error_key = "error.expected.jsobject"
    expected = "an object"
    openapi = {"type": "object"}


class Any(fields.Raw):
    """A read-only field of GET's answers: accepted in any shape and left out."""

    openapi = {"readOnly": True}


class Enum(Str):
    def __init__(self, choices, **kwargs):
        super().__init__(**kwargs)
        self.choices = tuple(choices)
        self.openapi = {"type": "string", "enum": list(self.choices)}

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if value not in self.choices:
            raise ValidationError(["error.unknown.enum.literal",
                                   f"expected one of {', '.join(self.choices)}, got {value!r}"])
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
            errors[key] = type_error("error.expected.jsstring", "a string", item).messages
        if errors:
            raise ValidationError(errors)
        return value


class Arr(fields.List):
    default_error_messages = {"invalid": "error.expected.jsarray"}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise type_error("error.expected.jsarray", "an array", value)
        return super()._deserialize(value, attr, data, **kwargs)


class Nested(fields.Nested):
    default_error_messages = {"type": "error.expected.jsobject", "invalid": "error.expected.jsobject"}

    def _deserialize(self, value, attr, data, partial=None, **kwargs):
        if not isinstance(value, dict):
            raise type_error("error.expected.jsobject", "an object", value)
        return super()._deserialize(value, attr, data, partial=partial, **kwargs)


class OneOf(fields.Field):
    """One of a few JSON shapes: a string among `words`, or an object of `schema`
    (unreachableStrategy: "disabled" or {inactiveAfterSeconds, expungeAfterSeconds})."""

    def __init__(self, words, schema, **kwargs):
        super().__init__(**kwargs)
        self.words, self.schema = tuple(words), schema
        self.openapi = {"oneOf": [{"type": "string", "enum": list(words)},
                                  {"$ref": f"#/components/schemas/{schema.__name__}"}]}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dict):
            return self.schema().load(value)
        if value in self.words:
            return value
        raise ValidationError(["error.expected.jsobject",
                               f"expected {' or '.join(repr(w) for w in self.words)} or an object, "
                               f"got {json_type(value) if not isinstance(value, str) else repr(value)}"])

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class Declared(Schema):
    """Declared fields only (unknown ones are refused at their path); a null optional
    field is the field left out, as in Marathon's readers."""

    class Meta:
        unknown = RAISE

    error_messages = {"unknown": UNKNOWN_FIELD[0]}

    @pre_load
    def _nulls_are_absent(self, data, **kwargs):
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items()
                if v is not None or k not in self.fields or self.fields[k].allow_none}


class PortDefinitionSchema(Declared):
    port = Int()
    protocol = Enum(["tcp", "udp", "udp,tcp", "tcp,udp"])
    name = Str()
    labels = StrMap()


class CommandSchema(Declared):
    value = Str()


class HealthCheckSchema(Declared):
    protocol = Enum(["HTTP", "HTTPS", "TCP", "COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"])
    path = Str()
    portIndex = Int()
    port = Int()
    command = Nested(CommandSchema)
    gracePeriodSeconds = Int()
    intervalSeconds = Int()
    timeoutSeconds = Int()
    maxConsecutiveFailures = Int()
    delaySeconds = Int()
    ignoreHttp1xx = Bool()
    ipProtocol = Enum(["IPv4", "IPv6"])


class ReadinessCheckSchema(Declared):
    name = Str()
    protocol = Enum(["HTTP", "HTTPS"])
    path = Str()
    portName = Str()
    intervalSeconds = Number()
    timeoutSeconds = Number()
    httpStatusCodesForReady = Arr(Int())
    preserveLastResponse = Bool()


class UpgradeStrategySchema(Declared):
    minimumHealthCapacity = Number()
    maximumOverCapacity = Number()


class UnreachableStrategySchema(Declared):
    inactiveAfterSeconds = Number()
    expungeAfterSeconds = Number()


class FetchSchema(Declared):
    uri = Str()
    executable = Bool()
    extract = Bool()
    cache = Bool()
    destPath = Str()


class NetworkSchema(Declared):
    name = Str()
    mode = Enum(["host", "container", "container/bridge"])
    labels = StrMap()


class PortMappingSchema(Declared):
    containerPort = Int()
    hostPort = Int()
    servicePort = Int()
    name = Str()
    protocol = Enum(["tcp", "udp", "udp,tcp", "tcp,udp"])
    labels = StrMap()
    networkNames = Arr(Str())


class DockerParameterSchema(Declared):
    key = Str()
    value = Str()


class DockerSchema(Declared):
    image = Str()
    network = Enum(["HOST", "BRIDGE", "USER", "NONE"])
    portMappings = Arr(Nested(PortMappingSchema))
    privileged = Bool()
    parameters = Arr(Nested(DockerParameterSchema))
    forcePullImage = Bool()
    credential = Obj()
    pullConfig = Obj()


class ContainerSchema(Declared):
    type = Enum(["DOCKER", "MESOS"])
    docker = Nested(DockerSchema)
    volumes = Arr(Obj())
    portMappings = Arr(Nested(PortMappingSchema))
    linuxInfo = Obj()


# What GET answers beside the definition: accepted (a GET document can be sent back), never kept.
APP_READ_ONLY = ("versionInfo", "tasks", "tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy",
                 "deployments", "lastTaskFailure", "taskStats", "tasksStats", "readinessCheckResults")


class AppSchema(Declared):
    """An app definition or a partial update of one (all fields optional here):
    every field of Marathon's App."""

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
    executorResources = Obj(allow_none=True)
    resourceLimits = Obj(allow_none=True)
    constraints = Arr(Arr(Str()))
    uris = Arr(Str())
    fetch = Arr(Nested(FetchSchema))
    storeUrls = Arr(Str())
    backoffSeconds = Number()
    backoffFactor = Number()
    maxLaunchDelaySeconds = Number()
    container = Nested(ContainerSchema, allow_none=True)
    healthChecks = Arr(Nested(HealthCheckSchema))
    check = Obj(allow_none=True)
    readinessChecks = Arr(Nested(ReadinessCheckSchema))
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
    unreachableStrategy = OneOf(["disabled"], UnreachableStrategySchema)
    networks = Arr(Nested(NetworkSchema))
    tty = Bool()
    role = Str()
    versionInfo = Any()
    tasks = Any()
    tasksStaged = Any()
    tasksRunning = Any()
    tasksHealthy = Any()
    tasksUnhealthy = Any()
    deployments = Any()
    lastTaskFailure = Any()
    taskStats = Any()
    tasksStats = Any()
    readinessCheckResults = Any()

    @post_load
    def _without_read_only(self, data, **kwargs):
        return {k: v for k, v in data.items() if k not in APP_READ_ONLY}


class TaskIdsSchema(Declared):
    ids = Arr(Str(), required=True)


class GroupSchema(Declared):
    """A group definition or update: every field of Marathon's GroupUpdate and Group."""

    id = Str()
    apps = Arr(Nested(AppSchema))
    groups = Arr(Nested(lambda: GroupSchema()))
    pods = Arr(Obj())
    dependencies = Arr(Str())
    version = Str()
    scaleBy = Number()
    enforceRole = Bool()


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
        raise InvalidJson(details_from_tree(_words_for_unknown(exc.messages))) from None


def _words_for_unknown(tree):
    """marshmallow's "Unknown field." becomes Marathon-style key + words."""
    if isinstance(tree, dict):
        return {k: _words_for_unknown(v) for k, v in tree.items()}
    if tree == UNKNOWN_FIELD[:1]:
        return list(UNKNOWN_FIELD)
    return tree


APP = AppSchema()
GROUP = GroupSchema()
TASK_IDS = TaskIdsSchema()


# -- OpenAPI ---------------------------------------------------------------------

def field_schema(field) -> dict:
    if isinstance(field, fields.Nested):
        nested = field.nested
        if callable(nested) and not isinstance(nested, type):
            nested = nested()          # a schema nesting itself (groups in groups)
        nested = nested if isinstance(nested, type) else type(nested)
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


COMPONENTS = [AppSchema, PortDefinitionSchema, CommandSchema, HealthCheckSchema, ReadinessCheckSchema,
              UpgradeStrategySchema, UnreachableStrategySchema, FetchSchema, NetworkSchema, PortMappingSchema,
              DockerParameterSchema, DockerSchema, ContainerSchema, TaskIdsSchema, GroupSchema, TaskResponse,
              DeploymentResult, ErrorBody, AppInfoResponse]
