"""template.yaml as the single source of truth for local runs (dev-only; Lambda code never imports it).

Reads the SAM template, provisions what the functions need (the tables with their GSIs and
streams, the videos bucket, the queues, the event bus, the secrets) into whatever AWS endpoint
boto3 points at (moto in process or moto's server), and computes each function's environment and
the API's routes from it. Intrinsics resolve as CloudFormation would (Ref, GetAtt, Sub, If with
the template's Conditions, Join, Select); AWS::StackName is the local prefix.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
# What `!Ref` of the API resolves to locally: the id the local gateway puts in requestContext.apiId.
LOCAL_API_ID = "local"


class _NoValue:
    """AWS::NoValue: a property or list item that resolves to it is left out."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML loader that keeps CloudFormation's short-form tags as their long-form dicts (libyaml's
    C parser where PyYAML has it: the pure-Python one took a quarter of a second per load)."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain data; parsed once per file version, a fresh copy for each caller."""
    return copy.deepcopy(_parsed(path.resolve(), path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _parsed(path: Path, _version: int) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.load(handle, Loader=_CfnLoader)  # noqa: S506  (a SafeLoader subclass)


@dataclass(frozen=True)
class Route:
    method: str  # upper case
    path: str  # as in the template, e.g. /v1/videos/{video_id}
    function_id: str
    api_key_required: bool

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method.upper() != self.method:
            return None
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        found = re.match(pattern, path)
        return found.groupdict() if found else None


@dataclass
class Stack:
    """Physical names and attributes of provisioned resources, for resolving Ref and GetAtt."""

    template: dict[str, Any]
    parameters: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    stack_name: str = "local"  # AWS::StackName (provision() uses its prefix)
    secret_values: dict[str, str] = field(default_factory=dict)  # as provisioned, by logical id

    # --- reading the template ---
    def functions(self) -> dict[str, dict[str, Any]]:
        return {
            name: resource
            for name, resource in self.template["Resources"].items()
            if resource["Type"] == "AWS::Serverless::Function"
        }

    def function_events(self, function_id: str) -> dict[str, dict[str, Any]]:
        """function_events(self.template, function_id): SAM Events and event source mappings."""
        return function_events(self.template, function_id)

    def routes(self) -> list[Route]:
        api_auth = {}
        for resource in self.template["Resources"].values():
            if resource["Type"] == "AWS::Serverless::Api":
                api_auth = resource.get("Properties", {}).get("Auth", {})
        default_required = bool(api_auth.get("ApiKeyRequired", False))
        routes = []
        for name, function in self.functions().items():
            for event in function.get("Properties", {}).get("Events", {}).values():
                if event.get("Type") != "Api":
                    continue
                props = event["Properties"]
                required = props.get("Auth", {}).get("ApiKeyRequired", default_required)
                routes.append(Route(props["Method"].upper(), props["Path"], name, bool(required)))
        return routes

    def function_environment(self, function_id: str) -> dict[str, str]:
        """Globals plus the function's own variables, with Refs resolved to provisioned names."""
        global_vars = (
            self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        )
        own = self.functions()[function_id].get("Properties", {}).get("Environment", {}).get("Variables", {})
        resolved = {key: self.resolve(value) for key, value in {**global_vars, **own}.items()}
        return {key: str(value) for key, value in resolved.items() if value is not NO_VALUE}

    def code_dir(self, function_id: str) -> Path:
        return ROOT / self.functions()[function_id]["Properties"]["CodeUri"]

    # --- resolving intrinsics ---
    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            ((name, argument),) = value.items()
            if name == "Ref":
                return self._ref(argument)
            if name == "Fn::GetAtt":
                resource, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                return self.attributes[(resource, attribute)]
            if name == "Fn::Sub":
                return self._substitute(argument)
            if name == "Fn::If":
                condition, when_true, when_false = argument
                return self.resolve(when_true if self.condition(condition) else when_false)
            if name == "Fn::Join":
                separator, items = argument
                return str(separator).join(str(item) for item in self.resolve(items))
            if name == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(self.resolve(index))]
            if name in _CONDITION_FUNCTIONS:
                return self._truth(value)
        if isinstance(value, list):
            return [item for item in (self.resolve(item) for item in value) if item is not NO_VALUE]
        if isinstance(value, (str, int, float, bool)):
            return value
        raise ValueError(f"Cannot resolve {value!r} locally")

    def condition(self, name: str) -> bool:
        """The value of one of the template's Conditions."""
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise KeyError(f"{name} is not a condition of the template")
        return self._truth(conditions[name])

    def _truth(self, expression: Any) -> bool:
        if isinstance(expression, bool):
            return expression
        if isinstance(expression, dict) and len(expression) == 1:
            ((name, argument),) = expression.items()
            if name == "Fn::Equals":
                left, right = (self.resolve(item) for item in argument)
                return _cfn_string(left) == _cfn_string(right)
            if name == "Fn::Not":
                (inner,) = argument
                return not self._truth(inner)
            if name == "Fn::And":
                return all(self._truth(item) for item in argument)
            if name == "Fn::Or":
                return any(self._truth(item) for item in argument)
            if name in ("Condition", "Fn::Condition"):
                return self.condition(argument)
        raise ValueError(f"Cannot evaluate the condition {expression!r} locally")

    def _substitute(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument

        def value(found: re.Match[str]) -> str:
            name = found.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} is written as ${Literal}
            if name in variables:
                return str(self.resolve(variables[name]))
            return self._sub(name)

        return re.sub(r"\$\{([^}]+)\}", value, text)

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{self.stack_name}/local",
            "AWS::NoValue": NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.refs:
            return self.refs[name]
        raise KeyError(f"{name} is not provisioned locally")

    def _sub(self, name: str) -> str:
        if "." in name and not name.startswith("AWS::"):
            resource, attribute = name.split(".", 1)
            return self.attributes[(resource, attribute)]
        return str(self._ref(name))


_CONDITION_FUNCTIONS = frozenset({"Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition", "Fn::Condition"})


def _cfn_string(value: Any) -> str:
    """How Fn::Equals sees a value: as CloudFormation's string (true/false for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _variables(function_props: dict[str, Any]) -> dict[str, Any]:
    return function_props.get("Environment", {}).get("Variables", {})


# SAM event types of the resources an AWS::Lambda::EventSourceMapping reads, and the property
# that names the source in SAM's own event shape.
_MAPPED_SOURCES = {"AWS::SQS::Queue": ("SQS", "Queue"), "AWS::DynamoDB::Table": ("DynamoDB", "Stream")}


def function_events(template: dict[str, Any], function_id: str) -> dict[str, dict[str, Any]]:
    """A function's triggers in SAM's event shape ({name: {"Type", "Properties"}}): its own
    `Events`, plus every AWS::Lambda::EventSourceMapping whose FunctionName refers to it (named by
    its logical id; the template uses those to keep SAM's managed policies with Resource "*" off
    the functions' roles)."""
    resources = template["Resources"]
    events = dict(resources[function_id].get("Properties", {}).get("Events", {}))
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        props = dict(resource.get("Properties", {}))
        if _logical_id(props.get("FunctionName")) != function_id:
            continue
        source = props.pop("EventSourceArn")
        kind, key = _MAPPED_SOURCES[resources[_logical_id(source)]["Type"]]
        props.pop("FunctionName")
        events[name] = {"Type": kind, "Properties": {key: source, **props}}
    return events


def _logical_id(value: Any) -> str | None:
    """The logical id a !Ref or !GetAtt points at (None for anything else)."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".", 1)[0])
    return None


def parameter_values(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, str]:
    values = {
        name: str(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
        if "Default" in spec
    }
    values.update(overrides)
    missing = [name for name in template.get("Parameters", {}) if name not in values]
    if missing:
        raise ValueError(f"Template parameters without a value: {', '.join(missing)}")
    return values


def _generated_secret(spec: dict[str, Any]) -> str:
    alphabet = string.ascii_letters + string.digits
    if not spec.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    return "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))


def provision(prefix: str, parameters: dict[str, str], *, template: dict[str, Any] | None = None) -> Stack:
    """Create the template's tables, bucket, queues, event buses and secrets through boto3's current
    endpoint. Physical names start with `prefix`, which is also the stack's AWS::StackName."""
    template = template or load_template()
    stack = Stack(template, parameter_values(template, parameters), stack_name=prefix)
    clients = AwsClients()
    resources = template["Resources"]
    # Queues that others redrive into must exist first.
    ordered = sorted(resources.items(), key=lambda item: "RedrivePolicy" in item[1].get("Properties", {}))
    for name, resource in ordered:
        if "Condition" in resource and not stack.condition(resource["Condition"]):
            continue  # e.g. a provider's key secret when its key parameter is empty
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::DynamoDB::Table":
            _create_table(clients.dynamodb, stack, name, props)
        elif kind == "AWS::S3::Bucket":
            bucket = f"{prefix}-{name}".lower()
            clients.s3.create_bucket(Bucket=bucket)
            if props.get("PublicAccessBlockConfiguration"):
                clients.s3.put_public_access_block(
                    Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
                )
            if props.get("BucketEncryption"):
                clients.s3.put_bucket_encryption(
                    Bucket=bucket,
                    # CloudFormation's names differ from the API's here.
                    ServerSideEncryptionConfiguration={
                        "Rules": [
                            {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
                            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
                        ]
                    },
                )
            stack.refs[name] = bucket
            stack.attributes[(name, "Arn")] = f"arn:aws:s3:::{bucket}"
        elif kind == "AWS::SQS::Queue":
            _create_queue(clients.sqs, stack, name, props)
        elif kind == "AWS::Events::EventBus":
            bus = str(stack.resolve(props["Name"])) if "Name" in props else f"{prefix}-{name}"
            arn = clients.events.create_event_bus(Name=bus)["EventBusArn"]
            stack.refs[name] = bus
            stack.attributes[(name, "Arn")] = arn
            stack.attributes[(name, "Name")] = bus
        elif kind == "AWS::Serverless::Api":
            # Nothing to create (devstack.gateway serves it); its id, for !Ref and ${RestApi}.
            stack.refs[name] = LOCAL_API_ID
        elif kind == "AWS::SecretsManager::Secret":
            if "SecretString" in props:
                value = str(stack.resolve(props["SecretString"]))
            else:
                value = _generated_secret(props.get("GenerateSecretString", {}))
            arn = clients.secretsmanager.create_secret(Name=f"{prefix}/{name}", SecretString=value)["ARN"]
            stack.refs[name] = arn
            stack.secret_values[name] = value
    return stack


class AwsClients:
    """The boto3 clients provision() and reset() use, each made on first use (through boto3's
    endpoint and default session at that time); reset() callers may keep one for many resets."""

    @functools.cached_property
    def dynamodb(self) -> Any:
        return boto3.client("dynamodb", region_name=REGION)

    @functools.cached_property
    def s3(self) -> Any:
        return boto3.client("s3", region_name=REGION)

    @functools.cached_property
    def sqs(self) -> Any:
        return boto3.client("sqs", region_name=REGION)

    @functools.cached_property
    def events(self) -> Any:
        return boto3.client("events", region_name=REGION)

    @functools.cached_property
    def secretsmanager(self) -> Any:
        return boto3.client("secretsmanager", region_name=REGION)


def _create_table(dynamodb: Any, stack: Stack, name: str, props: dict[str, Any]) -> None:
    table = f"{stack.stack_name}-{name}"
    request: dict[str, Any] = {
        "TableName": table,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if props.get("GlobalSecondaryIndexes"):
        request["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if props.get("StreamSpecification"):
        request["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    description = dynamodb.create_table(**request)["TableDescription"]
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification=ttl)
    stack.refs[name] = table
    stack.attributes[(name, "Arn")] = description["TableArn"]
    if description.get("LatestStreamArn"):
        stack.attributes[(name, "StreamArn")] = description["LatestStreamArn"]


def _create_queue(
    sqs: Any, stack: Stack, name: str, props: dict[str, Any], *, known_arn: bool = False
) -> None:
    attributes = {
        key: str(stack.resolve(props[key]))
        for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds")
        if key in props
    }
    if "RedrivePolicy" in props:
        redrive = {key: stack.resolve(value) for key, value in props["RedrivePolicy"].items()}
        attributes["RedrivePolicy"] = json.dumps(redrive)
    url = sqs.create_queue(QueueName=f"{stack.stack_name}-{name}", Attributes=attributes)["QueueUrl"]
    stack.refs[name] = url
    if known_arn:  # made again: same name, same ARN
        return
    stack.attributes[(name, "Arn")] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    stack.attributes[(name, "QueueName")] = f"{stack.stack_name}-{name}"


# --- putting a provisioned stack back (tests provision once per session and reset per test) ---

# Operations that change nothing (by name); everything else an AWS client calls is a change.
_READ_PREFIXES = ("Get", "Describe", "List", "Query", "Scan", "BatchGet", "TransactGet", "Head")
_TABLE_WRITES = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteStatement",
        "BatchExecuteStatement",
        "ExecuteTransaction",
    }
)
_MESSAGE_OPERATIONS = frozenset(
    {
        "SendMessage",
        "SendMessageBatch",
        "ReceiveMessage",
        "DeleteMessage",
        "DeleteMessageBatch",
        "ChangeMessageVisibility",
        "ChangeMessageVisibilityBatch",
        "PurgeQueue",
    }
)
_OBJECT_WRITES = frozenset(
    {
        "PutObject",
        "CopyObject",
        "DeleteObject",
        "DeleteObjects",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "PutObjectTagging",
        "DeleteObjectTagging",
    }
)
_RULE_OPERATIONS = frozenset(
    {"PutRule", "PutTargets", "RemoveTargets", "DeleteRule", "EnableRule", "DisableRule"}
)

Call = tuple[str, str, dict[str, Any]]  # service, operation, parameters


class Changes:
    """The calls this process makes to AWS's own endpoints (which moto's in-process mock answers;
    not a moto server on 127.0.0.1) that may change something, while `recording`: what reset()
    must undo. Installed once, as botocore handlers of every session made afterwards (and of
    boto3's default session, if there is one)."""

    _PARAMS = "devstack.changes.params"  # where the call's parameters wait in its request context

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.recording = False

    def install(self) -> Changes:
        from botocore.handlers import BUILTIN_HANDLERS

        handlers = [("before-parameter-build", self._keep_params), ("before-call", self._record)]
        BUILTIN_HANDLERS.extend(handlers)
        if boto3.DEFAULT_SESSION is not None:
            for event, handler in handlers:
                boto3.DEFAULT_SESSION.events.register(event, handler)
        return self

    def _keep_params(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if self.recording and not model.name.startswith(_READ_PREFIXES):
            context[self._PARAMS] = dict(params)

    def _record(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        api_params = context.pop(self._PARAMS, None)
        host = urlsplit(params.get("url", "")).hostname or ""
        if self.recording and api_params is not None and host.endswith(".amazonaws.com"):
            self.calls.append((model.service_model.service_name, model.name, api_params))

    def take(self) -> list[Call]:
        """The calls recorded since the last take()."""
        calls, self.calls = self.calls, []
        return calls


@dataclass
class _Undo:
    tables: bool = False
    # Queues (logical ids) made again: emptier than a purge (which SQS, and moto, allow once a
    # minute per queue), and it undoes SetQueueAttributes too.
    queues: set[str] = field(default_factory=set)
    extra_queues: bool = False
    bucket: bool = False
    rules: bool = False
    secrets: bool = False


class ResetImpossible(Exception):
    """The stack changed in a way reset() does not undo (a resource deleted or reconfigured, or
    the backend is no longer the one provisioned): provision again."""


def reset(stack: Stack, changes: list[Call] | None = None, *, clients: AwsClients | None = None) -> None:
    """Put a provisioned stack's resources back as provision() left them, through boto3's current
    endpoint: tables made again (empty, with a fresh stream), queues made again (empty, as
    configured), the bucket emptied, extra queues and rules removed, secrets at their values.
    With `changes` (Changes.take()), only what those calls touched; None: everything. The
    resources keep their names, URLs and ARNs, except the table streams' ARNs (updated in `stack`).
    Raises ResetImpossible when it cannot (provision again then)."""
    from botocore.exceptions import ClientError

    clients = clients or AwsClients()
    undo = _undo_everything(stack) if changes is None else _undo_for(stack, changes)
    resources = stack.template["Resources"]
    try:
        _check_provisioned(clients, stack, restore=undo.secrets)
        if undo.tables:
            for name, resource in resources.items():
                if resource["Type"] == "AWS::DynamoDB::Table":
                    clients.dynamodb.delete_table(TableName=stack.refs[name])
                    _create_table(clients.dynamodb, stack, name, resource.get("Properties", {}))
        for name in _with_their_sources(stack, undo.queues):
            clients.sqs.delete_queue(QueueUrl=stack.refs[name])
            _create_queue(clients.sqs, stack, name, resources[name].get("Properties", {}), known_arn=True)
        if undo.extra_queues:
            ours = {stack.refs[name] for name in _of_type(stack, "AWS::SQS::Queue")}
            for url in clients.sqs.list_queues(MaxResults=1000).get("QueueUrls", []):
                if url not in ours:
                    clients.sqs.delete_queue(QueueUrl=url)
        if undo.bucket:
            for name in _of_type(stack, "AWS::S3::Bucket"):
                _empty_bucket(clients.s3, stack.refs[name])
        if undo.rules:
            for name in _of_type(stack, "AWS::Events::EventBus"):
                _remove_rules(clients.events, stack.refs[name])
    except ClientError as error:
        raise ResetImpossible(str(error)) from error


def _with_their_sources(stack: Stack, queues: set[str]) -> list[str]:
    """`queues` and the template's queues that redrive into them (moto's queue holds its
    dead-letter queue itself, found when its policy is set: a queue made again needs its sources
    made again), dead-letter queues first."""
    resources = stack.template["Resources"]
    targets = {name: _dead_letter_targets(stack, name, {}) for name in _of_type(stack, "AWS::SQS::Queue")}
    arns = {stack.attributes[(name, "Arn")] for name in queues}
    sources = {name for name, their in targets.items() if arns & set(their)}
    return sorted(queues | sources, key=lambda id: "RedrivePolicy" in resources[id].get("Properties", {}))


def _of_type(stack: Stack, kind: str) -> list[str]:
    return [name for name, resource in stack.template["Resources"].items() if resource["Type"] == kind]


def _undo_everything(stack: Stack) -> _Undo:
    queues = set(_of_type(stack, "AWS::SQS::Queue"))
    return _Undo(tables=True, queues=queues, extra_queues=True, bucket=True, rules=True, secrets=True)


def _undo_for(stack: Stack, calls: list[Call]) -> _Undo:
    """What undoes `calls`; ResetImpossible for a call it cannot undo."""
    undo = _Undo()
    queues = {stack.refs[name]: name for name in _of_type(stack, "AWS::SQS::Queue")}
    queue_arns = {stack.attributes[(name, "Arn")]: name for name in queues.values()}
    buckets = {stack.refs[name] for name in _of_type(stack, "AWS::S3::Bucket")}
    buses = {stack.refs[name] for name in _of_type(stack, "AWS::Events::EventBus")}
    for service, operation, params in calls:
        if service == "dynamodbstreams":
            continue
        if service == "dynamodb" and operation in _TABLE_WRITES:
            undo.tables = True
        elif service == "sqs" and operation in _MESSAGE_OPERATIONS | {"SetQueueAttributes"}:
            queue = queues.get(params.get("QueueUrl", ""))
            if queue is None:  # a queue the caller made: it goes
                undo.extra_queues = True
                continue
            undo.queues.add(queue)
            # A receive past maxReceiveCount moves the message to the dead-letter queue.
            for target in _dead_letter_targets(stack, queue, params):
                if target in queue_arns:
                    undo.queues.add(queue_arns[target])
        elif service == "sqs" and operation in ("CreateQueue", "DeleteQueue"):
            if operation == "DeleteQueue" and params.get("QueueUrl") in queues:
                raise ResetImpossible(f"{operation} {params.get('QueueUrl')}")
            undo.extra_queues = True
        elif service == "s3" and operation in _OBJECT_WRITES and params.get("Bucket") in buckets:
            undo.bucket = True
        elif service == "events" and operation == "PutEvents":
            continue  # reaches only the targets of rules the caller put (undone with them)
        elif service == "events" and operation in _RULE_OPERATIONS and params.get("EventBusName") in buses:
            undo.rules = True
            if operation == "PutTargets":  # a queue of ours among them may receive events
                targets = {target.get("Arn") for target in params.get("Targets", [])}
                undo.queues.update(queue_arns[arn] for arn in targets if arn in queue_arns)
        else:
            raise ResetImpossible(f"{service} {operation}")
    return undo


def _dead_letter_targets(stack: Stack, queue: str, params: dict[str, Any]) -> list[str]:
    template_policy = stack.template["Resources"][queue].get("Properties", {}).get("RedrivePolicy", {})
    policies = [{key: stack.resolve(value) for key, value in template_policy.items()}]
    if "RedrivePolicy" in params.get("Attributes", {}):
        policies.append(json.loads(params["Attributes"]["RedrivePolicy"] or "{}"))
    return [str(policy["deadLetterTargetArn"]) for policy in policies if policy.get("deadLetterTargetArn")]


def _check_provisioned(clients: AwsClients, stack: Stack, *, restore: bool) -> None:
    """Fail unless the backend still holds this stack (its secrets' values are random, so a backend
    reset, or provisioned again, shows); with `restore`, every secret gets its value back."""
    for name, value in stack.secret_values.items():
        current = clients.secretsmanager.get_secret_value(SecretId=stack.refs[name])["SecretString"]
        if restore and current != value:
            clients.secretsmanager.put_secret_value(SecretId=stack.refs[name], SecretString=value)
        elif current != value:
            raise ResetImpossible(f"{name} is not the secret provisioned")
        if not restore:
            return  # one is enough to recognise the stack


def _empty_bucket(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def _remove_rules(events: Any, bus: str) -> None:
    for rule in events.list_rules(EventBusName=bus).get("Rules", []):
        targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus).get("Targets", [])
        if targets:
            events.remove_targets(Rule=rule["Name"], EventBusName=bus, Ids=[t["Id"] for t in targets])
        events.delete_rule(Name=rule["Name"], EventBusName=bus)


def secret_value(stack: Stack, logical_id: str) -> str:
    client = boto3.client("secretsmanager", region_name=REGION)
    return client.get_secret_value(SecretId=stack.refs[logical_id])["SecretString"]
