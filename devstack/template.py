"""template.yaml as the single source of truth for local runs (dev-only): provisioned into boto3's
current endpoint, its intrinsics resolved (Ref, GetAtt, Sub, If, Join, the Conditions;
AWS::StackName is the local prefix), and put back between tests (Changes, reset)."""

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
    """Short-form tags as long-form dicts; not cfn-lint's decoder: importing cfnlint takes ~0.9 s."""


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

    def resolve(self, value: Any) -> Any:
        """The value of an intrinsic (conditions' functions included), a list or a scalar."""
        if isinstance(value, list):
            return [item for item in map(self.resolve, value) if item is not NO_VALUE]
        if isinstance(value, (str, int, float, bool)):
            return value
        ((name, arg),) = value.items() if isinstance(value, dict) and len(value) == 1 else [(None, None)]
        if name == "Ref":
            return self._ref(arg)
        if name == "Fn::GetAtt":
            return self.attributes[tuple(arg.split(".", 1) if isinstance(arg, str) else arg)]
        if name == "Fn::Sub":
            return self._substitute(arg)
        if name == "Fn::If":
            return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
        if name == "Fn::Join":
            return str(arg[0]).join(str(item) for item in self.resolve(arg[1]))
        if name == "Fn::Equals":  # compared as CloudFormation's strings (true/false for booleans)
            left, right = (json.dumps(v) if isinstance(v, bool) else str(v) for v in self.resolve(arg))
            return left == right
        if name == "Fn::Not":
            return not self.resolve(arg[0])
        if name in ("Fn::And", "Fn::Or"):
            return (all if name == "Fn::And" else any)(self.resolve(item) for item in arg)
        if name in ("Condition", "Fn::Condition"):
            return self.condition(arg)
        raise ValueError(f"Cannot resolve {value!r} locally")

    def condition(self, name: str) -> bool:
        """The value of one of the template's Conditions."""
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise KeyError(f"{name} is not a condition of the template")
        return bool(self.resolve(conditions[name]))

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
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{self.stack_name}/local",
            "AWS::NoValue": NO_VALUE,
        }
        for known in (pseudo, self.parameters, self.refs):
            if name in known:
                return known[name]
        raise KeyError(f"{name} is not provisioned locally")

    def dead_letter_targets(self, queue: str, params: dict[str, Any] | None = None) -> list[str]:
        """The ARNs `queue` redrives into: the template's RedrivePolicy, and one a call sets."""
        policy = _props(self.template["Resources"][queue]).get("RedrivePolicy", {})
        policies = [{key: self.resolve(value) for key, value in policy.items()}]
        if set_policy := (params or {}).get("Attributes", {}).get("RedrivePolicy"):
            policies.append(json.loads(set_policy))
        return [str(p["deadLetterTargetArn"]) for p in policies if p.get("deadLetterTargetArn")]


# SAM event types of what an AWS::Lambda::EventSourceMapping reads, and the key naming the source.
_MAPPED_SOURCES = {"AWS::SQS::Queue": ("SQS", "Queue"), "AWS::DynamoDB::Table": ("DynamoDB", "Stream")}


def function_events(template: dict[str, Any], function_id: str) -> dict[str, dict[str, Any]]:
    """A function's triggers in SAM's event shape: its `Events` plus the EventSourceMappings naming
    it (they keep SAM's managed policies with Resource "*" off the roles), by logical id."""
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


class AwsClients:
    """boto3 clients by service name, each made on first use (boto3's endpoint at that time)."""

    def __getattr__(self, service: str) -> Any:
        if service.startswith("_"):
            raise AttributeError(service)
        client = self.__dict__[service] = boto3.client(service, region_name=REGION)
        return client


def _create_table(clients: AwsClients, stack: Stack, name: str, props: dict[str, Any]) -> None:
    table = f"{stack.stack_name}-{name}"
    keys = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")
    request = {"TableName": table, "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST")}
    request |= {key: props[key] for key in keys if props.get(key)}
    if props.get("StreamSpecification"):
        request["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    description = clients.dynamodb.create_table(**request)["TableDescription"]
    if ttl := props.get("TimeToLiveSpecification"):
        clients.dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification=ttl)
    stack.refs[name] = table
    stack.attributes[(name, "Arn")] = description["TableArn"]
    if description.get("LatestStreamArn"):
        stack.attributes[(name, "StreamArn")] = description["LatestStreamArn"]


def _create_bucket(clients: AwsClients, stack: Stack, name: str, props: dict[str, Any]) -> None:
    bucket = stack.refs[name] = f"{stack.stack_name}-{name}".lower()
    clients.s3.create_bucket(Bucket=bucket)
    if block := props.get("PublicAccessBlockConfiguration"):
        clients.s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block)
    if encryption := props.get("BucketEncryption"):  # CloudFormation's names differ from the API's here
        rules = [
            {"ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"]}
            for rule in encryption["ServerSideEncryptionConfiguration"]
        ]
        clients.s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
    stack.attributes[(name, "Arn")] = f"arn:aws:s3:::{bucket}"


def _create_queue(clients: AwsClients, stack: Stack, name: str, props: dict[str, Any]) -> None:
    keys = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds")
    attributes = {key: str(stack.resolve(props[key])) for key in keys if key in props}
    if redrive := props.get("RedrivePolicy"):
        attributes["RedrivePolicy"] = json.dumps(
            {key: stack.resolve(value) for key, value in redrive.items()}
        )
    queue_name = f"{stack.stack_name}-{name}"
    url = stack.refs[name] = clients.sqs.create_queue(QueueName=queue_name, Attributes=attributes)["QueueUrl"]
    if (name, "Arn") not in stack.attributes:  # made again: same name, same ARN
        answer = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        stack.attributes[(name, "Arn")] = answer["Attributes"]["QueueArn"]
        stack.attributes[(name, "QueueName")] = queue_name


def _create_bus(clients: AwsClients, stack: Stack, name: str, props: dict[str, Any]) -> None:
    bus = str(stack.resolve(props["Name"])) if "Name" in props else f"{stack.stack_name}-{name}"
    stack.attributes[(name, "Arn")] = clients.events.create_event_bus(Name=bus)["EventBusArn"]
    stack.refs[name] = stack.attributes[(name, "Name")] = bus


def _create_secret(clients: AwsClients, stack: Stack, name: str, props: dict[str, Any]) -> None:
    spec = props.get("GenerateSecretString", {})
    value = token(int(spec.get("PasswordLength", 32)), punctuation=not spec.get("ExcludePunctuation"))
    value = str(stack.resolve(props["SecretString"])) if "SecretString" in props else value
    secret = clients.secretsmanager.create_secret(Name=f"{stack.stack_name}/{name}", SecretString=value)
    stack.refs[name], stack.secret_values[name] = secret["ARN"], value


def _note_api(clients: AwsClients, stack: Stack, name: str, props: dict[str, Any]) -> None:
    stack.refs[name] = LOCAL_API_ID  # served by devstack.gateway: only its id, for !Ref


# What provision() makes of each resource type (the others: IAM, logs, functions are not made).
_PROVISIONERS = {
    "AWS::DynamoDB::Table": _create_table,
    "AWS::S3::Bucket": _create_bucket,
    "AWS::SQS::Queue": _create_queue,
    "AWS::Events::EventBus": _create_bus,
    "AWS::SecretsManager::Secret": _create_secret,
    "AWS::Serverless::Api": _note_api,
}


def provision(prefix: str, parameters: dict[str, str], *, template: dict[str, Any] | None = None) -> Stack:
    """The template's resources made through boto3's current endpoint, named `prefix`-...."""
    template = template or load_template()
    specs = template.get("Parameters", {})
    values = {name: str(spec["Default"]) for name, spec in specs.items() if "Default" in spec} | parameters
    if missing := [name for name in specs if name not in values]:
        raise ValueError(f"Template parameters without a value: {', '.join(missing)}")
    stack, clients = Stack(template, values, stack_name=prefix), AwsClients()
    # Queues that others redrive into must exist first.
    for name, resource in sorted(
        template["Resources"].items(), key=lambda item: "RedrivePolicy" in _props(item[1])
    ):
        if make := _PROVISIONERS.get(resource["Type"]):
            make(clients, stack, name, _props(resource))
    return stack


# --- putting a provisioned stack back (tests provision once per session and reset per test) ---

# Operations that change nothing (by name); everything else an AWS client calls is a change.
_READ_PREFIXES = ("Get", "Describe", "List", "Query", "Scan", "BatchGet", "TransactGet", "Head")
# The step of reset() that undoes any change of a service (others: ResetImpossible).
_UNDO = {"dynamodb": "tables", "sqs": "queues", "s3": "bucket", "events": "rules"}
_UNDO |= {"apigateway": "api_keys", "secretsmanager": "secrets"}

Call = tuple[str, str, dict[str, Any]]  # service, operation, parameters


class Changes:
    """What reset() must undo: the changing calls to AWS's own endpoints (moto's in-process mock)
    while `recording`, seen by botocore handlers of every session made after install()."""

    _PARAMS = "devstack.changes.params"  # where the call's parameters wait in its request context

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.recording = False

    def install(self) -> Changes:
        from botocore.handlers import BUILTIN_HANDLERS

        handlers = [("before-parameter-build", self._keep_params), ("before-call", self._record)]
        BUILTIN_HANDLERS.extend(handlers)
        for event, handler in handlers if boto3.DEFAULT_SESSION is not None else []:
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


class ResetImpossible(Exception):
    """The stack changed in a way reset() does not undo, or moto was reset: provision again."""


def reset(stack: Stack, changes: list[Call] | None = None, *, clients: AwsClients | None = None) -> None:
    """Put the resources back as provision() left them, through boto3's current endpoint: tables
    and queues made again (empty; fresh stream ARNs in `stack`; names, URLs and ARNs kept), the
    bucket emptied, extra tables, queues, rules, secrets, usage plans and API keys removed, the
    stack's secrets at their values. With `changes` (Changes.take()), only what those calls touched."""
    from botocore.exceptions import ClientError

    clients = clients or AwsClients()
    ours = {kind: stack.of_type(f"AWS::{kind}") for kind in ("DynamoDB::Table", "SQS::Queue")}
    if changes is None:
        steps, queues = {*_UNDO.values(), "restore"}, set(ours["SQS::Queue"])
    else:
        steps, queues = _undo_for(stack, changes)
    try:
        _check_provisioned(clients, stack, restore="restore" in steps)
        if "tables" in steps:  # ours made again, the others go
            for table in clients.dynamodb.list_tables()["TableNames"]:
                clients.dynamodb.delete_table(TableName=table)
            for name, resource in ours["DynamoDB::Table"].items():
                _create_table(clients, stack, name, _props(resource))
        for name in _with_their_sources(stack, queues):
            clients.sqs.delete_queue(QueueUrl=stack.refs[name])
            _create_queue(clients, stack, name, _props(stack.template["Resources"][name]))
        if "queues" in steps:  # the queues a caller made go
            urls = {stack.refs[name] for name in ours["SQS::Queue"]}
            for url in set(clients.sqs.list_queues(MaxResults=1000).get("QueueUrls", [])) - urls:
                clients.sqs.delete_queue(QueueUrl=url)
        for name in stack.of_type("AWS::S3::Bucket") if "bucket" in steps else []:
            _empty_bucket(clients.s3, stack.refs[name])
        if "rules" in steps:  # rules go, and buses a caller made (one of ours deleted: ClientError)
            buses = {stack.refs[name] for name in stack.of_type("AWS::Events::EventBus")} | {"default"}
            for bus in buses | {bus["Name"] for bus in clients.events.list_event_buses()["EventBuses"]}:
                _remove_rules(clients.events, bus)
                if bus not in buses:
                    clients.events.delete_event_bus(Name=bus)
        if "api_keys" in steps:
            _remove_api_keys(clients.apigateway)
        if "secrets" in steps:  # those a caller made (e.g. the tenants' signing secrets) go
            arns = {stack.refs[name] for name in stack.secret_values}
            for page in clients.secretsmanager.get_paginator("list_secrets").paginate():
                for arn in {secret["ARN"] for secret in page["SecretList"]} - arns:
                    clients.secretsmanager.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    except ClientError as error:  # e.g. a queue or secret of the stack deleted
        raise ResetImpossible(str(error)) from error


def _undo_for(stack: Stack, calls: list[Call]) -> tuple[set[str], set[str]]:
    """reset()'s steps that undo `calls`, and the queues (logical ids) to make again."""
    steps: set[str] = set()
    queues: set[str] = set()
    urls = {stack.refs[name]: name for name in stack.of_type("AWS::SQS::Queue")}
    arns = {stack.attributes[(name, "Arn")]: name for name in urls.values()}
    buckets = {stack.refs[name] for name in stack.of_type("AWS::S3::Bucket")}
    secrets = {stack.refs[name] for name in stack.secret_values}
    secrets |= {f"{stack.stack_name}/{name}" for name in stack.secret_values}
    for service, operation, params in calls:
        if service == "dynamodbstreams" or operation == "PutEvents":
            continue  # PutEvents reaches only the targets of rules the caller put (undone with them)
        if service not in _UNDO or (service == "s3" and params.get("Bucket") not in buckets):
            raise ResetImpossible(f"{service} {operation}")
        if queue := urls.get(params.get("QueueUrl", "")) if service == "sqs" else None:
            # A receive past maxReceiveCount moves the message to the dead-letter queue.
            queues |= {queue} | {arns[t] for t in stack.dead_letter_targets(queue, params) if t in arns}
        elif service == "secretsmanager" and params.get("SecretId") in secrets:
            steps.add("restore")  # one of ours: its value put back (deleted: a ClientError)
        else:  # for sqs and secretsmanager: queues and secrets a caller made go
            steps.add(_UNDO[service])
        if operation == "PutTargets":  # a queue of ours among them may receive events
            queues |= {arns[t["Arn"]] for t in params.get("Targets", []) if t.get("Arn") in arns}
    return steps, queues


def _with_their_sources(stack: Stack, queues: set[str]) -> list[str]:
    """`queues` and those that redrive into them (moto's queue holds its dead-letter queue itself,
    found when its policy is set), dead-letter queues first."""
    arns = {stack.attributes[(name, "Arn")] for name in queues}
    sources = {
        name for name in stack.of_type("AWS::SQS::Queue") if arns & set(stack.dead_letter_targets(name))
    }
    return sorted(queues | sources, key=lambda id: "RedrivePolicy" in _props(stack.template["Resources"][id]))


def _check_provisioned(clients: AwsClients, stack: Stack, *, restore: bool) -> None:
    """Fail unless the backend still holds this stack (its secrets' values are random, so a backend
    reset, or provisioned again, shows); with `restore`, every secret gets its value back."""
    for name, value in stack.secret_values.items():
        current = clients.secretsmanager.get_secret_value(SecretId=stack.refs[name])["SecretString"]
        if current != value and not restore:
            raise ResetImpossible(f"{name} is not the secret provisioned")
        if current != value:
            clients.secretsmanager.put_secret_value(SecretId=stack.refs[name], SecretString=value)
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
