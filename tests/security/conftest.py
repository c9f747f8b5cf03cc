"""The security suite runs the handlers in process, like tests/integration: the same fixtures."""

from tests.integration.conftest import (  # noqa: F401  (pytest finds fixtures by name here)
    api,
    aws_env,
    downstream,
    handlers,
    internet,
    mp4_bytes,
    s3,
    stack,
    webhook_secret,
)
