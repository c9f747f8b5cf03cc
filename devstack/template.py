"""template.yaml as the single source of truth for local runs (dev-only): provisioned into whatever
endpoint boto3 points at, each function's environment and the API's routes resolved from it
(Ref, GetAtt, Sub, If with the Conditions, Join, Select; AWS::StackName is the local prefix), and
put back between tests (Changes, reset)."""

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
LOCAL_API_ID = "local"  # `!Ref` of the API: the id the local gateway puts in requestContext.apiId


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()  # AWS::NoValue: a property or list item that resolves to it is left out


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Keeps CloudFormation's short-form tags as long-form dicts. Our own 15 lines, not cfn-lint's
    decoder: importing cfnlint takes ~0.9 s per process, libyaml parses the template in 20 ms."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        return {name: value.split(".", 1) if name == "Fn::GetAtt" else value}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The template as plain data; parsed once per file version, a fresh copy for each caller."""
    return copy.deepcopy(_parsed(path.resolve(), path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _parsed(path: Path, _version: int) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.load(handle, Loader=_CfnLoader)  # noqa: S506  (a SafeLoader subclass)


def token(length: int, *, punctuation: bool = False) -> str:
    """A random string of letters and digits (and punctuation: GenerateSecretString's default)."""
    alphabet = string.ascii_letters + string.digits + ("!#$%&()*+,-.:;<=>?@[]^_{|}~" if punctuation else "")
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class Route:
    method: str  # upper case
    path: str  # as in the template, e.g. /v1/videos/{video_id}
    function_id: str
    api_key_required: bool
    authorizer: str | None = None  # the name of the API's authorizer guarding it (Auth.Authorizers)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method.upper() != self.method:
            return None
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        found = re.match(pattern, path)
        return found.groupdict() if found else None


_PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::Partition": "aws",
}


def _props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("Properties", {})


@dataclass
class Stack:
    """Physical names and attributes of provisioned resources, for resolving Ref and GetAtt."""

    template: dict[str, Any]
    parameters: dict[str, str]
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    stack_name: str = "local"  # AWS::StackName (provision() uses its prefix)
    secret_values: dict[str, str] = field(default_factory=dict)  # as provisioned, by logical id

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {name: r for name, r in self.template["Resources"].items() if r["Type"] == kind}

    def functions(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::Serverless::Function")

    def function_events(self, function_id: str) -> dict[str, dict[str, Any]]:
        return function_events(self.template, function_id)

    def routes(self) -> list[Route]:
        api_auth = next(
            (_props(r).get("Auth", {}) for r in self.of_type("AWS::Serverless::Api").values()), {}
        )
        routes = []
        for name, function in self.functions().items():
            for event in _props(function).get("Events", {}).values():
                if event.get("Type") != "Api":
                    continue
                props, auth = event["Properties"], event["Properties"].get("Auth", {})
                required = auth.get("ApiKeyRequired", api_auth.get("ApiKeyRequired", False))
                authorizer = auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
                authorizer = None if authorizer in (None, "NONE") else str(authorizer)
                routes.append(Route(props["Method"].upper(), props["Path"], name, bool(required), authorizer))
        return routes

    def function_environment(self, function_id: str) -> dict[str, str]:
        """Globals plus the function's own variables, with Refs resolved to provisioned names."""
        shared = (
            self.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        )
        own = _props(self.functions()[function_id]).get("Environment", {}).get("Variables", {})
        resolved = {key: self.resolve(value) for key, value in {**shared, **own}.items()}
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
                return self.attributes[
                    tuple(argument.split(".", 1) if isinstance(argument, str) else argument)
                ]
            if name == "Fn::Sub":
                return self._substitute(argument)
            if name == "Fn::If":
                condition, when_true, when_false = argument
                return self.resolve(when_true if self.condition(condition) else when_false)
            if name == "Fn::Join":
                return str(argument[0]).join(str(item) for item in self.resolve(argument[1]))
            if name == "Fn::Select":
                return self.resolve(argument[1])[int(self.resolve(argument[0]))]
            if name in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition", "Fn::Condition"):
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
            if name == "Fn::Equals":  # compared as CloudFormation's strings (true/false for booleans)
                left, right = (
                    json.dumps(v) if isinstance(v, bool) else str(v) for v in self.resolve(argument)
                )
                return left == right
            if name == "Fn::Not":
                return not self._truth(argument[0])
            if name in ("Fn::And", "Fn::Or"):
                return (all if name == "Fn::And" else any)(self._truth(item) for item in argument)
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
            if "." in name and not name.startswith("AWS::"):
                return self.attributes[tuple(name.split(".", 1))]  # type: ignore[index]
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", value, text)

    def _ref(self, name: str) -> Any:
        stack_id = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{self.stack_name}/local"
        pseudo = {
            **_PSEUDO,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": stack_id,
            "AWS::NoValue": NO_VALUE,
        }
        for known in (pseudo, self.parameters, self.refs):
            if name in known:
                return known[name]
        raise KeyError(f"{name} is not provisioned locally")

    def dead_letter_targets(self, queue: str, params: dict[str, Any] | None = None) -> list[str]:
        """The ARNs `queue` redrives into: the template's RedrivePolicy, and one a call sets."""
        template_policy = _props(self.template["Resources"][queue]).get("RedrivePolicy", {})
        policies = [{key: self.resolve(value) for key, value in template_policy.items()}]
        if set_policy := (params or {}).get("Attributes", {}).get("RedrivePolicy"):
            policies.append(json.loads(set_policy))
        return [str(p["deadLetterTargetArn"]) for p in policies if p.get("deadLetterTargetArn")]


# SAM event types of what an AWS::Lambda::EventSourceMapping reads, and the key naming the source.
_MAPPED_SOURCES = {"AWS::SQS::Queue": ("SQS", "Queue"), "AWS::DynamoDB::Table": ("DynamoDB", "Stream")}


def function_events(template: dict[str, Any], function_id: str) -> dict[str, dict[str, Any]]:
    """A function's triggers in SAM's event shape: its own `Events`, plus every
    AWS::Lambda::EventSourceMapping naming it (the template uses those to keep SAM's managed
    policies with Resource "*" off the roles), by the mapping's logical id."""
    resources = template["Resources"]
    events = dict(_props(resources[function_id]).get("Events", {}))
    for name, resource in resources.items():
        props = dict(_props(resource))
        if (
            resource["Type"] != "AWS::Lambda::EventSourceMapping"
            or _logical_id(props.pop("FunctionName", None)) != function_id
        ):
            continue
        source = props.pop("EventSourceArn")
        kind, key = _MAPPED_SOURCES[resources[_logical_id(source)]["Type"]]
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
    specs = template.get("Parameters", {})
    values = {name: str(spec["Default"]) for name, spec in specs.items() if "Default" in spec} | overrides
    missing = [name for name in specs if name not in values]
    if missing:
        raise ValueError(f"Template parameters without a value: {', '.join(missing)}")
    return values


def provision(prefix: str, parameters: dict[str, str], *, template: dict[str, Any] | None = None) -> Stack:
    """Create the template's tables, bucket, queues, event buses and secrets through boto3's current
    endpoint. Physical names start with `prefix`, which is also the stack's AWS::StackName."""
    template = template or load_template()
    stack = Stack(template, parameter_values(template, parameters), stack_name=prefix)
    clients = AwsClients()
    # Queues that others redrive into must exist first.
    ordered = sorted(template["Resources"].items(), key=lambda item: "RedrivePolicy" in _props(item[1]))
    for name, resource in ordered:
        if "Condition" in resource and not stack.condition(resource["Condition"]):
            continue  # e.g. a provider's key secret when its key parameter is empty
        props, kind = _props(resource), resource["Type"]
        if kind == "AWS::DynamoDB::Table":
            _create_table(clients.dynamodb, stack, name, props)
        elif kind == "AWS::S3::Bucket":
            _create_bucket(clients.s3, stack, name, props)
        elif kind == "AWS::SQS::Queue":
            _create_queue(clients.sqs, stack, name, props)
        elif kind == "AWS::Events::EventBus":
            bus = str(stack.resolve(props["Name"])) if "Name" in props else f"{prefix}-{name}"
            stack.attributes[(name, "Arn")] = clients.events.create_event_bus(Name=bus)["EventBusArn"]
            stack.refs[name] = stack.attributes[(name, "Name")] = bus
        elif kind == "AWS::Serverless::Api":  # served by devstack.gateway: only its id, for !Ref
            stack.refs[name] = LOCAL_API_ID
        elif kind == "AWS::SecretsManager::Secret":
            spec = props.get("GenerateSecretString", {})
            generated = token(
                int(spec.get("PasswordLength", 32)), punctuation=not spec.get("ExcludePunctuation")
            )
            value = str(stack.resolve(props["SecretString"])) if "SecretString" in props else generated
            arn = clients.secretsmanager.create_secret(Name=f"{prefix}/{name}", SecretString=value)["ARN"]
            stack.refs[name], stack.secret_values[name] = arn, value
    return stack


class AwsClients:
    """boto3 clients by service name, each made on first use (through boto3's endpoint and default
    session at that time); reset() callers may keep one for many resets."""

    def __getattr__(self, service: str) -> Any:
        if service.startswith("_"):
            raise AttributeError(service)
        client = self.__dict__[service] = boto3.client(service, region_name=REGION)
        return client


def _create_table(dynamodb: Any, stack: Stack, name: str, props: dict[str, Any]) -> None:
    table = f"{stack.stack_name}-{name}"
    keys = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")
    request = {"TableName": table, "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST")}
    request |= {key: props[key] for key in keys if props.get(key)}
    if props.get("StreamSpecification"):
        request["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    description = dynamodb.create_table(**request)["TableDescription"]
    if ttl := props.get("TimeToLiveSpecification"):
        dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification=ttl)
    stack.refs[name] = table
    stack.attributes[(name, "Arn")] = description["TableArn"]
    if description.get("LatestStreamArn"):
        stack.attributes[(name, "StreamArn")] = description["LatestStreamArn"]


def _create_bucket(s3: Any, stack: Stack, name: str, props: dict[str, Any]) -> None:
    bucket = f"{stack.stack_name}-{name}".lower()
    s3.create_bucket(Bucket=bucket)
    if block := props.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
    if encryption := props.get("BucketEncryption"):  # CloudFormation's names differ from the API's here
        rules = [
            {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
    stack.refs[name] = bucket
    stack.attributes[(name, "Arn")] = f"arn:aws:s3:::{bucket}"


def _create_queue(sqs: Any, stack: Stack, name: str, props: dict[str, Any]) -> None:
    keys = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds")
    attributes = {key: str(stack.resolve(props[key])) for key in keys if key in props}
    if redrive := props.get("RedrivePolicy"):
        attributes["RedrivePolicy"] = json.dumps(
            {key: stack.resolve(value) for key, value in redrive.items()}
        )
    queue_name = f"{stack.stack_name}-{name}"
    stack.refs[name] = url = sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
    if (name, "Arn") not in stack.attributes:  # made again: same name, same ARN
        answer = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        stack.attributes[(name, "Arn")] = answer["Attributes"]["QueueArn"]
        stack.attributes[(name, "QueueName")] = queue_name


# --- putting a provisioned stack back (tests provision once per session and reset per test) ---

# Operations that change nothing (by name); everything else an AWS client calls is a change.
_READ_PREFIXES = ("Get", "Describe", "List", "Query", "Scan", "BatchGet", "TransactGet", "Head")
# fmt: off
_TABLE_WRITES = frozenset({
    "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems",
    "ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction",
})
_MESSAGE_OPERATIONS = frozenset({
    "SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch",
    "ChangeMessageVisibility", "ChangeMessageVisibilityBatch", "PurgeQueue", "SetQueueAttributes",
})
_OBJECT_WRITES = frozenset({
    "PutObject", "CopyObject", "DeleteObject", "DeleteObjects", "CreateMultipartUpload", "UploadPart",
    "UploadPartCopy", "CompleteMultipartUpload", "AbortMultipartUpload", "PutObjectTagging",
    "DeleteObjectTagging",
})
_RULE_OPERATIONS = frozenset({"PutRule", "PutTargets", "RemoveTargets", "DeleteRule", "EnableRule", "DisableRule"})
_KEY_WRITES = frozenset({
    "CreateUsagePlan", "UpdateUsagePlan", "DeleteUsagePlan", "CreateUsagePlanKey", "DeleteUsagePlanKey",
    "CreateApiKey", "UpdateApiKey", "DeleteApiKey", "ImportApiKeys",
})
_SECRET_WRITES = frozenset({"CreateSecret", "PutSecretValue", "UpdateSecret", "DeleteSecret"})
# fmt: on

Call = tuple[str, str, dict[str, Any]]  # service, operation, parameters


class Changes:
    """The calls this process makes to AWS's own endpoints (which moto's in-process mock answers;
    not a moto server on 127.0.0.1) that may change something, while `recording`: what reset()
    must undo. Installed as botocore handlers of every session made afterwards (and of boto3's
    default session, if there is one)."""

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
    extra_secrets: bool = False
    api_keys: bool = False  # the usage plans and API keys (the template provisions none here)

    @classmethod
    def everything(cls, stack: Stack) -> _Undo:
        return cls(
            True,
            set(stack.of_type("AWS::SQS::Queue")),
            True,
            True,
            True,
            True,
            extra_secrets=True,
            api_keys=True,
        )


class ResetImpossible(Exception):
    """The stack changed in a way reset() does not undo (a resource deleted or reconfigured, or
    the backend is no longer the one provisioned): provision again."""


def reset(stack: Stack, changes: list[Call] | None = None, *, clients: AwsClients | None = None) -> None:
    """Put the resources back as provision() left them, through boto3's current endpoint: tables
    and queues made again (empty; fresh stream ARNs in `stack`, all else keeps its name, URL and
    ARN), the bucket emptied, extra queues, rules, secrets, usage plans and API keys removed, the
    stack's secrets at their values. With
    `changes` (Changes.take()), only what those calls touched; None: everything."""
    from botocore.exceptions import ClientError

    clients = clients or AwsClients()
    undo = _undo_for(stack, changes) if changes is not None else _Undo.everything(stack)
    try:
        _check_provisioned(clients, stack, restore=undo.secrets)
        for name, resource in stack.of_type("AWS::DynamoDB::Table").items() if undo.tables else []:
            clients.dynamodb.delete_table(TableName=stack.refs[name])
            _create_table(clients.dynamodb, stack, name, _props(resource))
        for name in _with_their_sources(stack, undo.queues):
            clients.sqs.delete_queue(QueueUrl=stack.refs[name])
            _create_queue(clients.sqs, stack, name, _props(stack.template["Resources"][name]))
        if undo.extra_queues:
            ours = {stack.refs[name] for name in stack.of_type("AWS::SQS::Queue")}
            for url in set(clients.sqs.list_queues(MaxResults=1000).get("QueueUrls", [])) - ours:
                clients.sqs.delete_queue(QueueUrl=url)
        for name in stack.of_type("AWS::S3::Bucket") if undo.bucket else []:
            _empty_bucket(clients.s3, stack.refs[name])
        for name in stack.of_type("AWS::Events::EventBus") if undo.rules else []:
            _remove_rules(clients.events, stack.refs[name])
        if undo.api_keys:
            _remove_api_keys(clients.apigateway)
        if undo.extra_secrets:  # e.g. the tenants' signing secrets
            ours = {stack.refs[name] for name in stack.secret_values}
            for page in clients.secretsmanager.get_paginator("list_secrets").paginate():
                for arn in {secret["ARN"] for secret in page["SecretList"]} - ours:
                    clients.secretsmanager.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    except ClientError as error:
        raise ResetImpossible(str(error)) from error


def _with_their_sources(stack: Stack, queues: set[str]) -> list[str]:
    """`queues` and the queues that redrive into them (moto's queue holds its dead-letter queue
    itself, found when its policy is set: a queue made again needs its sources made again),
    dead-letter queues first."""
    arns = {stack.attributes[(name, "Arn")] for name in queues}
    sources = {
        name for name in stack.of_type("AWS::SQS::Queue") if arns & set(stack.dead_letter_targets(name))
    }
    return sorted(queues | sources, key=lambda id: "RedrivePolicy" in _props(stack.template["Resources"][id]))


def _undo_for(stack: Stack, calls: list[Call]) -> _Undo:
    """What undoes `calls`; ResetImpossible for a call it cannot undo."""
    undo = _Undo()
    queues = {stack.refs[name]: name for name in stack.of_type("AWS::SQS::Queue")}
    queue_arns = {stack.attributes[(name, "Arn")]: name for name in queues.values()}
    buckets = {stack.refs[name] for name in stack.of_type("AWS::S3::Bucket")}
    buses = {stack.refs[name] for name in stack.of_type("AWS::Events::EventBus")}
    secrets = {stack.refs[name] for name in stack.secret_values} | {
        f"{stack.stack_name}/{name}" for name in stack.secret_values
    }
    for service, operation, params in calls:
        if service == "dynamodbstreams" or (service, operation) == ("events", "PutEvents"):
            continue  # PutEvents reaches only the targets of rules the caller put (undone with them)
        if service == "dynamodb" and operation in _TABLE_WRITES:
            undo.tables = True
        elif service == "sqs" and operation in _MESSAGE_OPERATIONS:
            queue = queues.get(params.get("QueueUrl", ""))
            if queue is None:  # a queue the caller made: it goes
                undo.extra_queues = True
                continue
            undo.queues.add(queue)
            # A receive past maxReceiveCount moves the message to the dead-letter queue.
            undo.queues.update(
                queue_arns[t] for t in stack.dead_letter_targets(queue, params) if t in queue_arns
            )
        elif service == "sqs" and operation in ("CreateQueue", "DeleteQueue"):
            if operation == "DeleteQueue" and params.get("QueueUrl") in queues:
                raise ResetImpossible(f"{operation} {params.get('QueueUrl')}")
            undo.extra_queues = True
        elif service == "s3" and operation in _OBJECT_WRITES and params.get("Bucket") in buckets:
            undo.bucket = True
        elif service == "secretsmanager" and operation in _SECRET_WRITES:
            if params.get("SecretId") in secrets:
                if operation == "DeleteSecret":
                    raise ResetImpossible(f"{operation} {params['SecretId']}")
                undo.secrets = True  # its value put back
            else:  # one the caller made: it goes
                undo.extra_secrets = True
        elif service == "apigateway" and operation in _KEY_WRITES:
            undo.api_keys = True
        elif service == "events" and operation in _RULE_OPERATIONS and params.get("EventBusName") in buses:
            undo.rules = True
            if operation == "PutTargets":  # a queue of ours among them may receive events
                targets = {target.get("Arn") for target in params.get("Targets", [])}
                undo.queues.update(queue_arns[arn] for arn in targets if arn in queue_arns)
        else:
            raise ResetImpossible(f"{service} {operation}")
    return undo


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
        if keys := [{"Key": item["Key"]} for item in page.get("Contents", [])]:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def _remove_rules(events: Any, bus: str) -> None:
    for rule in events.list_rules(EventBusName=bus).get("Rules", []):
        if targets := events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus).get("Targets", []):
            events.remove_targets(Rule=rule["Name"], EventBusName=bus, Ids=[t["Id"] for t in targets])
        events.delete_rule(Name=rule["Name"], EventBusName=bus)


def _remove_api_keys(apigateway: Any) -> None:
    for page in apigateway.get_paginator("get_usage_plans").paginate():
        for plan in page["items"]:
            apigateway.delete_usage_plan(usagePlanId=plan["id"])
    for page in apigateway.get_paginator("get_api_keys").paginate():
        for key in page["items"]:
            apigateway.delete_api_key(apiKey=key["id"])


def secret_value(stack: Stack, logical_id: str) -> str:
    client = boto3.client("secretsmanager", region_name=REGION)
    return client.get_secret_value(SecretId=stack.refs[logical_id])["SecretString"]
