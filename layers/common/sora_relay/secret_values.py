"""Secret values read from Secrets Manager through a short cache, never from code or env values."""

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

from sora_relay.aws import secretsmanager_client
from sora_relay.errors import ConfigurationError
from sora_relay.settings import get_settings


def read_secret(secret_id: str | None, *, purpose: str) -> str:
    """The secret's string value; cached for `secrets_max_age_seconds` so rotation is picked up."""
    if not secret_id:
        raise ConfigurationError(f"No secret is configured for the {purpose}")
    if "secrets" not in DEFAULT_PROVIDERS:
        # Powertools' own provider would open a second boto3 session, which loads the endpoint
        # and service data again (tens of ms at a cold start): share ours.
        DEFAULT_PROVIDERS["secrets"] = parameters.SecretsProvider(boto3_client=secretsmanager_client())
    value = parameters.get_secret(secret_id, max_age=get_settings().secrets_max_age_seconds)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"The secret for the {purpose} is empty")
    return value
