"""scripts/tenants.py, the operator's command, against moto (in process): what it prints and what
it leaves in the tenants table, API Gateway and Secrets Manager."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
import time
from types import ModuleType

import pytest

from devstack.template import ROOT
from tests.integration.conftest import aws as client


def _load_command() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tenants_command", ROOT / "scripts" / "tenants.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COMMAND = _load_command()


@pytest.fixture
def tenants(stack, usage_plan, secret_prefix, capsys):
    """Runs the command with the stack's parts given as flags: (exit status, stdout, stderr)."""
    where = [
        "--table",
        stack.refs["TenantsTable"],
        "--usage-plan-id",
        usage_plan,
        "--secret-prefix",
        secret_prefix,
    ]

    def run(*args: str) -> tuple[int, str, str]:
        out = io.StringIO()
        status = COMMAND.main([*where, "--region", "us-east-1", *args], out=out)
        return status, out.getvalue(), capsys.readouterr().err

    return run


def table_items(stack) -> list[dict]:
    return client("dynamodb").scan(TableName=stack.refs["TenantsTable"])["Items"]


def created(output: str) -> tuple[str, str, str, str]:
    tenant_id = re.search(r"^tenant\s+(ten_\S+)", output, re.M).group(1)
    key, key_id = re.search(r"^api key\s+(sr_\S+)\s+\((key_\S+)\)", output, re.M).groups()
    secret = re.search(r"^webhook secret\s+(whsec_\S+)", output, re.M).group(1)
    return tenant_id, key, key_id, secret


def test_create_prints_the_key_and_secret_once_and_stores_only_the_keys_hash(stack, tenants, secret_prefix):
    # When the operator creates a tenant with a budget and models
    status, output, _ = tenants("create", "--name", "Acme", "--budget-usd", "25", "--models", "veo-3.1-fast")

    # Then it prints the tenant, its first key and its webhook secret
    assert status == 0, output
    tenant_id, key, key_id, secret = created(output)
    assert "25 USD/month" in output and "veo-3.1-fast" in output

    # And the table has the tenant and the key's sha256, never the key
    items = {item["pk"]["S"]: item for item in table_items(stack)}
    tenant = items[f"tenant#{tenant_id}"]
    assert tenant["monthly_budget_microusd"]["N"] == "25000000"
    assert tenant["models"]["L"] == [{"S": "veo-3.1-fast"}]
    assert tenant["status"]["S"] == "active"
    stored_key = items["key#" + hashlib.sha256(key.encode()).hexdigest()]
    assert stored_key["key_id"]["S"] == key_id and stored_key["prefix"]["S"] == key[:8]
    assert key not in json.dumps(table_items(stack))

    # And the webhook secret is in Secrets Manager, in the agreed document
    name = f"{secret_prefix}{tenant_id}/webhook"
    assert tenant["webhook_secret_id"]["S"] == name
    document = json.loads(client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])
    assert document["signing"] == [
        {"secret": secret, "created_at": document["signing"][0]["created_at"], "retire_at": None}
    ]
    assert abs(document["signing"][0]["created_at"] - time.time()) < 60

    # And its usage key is on the usage plan
    on_plan = client("apigateway").get_usage_plan_keys(usagePlanId=stack.refs["RestApiUsagePlan"])["items"]
    assert [item["id"] for item in on_plan] == [tenant["usage_key_id"]["S"]]

    # And listing shows the tenant, never the key or the secret
    status, listing, _ = tenants("list")
    assert status == 0 and tenant_id in listing and "Acme" in listing
    assert key not in listing and secret not in listing


def test_keys_are_issued_listed_by_prefix_and_revoked_by_id(stack, tenants):
    tenant_id, first_key, first_id, _ = created(tenants("create", "--name", "Acme")[1])

    status, output, _ = tenants("issue-key", tenant_id)
    assert status == 0
    second_key, second_id = re.search(r"(sr_\S+)\s+\((key_\S+);", output).groups()

    status, output, _ = tenants("revoke-key", second_id)
    assert status == 0 and "revoked" in output

    status, listing, _ = tenants("keys", tenant_id)
    # Oldest first; two keys made in the same second (created_at is whole seconds) list in key-id
    # order, so the test reads each key's line by its id.
    lines = {line.split()[0]: line for line in listing.strip().splitlines()}
    assert set(lines) == {first_id, second_id}
    assert "active" in lines[first_id] and "revoked" in lines[second_id] and "revoked_at" in lines[second_id]
    assert first_key[:8] in lines[first_id] and first_key not in listing and second_key not in listing


def test_disable_refuses_new_keys_and_disables_the_usage_key(stack, tenants):
    tenant_id = created(tenants("create", "--name", "Acme")[1])[0]

    status, output, _ = tenants("disable", tenant_id)
    assert status == 0 and "disabled" in output

    item = client("dynamodb").get_item(
        TableName=stack.refs["TenantsTable"], Key={"pk": {"S": f"tenant#{tenant_id}"}}
    )["Item"]
    assert item["status"]["S"] == "disabled"
    assert client("apigateway").get_api_key(apiKey=item["usage_key_id"]["S"])["enabled"] is False
    status, _, error = tenants("issue-key", tenant_id)
    assert status == 1 and "disabled" in error


def test_rotate_secret_keeps_the_old_one_signing_for_24_hours(stack, tenants, secret_prefix):
    tenant_id, _, _, first = created(tenants("create", "--name", "Acme")[1])

    status, output, _ = tenants("rotate-secret", tenant_id)

    assert status == 0
    second = re.search(r"^webhook secret\s+(whsec_\S+)", output, re.M).group(1)
    assert second != first
    name = f"{secret_prefix}{tenant_id}/webhook"
    signing = json.loads(client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])["signing"]
    assert [entry["secret"] for entry in signing] == [second, first]
    assert signing[0]["retire_at"] is None
    assert signing[1]["retire_at"] - signing[0]["created_at"] == 24 * 3600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("disable", "ten_" + "x" * 20), "No tenant"),
        (("issue-key", "ten_" + "x" * 20), "No tenant"),
        (("keys", "ten_" + "x" * 20), "No tenant"),
        (("rotate-secret", "ten_" + "x" * 20), "No tenant"),
        (("revoke-key", "key_" + "x" * 12), "No key"),
        (
            ("create", "--name", "A", "--models", "veo-3.1-fast,no-such-model"),
            "models: not in the catalogue: no-such-model",
        ),
        (("create", "--name", "A", "--budget-usd", "lots"), "budget: 'lots' is not a number"),
        (("create", "--name", " "), "name: 1 to 100"),
    ],
)
def test_bad_input_is_a_clear_error_naming_what_is_wrong_and_changes_nothing(stack, tenants, args, message):
    status, output, error = tenants(*args)
    assert status == 1 and message in error and output == ""
    assert table_items(stack) == []


def test_the_stack_must_be_named(stack, capsys):
    status = COMMAND.main(
        ["--region", "us-east-1", "--table", stack.refs["TenantsTable"], "list"], out=io.StringIO()
    )
    assert status == 2
    assert "--usage-plan-id, --secret-prefix" in capsys.readouterr().err


def test_the_stack_outputs_come_from_cloudformation(stack, usage_plan, secret_prefix, capsys):
    # Given a stack whose outputs name the tenants' parts (what `sam deploy` leaves)
    outputs = {
        "TenantsTableName": stack.refs["TenantsTable"],
        "UsagePlanId": usage_plan,
        "TenantSecretPrefix": secret_prefix,
    }
    template = {
        "Resources": {"Nothing": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    client("cloudformation").create_stack(StackName="sora-relay-test", TemplateBody=json.dumps(template))

    # When the operator names only the stack
    out = io.StringIO()
    status = COMMAND.main(
        ["--stack", "sora-relay-test", "--region", "us-east-1", "create", "--name", "Acme"], out=out
    )

    # Then the tenant is made in that stack's table
    assert status == 0, capsys.readouterr().err
    tenant_id = created(out.getvalue())[0]
    assert any(item["pk"]["S"] == f"tenant#{tenant_id}" for item in table_items(stack))
