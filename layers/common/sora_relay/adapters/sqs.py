"""SQS access: the only code that sends to or changes messages on our queues."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sora_relay.domain.errors import QueueError

MAX_DELAY_SECONDS = 900  # SQS's limit for DelaySeconds
MAX_VISIBILITY_SECONDS = 43200  # SQS's limit for a visibility timeout (12 h)


class WorkQueue:
    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self._url = queue_url

    def send(self, body: dict[str, Any], *, delay_seconds: float = 0) -> None:
        try:
            self._client.send_message(
                QueueUrl=self._url,
                MessageBody=json.dumps(body),
                DelaySeconds=int(min(max(delay_seconds, 0), MAX_DELAY_SECONDS)),
            )
        except (ClientError, BotoCoreError) as error:
            raise QueueError("Could not queue the work") from error

    def retry_later(self, receipt_handle: str, delay_seconds: float) -> None:
        """Hide a received message for `delay_seconds`: SQS then hands it out again."""
        try:
            self._client.change_message_visibility(
                QueueUrl=self._url,
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=int(min(max(delay_seconds, 0), MAX_VISIBILITY_SECONDS)),
            )
        except (ClientError, BotoCoreError) as error:
            raise QueueError("Could not delay the message") from error
