"""Secret values read from Secrets Manager through a short cache, never from code or env values.

The cache is ours, not Powertools' parameters utility: that utility's import brings in every
provider it has (SSM, AppConfig, DynamoDB, ...) and its transforms, on every cold start of every
function that reads a secret (docs/performance.md), for one GetSecretValue and a timestamp.
"""

from __future__ import annotations

import threading
import time

from sora_relay.adapters.aws import secretsmanager_client
from sora_relay.domain.errors import ConfigurationError

_lock = threading.Lock()
_cache: dict[str, tuple[float, str]] = {}  # secret id -> (read at, monotonic; value)


def read_secret(secret_id: str | None, *, purpose: str, max_age_seconds: float) -> str:
    """The secret's string value; cached for `max_age_seconds` (the settings' `secrets_max_age_seconds`)
    so rotation is picked up."""
    if not secret_id:
        raise ConfigurationError(f"No secret is configured for the {purpose}")
    max_age = max_age_seconds
    now = time.monotonic()
    with _lock:
        cached = _cache.get(secret_id)
    if cached is not None and now - cached[0] < max_age:
        return cached[1]
    # A failed read raises botocore's error, as Powertools' did: unexpected, so a 500 or a retry.
    value = secretsmanager_client().get_secret_value(SecretId=secret_id).get("SecretString")
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"The secret for the {purpose} is empty")
    if max_age > 0:
        with _lock:
            _cache[secret_id] = (now, value)
    return value


def clear_cache() -> None:
    """Forget every cached value (tests switch stacks between runs)."""
    with _lock:
        _cache.clear()
