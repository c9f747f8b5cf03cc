"""Attack 6: secrets come from Secrets Manager through a cache, and no secret and no prompt text
reaches the logs (they carry ids, lengths and codes)."""

from __future__ import annotations

import boto3

from devstack.template import secret_value
from sora_relay.runtime.container import current
from tests.integration.conftest import PROVIDER_TOKEN, VALID, submitted

PROMPT = "An unmistakable prompt about a violet giraffe reciting poetry"


def test_a_whole_flow_logs_no_secret_and_no_prompt(
    api, internet, stack, downstream, service_logs, webhook_secret
):
    # Given a full flow: submit, a provider callback, the stream, a webhook (refused once, then
    # delivered), and a forged callback
    video, call = submitted(api, internet, prompt=PROMPT)
    api.callback(call["body"]["callback_url"], internet.success_body(call), token="forged-token")
    internet.webhook_status = 500
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    downstream.pump()
    assert len(internet.webhooks) == 1

    # Then the logs name the task and lengths, and carry none of these
    logs = service_logs.getvalue()
    assert video["id"] in logs and '"prompt_chars":' in logs
    callback_token = call["body"]["callback_url"].split("token=", 1)[1]
    secrets = {
        "the prompt": PROMPT,
        "a piece of the prompt": "violet giraffe",
        "the provider API key": PROVIDER_TOKEN,
        "the callback token key": secret_value(stack, "CallbackTokenSecret"),
        "a callback token": callback_token,
        "the webhook signing secret": secret_value(stack, "WebhookSigningSecret"),
        "the tenant's webhook signing secret": webhook_secret.removeprefix("whsec_"),
        "a webhook signature": internet.webhooks[0].headers["webhook-signature"].split(",", 1)[1],
    }
    leaked = [name for name, value in secrets.items() if value in logs]
    assert leaked == []


def test_secrets_are_read_through_a_cache(api, internet, stack):
    # Given a first submit, which read the provider key and the callback key from Secrets Manager
    assert submitted(api, internet)[0]["status"] == "in_progress"

    # When the secrets are gone from Secrets Manager (as if rotated away)
    client = boto3.client("secretsmanager", region_name="us-east-1")
    for name in ("AceDataApiKeySecret", "CallbackTokenSecret"):
        client.delete_secret(SecretId=stack.refs[name], ForceDeleteWithoutRecovery=True)

    # Then the next submit still works from the cache (max age 300 s by default)
    status, _, video = api.submit(VALID)
    assert status == 202 and video["status"] == "in_progress"


def test_only_secret_ids_are_in_the_environment(stack):
    for function_id in stack.functions():
        environment = stack.function_environment(function_id)
        values = set(environment.values())
        assert PROVIDER_TOKEN not in values
        for name in ("CallbackTokenSecret", "WebhookSigningSecret"):
            assert secret_value(stack, name) not in values, function_id
    assert current().callback_key()  # read from Secrets Manager, not from the environment
