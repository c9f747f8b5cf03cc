"""EventBridge: the only code that publishes on the service's event bus.

Integrations subscribe with their own rules on `source: sora-relay`. Detail types:
`Video Generation Completed` / `Video Generation Failed` (the video object and the webhook's
`event_id` as detail), and for submissions from SQS `Video Submission Accepted` / `Video
Submission Rejected`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sora_relay.domain.errors import EventBusError

SOURCE = "sora-relay"
_BATCH = 10  # PutEvents takes at most 10 entries


@dataclass(frozen=True)
class BusEvent:
    detail_type: str
    detail: dict[str, Any]
    resources: tuple[str, ...] = ()


class EventBus:
    def __init__(self, client: Any, bus_name: str) -> None:
        self._client = client
        self._bus = bus_name

    def publish(self, events: list[BusEvent]) -> None:
        """Publish every event or raise EventBusError (a partial failure counts as a failure)."""
        for start in range(0, len(events), _BATCH):
            entries = [
                {
                    "EventBusName": self._bus,
                    "Source": SOURCE,
                    "DetailType": event.detail_type,
                    "Detail": json.dumps(event.detail, separators=(",", ":")),
                    "Resources": list(event.resources),
                }
                for event in events[start : start + _BATCH]
            ]
            try:
                answer = self._client.put_events(Entries=entries)
            except (ClientError, BotoCoreError) as error:
                raise EventBusError("Could not publish the events") from error
            if answer.get("FailedEntryCount"):
                codes = sorted(
                    {entry.get("ErrorCode", "?") for entry in answer["Entries"] if "ErrorCode" in entry}
                )
                raise EventBusError(
                    f"The event bus refused {answer['FailedEntryCount']} events ({', '.join(codes)})"
                )
