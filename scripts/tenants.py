"""The operator's command for tenants, their API keys and their webhook signing secrets.

    python scripts/tenants.py --stack sora-relay create --name "Acme" --budget-usd 50 --models veo-3.1-fast
    python scripts/tenants.py --stack sora-relay list
    python scripts/tenants.py --stack sora-relay disable ten_...
    python scripts/tenants.py --stack sora-relay issue-key ten_...
    python scripts/tenants.py --stack sora-relay revoke-key key_...
    python scripts/tenants.py --stack sora-relay keys ten_...
    python scripts/tenants.py --stack sora-relay rotate-secret ten_...

It uses the operator's AWS credentials (boto3's usual chain: the environment, --profile, ...),
never the public API, which has no route for any of this. The stack is named by `--stack` (its
outputs TenantsTableName, UsagePlanId and TenantSecretPrefix are read from CloudFormation), or its
parts are given (`--table`, `--usage-plan-id`, `--secret-prefix`), or read from an outputs file
(`--outputs-file`, which `make run` writes for its local stack: `make tenants ARGS="list"`).

A new key and a new webhook secret are printed once, here, and never again: only the key's
sha256 is stored, and the secret is read back by the webhook sender alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "layers" / "common") not in sys.path:
    sys.path.insert(0, str(ROOT / "layers" / "common"))

import boto3  # noqa: E402
from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402

from sora_relay.adapters.tenant_secrets import TenantSecrets  # noqa: E402
from sora_relay.adapters.tenants import TenantStore  # noqa: E402
from sora_relay.adapters.usage_plan_keys import UsagePlanKeys  # noqa: E402
from sora_relay.domain import catalogue  # noqa: E402
from sora_relay.domain.errors import SoraRelayError  # noqa: E402
from sora_relay.domain.tenant import ApiKey, Tenant  # noqa: E402
from sora_relay.usecases.manage_tenants import TenantAdmin  # noqa: E402

OUTPUT_NAMES = ("TenantsTableName", "UsagePlanId", "TenantSecretPrefix")


class UsageError(Exception):
    """A wrong command line: printed with the usage, exit status 2."""


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="tenants.py", description=__doc__.split("\n\n")[0])
    where = main.add_argument_group("which stack")
    where.add_argument("--stack", help="the CloudFormation stack: its outputs name the rest")
    where.add_argument("--outputs-file", type=Path, help='a JSON file {"Outputs": {...}, "Endpoint": url}')
    where.add_argument("--table", help="the TenantsTable's name (output TenantsTableName)")
    where.add_argument("--usage-plan-id", help="the API's usage plan (output UsagePlanId)")
    where.add_argument("--secret-prefix", help="the tenants' secret name prefix (output TenantSecretPrefix)")
    where.add_argument("--region", help="the AWS region (default: boto3's)")
    where.add_argument("--profile", help="an AWS profile of yours (default: boto3's chain)")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="a tenant, its first key and its webhook secret")
    create.add_argument("--name", required=True)
    create.add_argument("--budget-usd", help="monthly budget in USD (default: no limit)")
    create.add_argument("--models", default="", help="comma-separated catalogue ids (default: all)")
    commands.add_parser("list", help="every tenant")
    for name, text in (
        ("disable", "disable a tenant: its keys stop working"),
        ("issue-key", "a new key for a tenant, printed once"),
        ("keys", "a tenant's keys (prefix, id, status; never the key)"),
        ("rotate-secret", "a new webhook signing secret, printed once; the old one signs 24 h more"),
    ):
        commands.add_parser(name, help=text).add_argument("tenant_id", metavar="TENANT")
    commands.add_parser("revoke-key", help="revoke a key by its id (key_...)").add_argument(
        "key_id", metavar="KEY_ID"
    )
    return main


def locate(args: argparse.Namespace, session: Any) -> tuple[dict[str, str], str | None]:
    """(the stack's outputs that matter here, an endpoint URL or None) from the arguments."""
    endpoint = None
    outputs: dict[str, str] = {}
    if args.stack:
        stacks = session.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"]
        outputs = {item["OutputKey"]: item["OutputValue"] for item in stacks[0].get("Outputs", [])}
    elif args.outputs_file:
        try:
            document = json.loads(args.outputs_file.read_text())
        except (OSError, ValueError) as error:
            raise UsageError(f"--outputs-file: cannot read {args.outputs_file}: {error}") from None
        outputs, endpoint = dict(document.get("Outputs") or {}), document.get("Endpoint")
    given = {"TenantsTableName": args.table, "UsagePlanId": args.usage_plan_id}
    given["TenantSecretPrefix"] = args.secret_prefix
    outputs |= {name: value for name, value in given.items() if value}
    flags = {
        "TenantsTableName": "--table",
        "UsagePlanId": "--usage-plan-id",
        "TenantSecretPrefix": "--secret-prefix",
    }
    missing = [flags[name] for name in OUTPUT_NAMES if not outputs.get(name)]
    if missing:
        raise UsageError(f"name the stack (--stack or --outputs-file) or give {', '.join(missing)}")
    return {name: outputs[name] for name in OUTPUT_NAMES}, endpoint


def admin_for(outputs: dict[str, str], session: Any, endpoint: str | None) -> TenantAdmin:
    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint) if endpoint else session.client(service)

    return TenantAdmin(
        TenantStore(client("dynamodb"), outputs["TenantsTableName"]),
        TenantSecrets(client("secretsmanager"), outputs["TenantSecretPrefix"]),
        UsagePlanKeys(client("apigateway"), outputs["UsagePlanId"]),
        model_ids=[entry.id for entry in catalogue.default().models],
    )


def _tenant_line(tenant: Tenant) -> str:
    budget = tenant.monthly_budget_microusd
    limit = "no limit" if budget is None else f"{budget / 1_000_000:g} USD/month"
    models = ",".join(tenant.models) or "all models"
    return f"{tenant.tenant_id}  {tenant.status:<8}  {limit:<18}  {models:<24}  {tenant.name}"


def _key_line(key: ApiKey) -> str:
    revoked = f"  revoked_at {key.revoked_at}" if key.revoked_at is not None else ""
    return f"{key.key_id}  {key.prefix}...  {key.status:<7}  created_at {key.created_at}{revoked}"


def run(args: argparse.Namespace, admin: TenantAdmin, out: Any) -> None:
    if args.command == "create":
        models = [model for model in args.models.split(",") if model.strip()]
        created = admin.create(args.name, budget_usd=args.budget_usd, models=models)
        print(f"tenant          {_tenant_line(created.tenant)}", file=out)
        print(f"api key         {created.key.api_key}   ({created.key.record.key_id})", file=out)
        print(f"webhook secret  {created.webhook_secret}", file=out)
        print("The key and the secret are shown once: store them now.", file=out)
    elif args.command == "list":
        for tenant in admin.list():
            print(_tenant_line(tenant), file=out)
    elif args.command == "disable":
        print(f"disabled  {_tenant_line(admin.disable(args.tenant_id))}", file=out)
    elif args.command == "issue-key":
        issued = admin.issue_key(args.tenant_id)
        print(f"api key  {issued.api_key}   ({issued.record.key_id}; shown once)", file=out)
    elif args.command == "revoke-key":
        print(f"revoked  {_key_line(admin.revoke_key(args.key_id))}", file=out)
    elif args.command == "keys":
        for key in admin.keys(args.tenant_id):
            print(_key_line(key), file=out)
    elif args.command == "rotate-secret":
        secret = admin.rotate_secret(args.tenant_id)
        print(f"webhook secret  {secret}", file=out)
        print("Shown once. The previous secret keeps signing for 24 h beside it.", file=out)


def main(argv: Sequence[str] | None = None, *, out: Any = None) -> int:
    command_line = parser()
    args = command_line.parse_args(argv)
    out = out or sys.stdout
    session = boto3.Session(profile_name=args.profile, region_name=args.region)
    try:
        outputs, endpoint = locate(args, session)
        run(args, admin_for(outputs, session, endpoint), out)
    except UsageError as error:
        command_line.print_usage(sys.stderr)
        print(f"tenants.py: error: {error}", file=sys.stderr)
        return 2
    except SoraRelayError as error:
        where = f" ({error.param})" if error.param else ""
        print(f"tenants.py: {error.message}{where}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:  # credentials, permissions, a stack that is not there
        print(f"tenants.py: AWS refused: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
