"""Tenants' keys and rules (domain/tenant.py) and the authorizer's lookup cache (usecases/authorize.py)."""

from __future__ import annotations

import hashlib
import re

import pytest

from sora_relay.domain import tenant as t
from sora_relay.domain.tenant import ApiKey, Refusal, Tenant
from sora_relay.usecases.authorize import CachedLookups, Grant, authorize

KEY = "sr_" + "A" * 40


def make_tenant(**fields) -> Tenant:
    values = {
        "tenant_id": "ten_" + "t" * 20,
        "name": "Acme",
        "status": t.TENANT_ACTIVE,
        "usage_identifier": "usage-value",
        "usage_key_id": "uk1",
        "webhook_secret_id": "stack/tenants/ten_x/webhook",
        "created_at": 1,
    }
    return Tenant(**{**values, **fields})


def make_key(**fields) -> ApiKey:
    values = {"key_hash": t.hash_key(KEY), "tenant_id": "ten_" + "t" * 20, "key_id": "key_" + "k" * 12}
    return ApiKey(**{"prefix": KEY[:8], "created_at": 1, **values, **fields})


# -- ids, keys and hashes ----------------------------------------------------------------------------


def test_ids_and_keys_have_the_agreed_shapes_and_are_random():
    keys = {t.new_api_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(re.fullmatch(r"sr_[A-Za-z0-9_-]{40}", key) for key in keys)
    assert re.fullmatch(r"ten_[A-Za-z0-9_-]{20}", t.new_tenant_id())
    assert re.fullmatch(r"key_[A-Za-z0-9_-]{12}", t.new_key_id())
    secret = t.new_webhook_secret()
    assert secret.startswith("whsec_") and len(__import__("base64").b64decode(secret[6:])) == 24


def test_a_key_is_stored_as_its_sha256_and_listed_by_its_first_8_characters():
    issued = t.issue_key("ten_x", now=5)
    assert issued.record.key_hash == hashlib.sha256(issued.api_key.encode()).hexdigest()
    assert issued.record.prefix == issued.api_key[:8] and issued.record.prefix.startswith("sr_")
    item = issued.record.to_item()
    assert item["pk"] == "key#" + issued.record.key_hash
    assert issued.api_key not in str(item) and issued.api_key not in repr(issued)
    assert ApiKey.from_item(item) == issued.record


def test_items_round_trip_and_leave_out_what_is_absent():
    plain = make_tenant()
    assert "monthly_budget_microusd" not in plain.to_item() and "models" not in plain.to_item()
    limited = make_tenant(monthly_budget_microusd=5_000_000, models=("veo-3.1-fast",))
    assert Tenant.from_item(limited.to_item()) == limited
    assert limited.to_item()["pk"] == "tenant#" + limited.tenant_id
    assert t.usage_pk("ten_x", "2026-11") == "usage#ten_x#2026-11"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": f"Bearer {KEY}"}, KEY),
        ({"authorization": f"bearer   {KEY} "}, KEY),
        ({"AUTHORIZATION": f"BEARER {KEY}"}, KEY),
        ({"x-api-key": KEY}, KEY),
        ({"X-Api-Key": KEY}, KEY),
        ({"Authorization": f"Bearer {KEY}", "x-api-key": KEY}, KEY),
        ({"Authorization": f"Basic {KEY}", "x-api-key": KEY}, KEY),  # not a bearer token: the header's
        ({"Authorization": f"Bearer {KEY}", "x-api-key": "sr_" + "B" * 40}, None),  # two keys: refused
        ({"Authorization": "Bearer"}, None),
        ({"Authorization": f"Basic {KEY}"}, None),
        ({"x-api-key": ""}, None),
        ({}, None),
        (None, None),
    ],
)
def test_the_presented_key_is_bearer_or_x_api_key_in_any_case(headers, expected):
    assert t.presented_key(headers) == expected


@pytest.mark.parametrize("value", [KEY, "sr_" + "-_" * 20])
def test_keys_are_recognised_by_their_shape(value):
    assert t.looks_like_key(value)


@pytest.mark.parametrize(
    "value", ["", None, "sr_short", "sk-" + "A" * 40, "sr_" + "A" * 41, "sr_" + "A" * 39 + "!"]
)
def test_anything_else_is_not_a_key(value):
    assert not t.looks_like_key(value)


# -- who may pass ------------------------------------------------------------------------------------


def test_only_an_active_key_of_an_active_tenant_passes():
    assert t.refusal(make_key(), make_tenant()) is None
    assert t.refusal(None, None) == Refusal(401, "unknown key")
    assert t.refusal(make_key(status=t.KEY_REVOKED), make_tenant()).status == 401
    assert t.refusal(make_key(), None).status == 401
    assert t.refusal(make_key(), make_tenant(tenant_id="ten_" + "o" * 20)).status == 401
    assert t.refusal(make_key(), make_tenant(status=t.TENANT_DISABLED)) == Refusal(403, "disabled tenant")
    assert t.refusal(make_key(), make_tenant(usage_identifier="")).status == 403
    # A status nobody wrote (a damaged item) refuses rather than passes
    assert not ApiKey.from_item({"pk": "key#h", "tenant_id": "x", "key_id": "k"}).is_active
    assert not Tenant.from_item({"tenant_id": "x"}).is_active


# -- the operator's inputs ---------------------------------------------------------------------------


def test_budgets_are_micro_usd_and_bad_ones_name_the_field():
    assert t.budget_microusd("12.5") == 12_500_000
    assert t.budget_microusd(None) is None and t.budget_microusd("") is None
    for bad in ("ten", "-1", "nan", "1e12"):
        with pytest.raises(ValueError, match=r"^budget: "):
            t.budget_microusd(bad)


def test_models_must_be_catalogue_ids():
    assert t.check_models(["a", " b ", "a", ""], ["a", "b"]) == ("a", "b")
    with pytest.raises(ValueError, match=r"^models: not in the catalogue: zz"):
        t.check_models(["a", "zz"], ["a"])
    with pytest.raises(ValueError, match=r"^name: "):
        t.check_name("  ")


# -- the signing secrets document ---------------------------------------------------------------------


def test_a_rotation_puts_the_new_secret_first_and_retires_the_others_in_24_hours():
    first = t.first_signing_document("whsec_one", now=100)
    assert first == {"signing": [{"secret": "whsec_one", "created_at": 100, "retire_at": None}]}

    second = t.rotated_document(first, "whsec_two", now=200)
    assert [entry["secret"] for entry in second["signing"]] == ["whsec_two", "whsec_one"]
    assert second["signing"][0]["retire_at"] is None
    assert second["signing"][1]["retire_at"] == 200 + 24 * 3600

    # A second rotation within the day keeps the first one's date; a retired entry is dropped
    third = t.rotated_document(second, "whsec_three", now=300)
    assert [entry["retire_at"] for entry in third["signing"]] == [None, 300 + 86400, 200 + 86400]
    later = t.rotated_document(third, "whsec_four", now=200 + 86400)
    assert [entry["secret"] for entry in later["signing"]] == ["whsec_four", "whsec_three", "whsec_two"]


# -- the authorizer's lookups ------------------------------------------------------------------------


class Directory:
    def __init__(self, keys: dict[str, ApiKey], tenants: dict[str, Tenant]) -> None:
        self.keys, self.tenants = keys, tenants
        self.reads = 0

    def find_key(self, key_hash: str) -> ApiKey | None:
        self.reads += 1
        return self.keys.get(key_hash)

    def get_tenant(self, tenant_id: str) -> Tenant | None:
        self.reads += 1
        return self.tenants.get(tenant_id)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_authorize_grants_the_tenant_and_refuses_with_the_status_api_gateway_needs():
    key, tenant = make_key(), make_tenant()
    lookups = CachedLookups(Directory({key.key_hash: key}, {tenant.tenant_id: tenant}), 0)

    granted = authorize(lookups, {"Authorization": f"Bearer {KEY}"})
    assert isinstance(granted, Grant) and granted.tenant == tenant and granted.key == key
    assert authorize(lookups, {}).status == 401
    assert authorize(lookups, {"x-api-key": "not-a-key"}).status == 401
    assert authorize(lookups, {"x-api-key": "sr_" + "Z" * 40}) == Refusal(401, "unknown key")


def test_lookups_are_kept_for_the_ttl_so_a_revocation_shows_after_it():
    key, tenant, clock = make_key(), make_tenant(), Clock()
    directory = Directory({key.key_hash: key}, {tenant.tenant_id: tenant})
    lookups = CachedLookups(directory, 60, clock=clock)
    assert isinstance(authorize(lookups, {"x-api-key": KEY}), Grant)
    reads = directory.reads

    # When the key is revoked, the cached answer stands until the TTL has passed
    directory.keys[key.key_hash] = make_key(status=t.KEY_REVOKED)
    clock.now += 59
    assert isinstance(authorize(lookups, {"x-api-key": KEY}), Grant)
    assert directory.reads == reads
    clock.now += 1
    assert authorize(lookups, {"x-api-key": KEY}) == Refusal(401, "revoked key")


def test_unknown_keys_are_not_kept_and_the_cache_is_bounded():
    key, tenant, clock = make_key(), make_tenant(), Clock()
    directory = Directory({}, {tenant.tenant_id: tenant})
    lookups = CachedLookups(directory, 60, max_entries=2, clock=clock)
    assert authorize(lookups, {"x-api-key": KEY}).status == 401
    # A key issued right after an unknown-key answer works at once
    directory.keys[key.key_hash] = key
    assert isinstance(authorize(lookups, {"x-api-key": KEY}), Grant)
    for letter in "BC":
        other = make_key(key_hash=t.hash_key("sr_" + letter * 40))
        directory.keys[other.key_hash] = other
        lookups.lookup(other.key_hash)
    assert len(lookups._entries) == 2 and key.key_hash not in lookups._entries


def test_the_authorizer_cold_start_is_boto3_and_the_domain_only():
    # It runs before every protected request: no container, no pydantic, no httpx, no resolver.
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    probe = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('app', 'functions/authorizer/app.py')\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "heavy = ('httpx', 'pydantic', 'sora_relay.runtime.container', 'aws_lambda_powertools.event_handler')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    path = os.pathsep.join([str(ROOT / "layers" / "common"), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
