"""boto3 clients, created on first use and cached (never at import time, so moto can wrap them).

boto3 honours AWS_ENDPOINT_URL, so the same code talks to moto's server in local mode.
"""

from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)


@lru_cache(maxsize=1)
def dynamodb_client() -> Any:
    return boto3.client("dynamodb", config=_CONFIG)


@lru_cache(maxsize=1)
def s3_client() -> Any:
    # Presigned URLs must be SigV4 (SigV2 URLs are refused in new regions).
    return boto3.client("s3", config=_CONFIG.merge(Config(signature_version="s3v4")))


@lru_cache(maxsize=1)
def sqs_client() -> Any:
    return boto3.client("sqs", config=_CONFIG)


@lru_cache(maxsize=1)
def events_client() -> Any:
    return boto3.client("events", config=_CONFIG)


@lru_cache(maxsize=1)
def secretsmanager_client() -> Any:
    return boto3.client("secretsmanager", config=_CONFIG)


def reset_clients() -> None:
    """Forget the cached clients (tests switch endpoints between runs)."""
    for factory in (dynamodb_client, s3_client, sqs_client, events_client, secretsmanager_client):
        factory.cache_clear()
