"""Shared by every test level: the repo's paths, the events and handlers, a Lambda context."""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# Powertools reads these when Logger/Metrics/Tracer are created (at import, as in Lambda, where the
# environment exists before any import): set them before anything imports sora_relay.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "sora-relay")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "SoraRelayTest")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"


@dataclass
class LambdaContext:
    function_name: str = "sora-relay-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:sora-relay-test"
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_event(name: str) -> dict[str, Any]:
    """One of events/*.json, the same file `sam local invoke -e` takes."""
    return copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))


def load_handler(function: str) -> ModuleType:
    """Import functions/<function>/app.py under a unique name, as Lambda would import app.py."""
    path = ROOT / "functions" / function / "app.py"
    spec = importlib.util.spec_from_file_location(f"{function}_app", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()


@pytest.fixture
def service_logs() -> Iterator[io.StringIO]:
    """What the service's Powertools logger writes (its JSON lines), captured at its handler."""
    handler = next(
        h for h in logging.getLogger("sora-relay").handlers if isinstance(h, logging.StreamHandler)
    )
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def log_lines(logs: io.StringIO) -> list[dict[str, Any]]:
    """The JSON lines `service_logs` captured so far."""
    return [json.loads(line) for line in logs.getvalue().splitlines() if line.strip()]


def failure_lines(logs: io.StringIO) -> list[dict[str, Any]]:
    """The captured lines at warning level or above."""
    return [line for line in log_lines(logs) if line["level"] in ("WARNING", "ERROR", "CRITICAL")]
