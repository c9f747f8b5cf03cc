"""The API's and the catalogue's pydantic models are built on first use (`defer_build`), so a cold
start builds only those its route needs; a SnapStart init builds them all, into the snapshot."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import ROOT, probe_json

EVENTS = ROOT / "events"

_PROBE = r"""
import importlib, importlib.util, json, sys

spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

from pydantic import BaseModel
from sora_relay.runtime.container import DEFERRED_MODELS

built = {}
for name in DEFERRED_MODELS:
    for value in vars(importlib.import_module(name)).values():
        if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == name:
            built[f"{name}.{value.__name__}"] = value.__pydantic_complete__
print(json.dumps(built))
"""


def _built_after_init(function: str, init_type: str) -> dict[str, bool]:
    environment = {
        **os.environ,
        **json.loads((EVENTS / "env.json").read_text())[f"{function.capitalize()}Function"],
        "PYTHONPATH": f"{ROOT / 'layers' / 'common'}{os.pathsep}{ROOT}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_INITIALIZATION_TYPE": init_type,
    }
    return probe_json(_PROBE, str(ROOT / "functions" / function / "app.py"), env=environment)


def test_an_on_demand_init_of_the_callback_builds_none_of_the_api_answers():
    built = _built_after_init("callback", "on-demand")

    # Only InputNames is built at import (ModelEntry's default is an instance of it)
    assert built["sora_relay.domain.catalogue.InputNames"] is True
    unbuilt = {name for name, complete in built.items() if not complete}
    assert {
        "sora_relay.domain.create_request.CreateVideoRequest",
        "sora_relay.domain.models.VideoObject",
        "sora_relay.domain.models.VideoDetail",
        "sora_relay.domain.models.CallbackReceipt",
        "sora_relay.domain.catalogue.Catalogue",
        "sora_relay.domain.catalogue.ModelEntry",
    } <= unbuilt


@pytest.mark.parametrize("function", ["submit", "callback", "status"])
def test_a_snapstart_init_builds_every_deferred_model(function):
    built = _built_after_init(function, "snap-start")

    assert built and all(built.values()), [name for name, complete in built.items() if not complete]
