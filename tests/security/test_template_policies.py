"""Least privilege in template.yaml: what each function's role may do, and on what.

Two views of the same roles:

- The template as written (devstack.template.load_template): every inline statement names its actions
  without wildcards and targets one of the template's own resources; policy templates come from an
  allow-list with a specific argument; each function is given exactly the secrets its environment
  names; the videos bucket refuses plain HTTP; presigned links are bounded in the template and in the
  settings model.
- The template after the SAM transform (samtranslator from .tools-venv, the version `sam deploy` runs
  through aws-sam-cli): the roles SAM generates, with the managed policies SAM attaches on its own.
  Their documents come from moto's copy of AWS's managed policies (in .venv), so no network is needed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from devstack.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
TOOLS_PYTHON = ROOT / ".tools-venv" / "bin" / "python"

# service:Action, no wildcard anywhere (no "*", no "service:*", no "s3:Get*").
ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")
# The only SAM policy templates a function may use, with the one argument each takes and the type of
# resource that argument must !Ref.
POLICY_TEMPLATES = {"AWSSecretsManagerGetSecretValuePolicy": ("SecretArn", "AWS::SecretsManager::Secret")}
# Which resource types each service's actions may target here (a dynamodb action on a queue is a mistake).
SERVICE_RESOURCE_TYPES = {
    "dynamodb": {"AWS::DynamoDB::Table"},
    "s3": {"AWS::S3::Bucket"},
    "sqs": {"AWS::SQS::Queue"},
    "events": {"AWS::Events::EventBus"},
    "secretsmanager": {"AWS::SecretsManager::Secret"},
    "lambda": {"AWS::Serverless::Function", "AWS::Lambda::Function"},
}
# Functions that need no right beyond the logs and traces SAM grants every role, and why.
NO_RIGHTS = {
    "PlaygroundFunction": "serves its own files; the CSP's S3 origin is read off a link presigned locally",
}
# Who may assume the generated roles: Lambda, and EventBridge Scheduler for the reconciler's schedule.
TRUSTED_SERVICES = {"lambda.amazonaws.com", "scheduler.amazonaws.com"}
# Managed policies SAM attaches by itself, and why (see KNOWN_MANAGED_POLICIES for which are accepted).
SAM_EVENT_SOURCE_POLICIES = {
    "AWSLambdaSQSQueueExecutionRole": "SQS",
    "AWSLambdaDynamoDBExecutionRole": "DynamoDB",
}
# Managed policies with "Resource": "*" that are accepted, with the reason.
ACCEPTED_WILDCARD_RESOURCE_POLICIES = {
    # X-Ray's PutTraceSegments/PutTelemetryRecords/GetSampling* take no resource-level permission:
    # "*" is the only Resource they accept. SAM attaches it for `Tracing: Active`.
    "AWSXrayWriteOnlyAccess": "X-Ray write actions have no resource-level permissions",
    # logs:CreateLogGroup/CreateLogStream/PutLogEvents. SAM attaches it to every role it generates;
    # scoping it to the function's log group takes an explicit Role per function (docs/security.md).
    "AWSLambdaBasicExecutionRole": "log writes only; SAM attaches it to every generated role",
}
KNOWN_MANAGED_POLICIES = {*ACCEPTED_WILDCARD_RESOURCE_POLICIES, *SAM_EVENT_SOURCE_POLICIES}
# The tenants' webhook signing secrets are made by the operator command, not by this stack, so no
# resource names them: the one ARN pattern accepted for them is the stack's own tenants/ prefix, for
# GetSecretValue only, and only in a function whose environment says that prefix (TENANT_SECRET_PREFIX).
TENANT_SECRETS = {
    "Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
    "${AWS::StackName}/tenants/*"
}
TENANT_SECRET_PREFIX = {"Fn::Sub": "${AWS::StackName}/tenants/"}
TENANT_SECRETS_GRANT = "tenant webhook secrets"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def _function_ids() -> list[str]:
    return sorted(_functions(load_template(TEMPLATE)))


def _inline_statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in function["Properties"].get("Policies", [])
        if isinstance(policy, dict) and "Statement" in policy
        for statement in _as_list(policy["Statement"])
    ]


def _policy_templates(function: dict[str, Any]) -> list[Any]:
    return [
        policy
        for policy in function["Properties"].get("Policies", [])
        if not (isinstance(policy, dict) and "Statement" in policy)
    ]


def _target(value: Any, resources: dict[str, Any]) -> str | None:
    """The logical id of the template resource an ARN expression names, or None.

    Ref X, GetAtt X.attr, and a Sub that starts with ${X} or ${X.attr} (then a path below it, such as
    ${VideosBucket.Arn}/videos/*), including Sub's list form whose variable is one of those.
    """
    if not isinstance(value, dict) or len(value) != 1:
        return None
    ((function, argument),) = value.items()
    if function == "Ref":
        name = argument
    elif function == "Fn::GetAtt":
        name = argument[0] if isinstance(argument, list) else str(argument).split(".", 1)[0]
    elif function == "Fn::Sub":
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        found = re.fullmatch(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z0-9.]+)?\}(/[^${}]*)?", text)
        if found is None:
            return None
        name = found.group(1)
        if name in variables:
            return _target(variables[name], resources)
    else:
        return None
    return name if name in resources else None


def _statement_problems(statement: dict[str, Any], resources: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("NotAction", "NotResource", "NotPrincipal"):
        if key in statement:
            problems.append(f"uses {key}")
    if statement.get("Effect") != "Allow":
        problems.append(f"Effect is {statement.get('Effect')!r}")
    actions = [str(action) for action in _as_list(statement.get("Action", []))]
    if not actions:
        problems.append("has no Action")
    problems += [
        f"action {action!r} is not one named action" for action in actions if not ACTION.match(action)
    ]
    resources_named = _as_list(statement.get("Resource", []))
    if not resources_named:
        problems.append("has no Resource")
    for resource in resources_named:
        if resource == TENANT_SECRETS:
            if actions != ["secretsmanager:GetSecretValue"]:
                problems.append(f"{actions} on the tenants' secrets (GetSecretValue only)")
            continue
        target = _target(resource, resources)
        if target is None:
            problems.append(f"resource {resource!r} is not one of the template's resources")
            continue
        target_type = resources[target]["Type"]
        for action in actions:
            allowed = SERVICE_RESOURCE_TYPES.get(action.split(":", 1)[0])
            if allowed is None or target_type not in allowed:
                problems.append(f"{action} on {target} ({target_type})")
    return problems


# ---------------------------------------------------------------- the template as written


def test_every_function_has_its_own_generated_role(template: dict[str, Any]) -> None:
    """No function brings a Role (whose policies these tests would not see): SAM builds each from Policies."""
    for name, function in _functions(template).items():
        assert "Role" not in function["Properties"], name
        if name in NO_RIGHTS:
            assert not function["Properties"].get("Policies"), f"{name} needs no Policies"
            continue
        assert function["Properties"].get("Policies"), f"{name} has no Policies"
    assert "Role" not in template.get("Globals", {}).get("Function", {})
    assert "Policies" not in template.get("Globals", {}).get("Function", {})


@pytest.mark.parametrize("function_id", _function_ids())
def test_inline_statements_name_actions_on_own_resources(template: dict[str, Any], function_id: str) -> None:
    resources = template["Resources"]
    statements = _inline_statements(_functions(template)[function_id])
    assert bool(statements) != (function_id in NO_RIGHTS), f"{function_id}: inline statements {statements}"
    problems = [
        f"{statement.get('Sid', '?')}: {problem}"
        for statement in statements
        for problem in _statement_problems(statement, resources)
    ]
    assert not problems, f"{function_id}: " + "; ".join(problems)


@pytest.mark.parametrize("function_id", _function_ids())
def test_policy_templates_are_allow_listed_with_specific_arguments(
    template: dict[str, Any], function_id: str
) -> None:
    resources = template["Resources"]
    for policy in _policy_templates(_functions(template)[function_id]):
        assert isinstance(policy, dict) and len(policy) == 1, (
            f"{function_id}: {policy!r} is a managed policy or not a single policy template"
        )
        ((name, arguments),) = policy.items()
        assert name in POLICY_TEMPLATES, f"{function_id}: policy template {name} is not allow-listed"
        argument, resource_type = POLICY_TEMPLATES[name]
        assert isinstance(arguments, dict) and set(arguments) == {argument}, (
            f"{function_id}: {name} {arguments}"
        )
        ref = arguments[argument]
        assert isinstance(ref, dict) and set(ref) == {"Ref"}, f"{function_id}: {name} {argument} is {ref!r}"
        assert resources.get(ref["Ref"], {}).get("Type") == resource_type, f"{function_id}: {name} -> {ref}"


def _secret_ids_in_environment(template: dict[str, Any], function: dict[str, Any]) -> dict[str, Any]:
    variables = {
        **template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **function["Properties"].get("Environment", {}).get("Variables", {}),
    }
    return {name: value for name, value in variables.items() if name.endswith("_SECRET_ID")}


def _granted_secrets(function: dict[str, Any], resources: dict[str, Any]) -> set[str]:
    granted = {
        arguments["SecretArn"]["Ref"]
        for policy in _policy_templates(function)
        if isinstance(policy, dict)
        for name, arguments in policy.items()
        if name == "AWSSecretsManagerGetSecretValuePolicy"
    }
    for statement in _inline_statements(function):
        if any(str(action).startswith("secretsmanager:") for action in _as_list(statement.get("Action", []))):
            granted |= {
                TENANT_SECRETS_GRANT
                if resource == TENANT_SECRETS
                else _target(resource, resources) or repr(resource)
                for resource in _as_list(statement["Resource"])
            }
    return granted


def _environment(template: dict[str, Any], function: dict[str, Any]) -> dict[str, Any]:
    return {
        **template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}),
        **function["Properties"].get("Environment", {}).get("Variables", {}),
    }


@pytest.mark.parametrize("function_id", _function_ids())
def test_each_function_can_read_exactly_the_secrets_it_names(
    template: dict[str, Any], function_id: str
) -> None:
    resources = template["Resources"]
    function = _functions(template)[function_id]
    named = _secret_ids_in_environment(template, function)
    for variable, value in named.items():
        assert isinstance(value, dict) and set(value) == {"Ref"}, f"{function_id}: {variable} is {value!r}"
        assert resources[value["Ref"]]["Type"] == "AWS::SecretsManager::Secret", f"{function_id}: {variable}"
    expected = {value["Ref"] for value in named.values()}
    prefix = _environment(template, function).get("TENANT_SECRET_PREFIX")
    if prefix is not None:
        assert prefix == TENANT_SECRET_PREFIX, f"{function_id}: TENANT_SECRET_PREFIX is {prefix!r}"
        expected.add(TENANT_SECRETS_GRANT)
    assert _granted_secrets(function, resources) == expected, function_id


def test_every_secret_is_read_by_some_function(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    read = set().union(*(_granted_secrets(f, resources) for f in _functions(template).values()))
    secrets = {name for name, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"}
    assert secrets == read - {TENANT_SECRETS_GRANT}


def test_videos_bucket_policy_denies_insecure_transport(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    policies = [
        resource["Properties"]["PolicyDocument"]
        for resource in resources.values()
        if resource["Type"] == "AWS::S3::BucketPolicy"
        and resource["Properties"]["Bucket"] == {"Ref": "VideosBucket"}
    ]
    assert len(policies) == 1, "VideosBucket needs exactly one bucket policy"
    denies = [
        statement
        for statement in _as_list(policies[0]["Statement"])
        if statement.get("Effect") == "Deny"
        and statement.get("Principal") in ("*", {"AWS": "*"})
        and set(_as_list(statement.get("Action"))) & {"s3:*", "*"}
        and str(statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")).lower() == "false"
    ]
    assert denies, "no Deny of s3:* for every principal when aws:SecureTransport is false"
    covered = {json.dumps(resource, sort_keys=True) for resource in _as_list(denies[0]["Resource"])}
    assert json.dumps({"Fn::GetAtt": ["VideosBucket", "Arn"]}, sort_keys=True) in covered
    assert json.dumps({"Fn::Sub": "${VideosBucket.Arn}/*"}, sort_keys=True) in covered


def _bounds(field_name: str) -> tuple[float | None, float | None]:
    from sora_relay.settings import Settings

    low = high = None
    for constraint in Settings.model_fields[field_name].metadata:
        low = getattr(constraint, "ge", low)
        high = getattr(constraint, "le", high)
    return low, high


def test_presigned_url_ttl_is_bounded_in_template_and_settings(template: dict[str, Any]) -> None:
    from sora_relay.settings import Settings

    parameter = template["Parameters"]["PresignedUrlTtlSeconds"]
    assert parameter["Type"] == "Number"
    assert 1 <= parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"] <= 86400
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["PRESIGNED_URL_TTL_SECONDS"] == {"Ref": "PresignedUrlTtlSeconds"}

    low, high = _bounds("presigned_url_ttl_seconds")
    assert high is not None and high <= 86400, (
        "the settings model must cap presigned_url_ttl_seconds at a day"
    )
    assert low is not None and low >= 1
    # Every value the template lets through is one the functions accept at cold start.
    assert low <= parameter["MinValue"] and parameter["MaxValue"] <= high
    base = {"tasks_table_name": "t", "videos_bucket_name": "b"}
    assert Settings(**base, presigned_url_ttl_seconds=int(high)).presigned_url_ttl_seconds == high
    with pytest.raises(ValidationError):
        Settings(**base, presigned_url_ttl_seconds=int(high) + 1)


# ---------------------------------------------------------------- the template after the SAM transform

TRANSFORM = r"""
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoNamedManagedPolicies:
    # The template names no managed policy (test_policy_templates_...); SAM adds its own by ARN.
    def load(self):
        return {}

with open(sys.argv[1]) as handle:
    template = yaml_parse(handle.read())
# As `sam validate` does: the translator wants S3 locations, not local directories.
for resource in template["Resources"].values():
    if resource["Type"] == "AWS::Serverless::Function":
        resource["Properties"]["CodeUri"] = "s3://bucket/key"
    elif resource["Type"] == "AWS::Serverless::LayerVersion":
        resource["Properties"]["ContentUri"] = "s3://bucket/key"
json.dump(transform(template, {}, NoNamedManagedPolicies()), sys.stdout, default=str)
"""


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    if not TOOLS_PYTHON.exists():
        message = "samtranslator lives in .tools-venv: run `make tools`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0"}
    done = subprocess.run(
        [str(TOOLS_PYTHON), "-c", TRANSFORM, str(TEMPLATE)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@cache
def _aws_managed_policy(name: str) -> dict[str, Any] | None:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    policy = json.loads(aws_managed_policies_data).get(name)
    return policy["Document"] if policy else None


def _roles(transformed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in transformed["Resources"].items() if r["Type"] == "AWS::IAM::Role"}


def _managed_policy_names(role: dict[str, Any]) -> list[str]:
    names = []
    for arn in role["Properties"].get("ManagedPolicyArns", []):
        assert isinstance(arn, str) and re.fullmatch(r"arn:aws:iam::aws:policy/(service-role/)?\w+", arn), arn
        names.append(arn.rsplit("/", 1)[1])
    return names


def _role_function(transformed: dict[str, Any], role_id: str) -> str | None:
    for name, resource in transformed["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function" and resource["Properties"].get("Role") == {
            "Fn::GetAtt": [role_id, "Arn"]
        }:
            return name
    return None


def test_transform_generates_one_role_per_function(
    transformed: dict[str, Any], template: dict[str, Any]
) -> None:
    roles = _roles(transformed)
    owners = {_role_function(transformed, role_id) for role_id in roles}
    assert set(_functions(template)) <= owners
    # The only other role is the reconciler schedule's (it may only invoke the function).
    assert owners - set(_functions(template)) <= {None}


def test_transformed_roles_trust_only_their_service(transformed: dict[str, Any]) -> None:
    for role_id, role in _roles(transformed).items():
        for statement in _as_list(role["Properties"]["AssumeRolePolicyDocument"]["Statement"]):
            assert statement["Effect"] == "Allow", role_id
            assert _as_list(statement["Action"]) == ["sts:AssumeRole"], role_id
            assert set(statement["Principal"]) == {"Service"}, role_id
            assert set(_as_list(statement["Principal"]["Service"])) <= TRUSTED_SERVICES, role_id


def test_transformed_inline_statements_name_actions_on_own_resources(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    problems = []
    documents = [
        (f"{role_id}/{policy['PolicyName']}", policy["PolicyDocument"])
        for role_id, role in _roles(transformed).items()
        for policy in role["Properties"].get("Policies", [])
    ] + [
        (name, resource["Properties"]["PolicyDocument"])
        for name, resource in resources.items()
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
    ]
    assert documents
    for where, document in documents:
        for statement in _as_list(document["Statement"]):
            problems += [f"{where}: {problem}" for problem in _statement_problems(statement, resources)]
    assert not problems, "\n".join(problems)


def test_transformed_managed_policies_are_known_and_have_no_wildcard_actions(
    transformed: dict[str, Any],
) -> None:
    for role_id, role in _roles(transformed).items():
        for name in _managed_policy_names(role):
            assert name in KNOWN_MANAGED_POLICIES, f"{role_id}: unexpected managed policy {name}"
            document = _aws_managed_policy(name)
            assert document is not None, f"moto has no copy of {name}"
            for statement in _as_list(document["Statement"]):
                for action in _as_list(statement.get("Action", [])):
                    assert action != "*" and not action.endswith(":*"), f"{role_id}: {name} allows {action}"


def test_event_source_policies_come_only_with_their_event_source(
    transformed: dict[str, Any], template: dict[str, Any]
) -> None:
    """SAM's SQS/DynamoDB execution policies appear only where a SAM event of that type asks for them."""
    functions = _functions(template)
    for role_id, role in _roles(transformed).items():
        function_id = _role_function(transformed, role_id)
        event_types = {
            event.get("Type")
            for event in (
                functions.get(function_id or "", {}).get("Properties", {}).get("Events") or {}
            ).values()
        }
        for name in _managed_policy_names(role):
            if name in SAM_EVENT_SOURCE_POLICIES:
                assert SAM_EVENT_SOURCE_POLICIES[name] in event_types, f"{role_id}: {name}"


def _wildcard_resource_policies(transformed: dict[str, Any]) -> dict[str, set[str]]:
    """managed policy name -> roles it is attached to, for every policy with a Resource "*"."""
    found: dict[str, set[str]] = {}
    for role_id, role in _roles(transformed).items():
        for name in _managed_policy_names(role):
            document = _aws_managed_policy(name) or {}
            if any("*" in _as_list(s.get("Resource")) for s in _as_list(document.get("Statement", []))):
                found.setdefault(name, set()).add(role_id)
    return found


def test_no_managed_policy_grants_data_access_on_every_resource(transformed: dict[str, Any]) -> None:
    found = _wildcard_resource_policies(transformed)
    unaccepted = {
        name: sorted(roles)
        for name, roles in found.items()
        if name not in ACCEPTED_WILDCARD_RESOURCE_POLICIES
    }
    assert not unaccepted, f"managed policies with Resource '*': {unaccepted}"


def test_videos_expire_with_their_tasks(template: dict[str, Any]) -> None:
    # A video is reachable only through its task, whose item expires after TASK_RETENTION_DAYS:
    # the bucket must drop the video after the same parameter, or storage grows for ever.
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["TASK_RETENTION_DAYS"] == {"Ref": "TaskRetentionDays"}
    parameter = template["Parameters"]["TaskRetentionDays"]
    low, high = _bounds("task_retention_days")
    assert low is not None and high is not None
    assert low <= parameter["MinValue"] <= parameter["Default"] <= parameter["MaxValue"] <= high
    rules = template["Resources"]["VideosBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = [
        rule
        for rule in rules
        if rule["Status"] == "Enabled" and rule.get("ExpirationInDays") == {"Ref": "TaskRetentionDays"}
    ]
    assert [rule.get("Prefix") for rule in expiring] == ["videos/"]


def _actions(function: dict[str, Any]) -> set[str]:
    return {action for statement in _inline_statements(function) for action in _as_list(statement["Action"])}


def test_the_callback_and_the_reconciler_cannot_write_videos(template):
    # The archive step alone copies videos: the API's callback and the schedule only record and queue.
    functions = _functions(template)
    for name in ("CallbackFunction", "ReconcileFunction"):
        assert not {action for action in _actions(functions[name]) if action.startswith("s3:")}, name
    assert {"s3:PutObject", "s3:AbortMultipartUpload"} <= _actions(functions["ArchiveFunction"])


def test_a_dispatch_deliverys_claim_outlasts_its_function_and_lapses_before_the_message_is_back(template):
    resources = template["Resources"]
    function = resources["DispatchFunction"]["Properties"]
    timeout = function.get("Timeout", template["Globals"]["Function"]["Timeout"])
    lease = int(function["Environment"]["Variables"]["DISPATCH_LEASE_SECONDS"])
    assert timeout <= lease <= resources["DispatchQueue"]["Properties"]["VisibilityTimeout"]


def test_the_archive_queue_outlasts_its_function_and_redrives_after_its_attempts(template):
    resources = template["Resources"]
    function = resources["ArchiveFunction"]["Properties"]
    queue = resources["ArchiveQueue"]["Properties"]
    # A message is never handed out again while an attempt may still be running, and a crashed
    # attempt's claim (its lease) has lapsed by the time it is.
    assert queue["VisibilityTimeout"] >= function["Timeout"]
    assert int(function["Environment"]["Variables"]["ARCHIVE_LEASE_SECONDS"]) >= function["Timeout"]
    assert queue["VisibilityTimeout"] >= int(function["Environment"]["Variables"]["ARCHIVE_LEASE_SECONDS"])
    # The function fails the task on the attempt SQS counts as the last before the dead-letter queue.
    assert queue["RedrivePolicy"]["maxReceiveCount"] == {"Ref": "ArchiveMaxAttempts"}
    assert function["Environment"]["Variables"]["ARCHIVE_MAX_ATTEMPTS"] == {"Ref": "ArchiveMaxAttempts"}


def test_two_reconciler_runs_never_overlap(template):
    assert template["Resources"]["ReconcileFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1


@pytest.mark.parametrize(
    "name", ["SubmitFunction", "CallbackFunction", "StatusFunction", "PlaygroundFunction"]
)
def test_the_api_functions_start_from_a_snapshot(template, name):
    # SnapStart needs published versions; the API events then invoke the alias SAM publishes.
    properties = template["Resources"][name]["Properties"]
    assert properties["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert properties["AutoPublishAlias"]


# ---------------------------------------------------------------- the Lambda authorizer


def test_the_authorizer_may_only_read_tenants_and_keys(template):
    function = _functions(template)["AuthorizerFunction"]
    statements = _inline_statements(function)
    # One GetItem on the tenants table: a key by its hash, then its tenant. No scan, no write, no
    # other table, no secret (the webhook secrets are not its business).
    assert [(s["Effect"], s["Action"], s["Resource"]) for s in statements] == [
        ("Allow", "dynamodb:GetItem", {"Fn::GetAtt": ["TenantsTable", "Arn"]})
    ]
    assert not _policy_templates(function)
    assert set(function["Properties"]["Environment"]["Variables"]) == {
        "TENANTS_TABLE",
        "AUTHORIZER_CACHE_SECONDS",
    }


# Public routes: the provider's callback (a per-task token instead) and the playground page and its
# files (they hold no data; every call the page makes carries the user's key).
PUBLIC_FUNCTIONS = {"CallbackFunction", "PlaygroundFunction"}


def _public_path(path: str) -> bool:
    return path.startswith("/v1/callbacks/") or path == "/" or path.startswith("/playground/")


def test_every_route_but_the_public_ones_is_behind_the_authorizer_and_metered_by_its_key(template):
    from devstack.template import Stack

    api = template["Resources"]["RestApi"]["Properties"]
    # The usage plan counts the key the authorizer returns; every method still requires one.
    assert api["ApiKeySourceType"] == "AUTHORIZER"
    assert api["Auth"]["ApiKeyRequired"] is True
    assert api["Auth"]["DefaultAuthorizer"] == "TenantAuthorizer"
    authorizer = api["Auth"]["Authorizers"]["TenantAuthorizer"]
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert authorizer["FunctionPayloadType"] == "REQUEST"
    # No identity source (a client sends Bearer or x-api-key, not both), hence no API Gateway cache
    assert authorizer["Identity"] == {"ReauthorizeEvery": 0}
    routes = Stack(template=template, parameters={}).routes()
    assert routes
    for route in routes:
        if route.function_id in PUBLIC_FUNCTIONS:
            assert (route.authorizer, route.api_key_required) == (None, False), route
        else:
            assert (route.authorizer, route.api_key_required) == ("TenantAuthorizer", True), route


def test_transformed_the_authorizer_guards_every_method_but_the_public_ones(transformed):
    body = transformed["Resources"]["RestApi"]["Properties"]["Body"]
    scheme = body["components"]["securitySchemes"]["TenantAuthorizer"]["x-amazon-apigateway-authorizer"]
    assert scheme["type"] == "request" and scheme["authorizerResultTtlInSeconds"] == 0
    assert "identitySource" not in scheme
    assert transformed["Resources"]["RestApi"]["Properties"]["ApiKeySourceType"] == "AUTHORIZER"
    for path, methods in body["paths"].items():
        for method, operation in methods.items():
            names = {name for requirement in operation.get("security", []) for name in requirement}
            expected = set() if _public_path(path) else {"TenantAuthorizer", "api_key"}
            assert names == expected, (path, method)
