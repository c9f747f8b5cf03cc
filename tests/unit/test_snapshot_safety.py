"""What SnapStart snapshots must hold nothing unique: the API functions' init opens no connection,
builds no client, reads no setting or secret, and their jitter does not come from `random`'s
module state (every restored instance would share it)."""

from __future__ import annotations

import os
import random

import pytest

from sora_relay.usecases import retry
from tests.conftest import ROOT, probe_json

_PROBE = r"""
import importlib.util, json, socket, sys

def refuse(*args, **kwargs):
    raise AssertionError("a socket was opened during init")

socket.socket.connect = refuse
socket.create_connection = refuse
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

from sora_relay.adapters import aws
from sora_relay.runtime import container
caches = {f"aws.{name}": getattr(aws, name).cache_info().currsize for name in dir(aws) if name.endswith("_client")}
# No container (so no settings read, no collaborator built) until the first invocation asks current().
caches["container"] = 0 if container.installed() is None else 1 + len(container.installed().built())
print(json.dumps(caches))
"""


@pytest.mark.parametrize("function", ["submit", "callback", "status", "playground"])
def test_the_init_phase_captures_nothing_a_restored_instance_must_not_share(function):
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'common'}{os.pathsep}{ROOT}"}
    caches = probe_json(_PROBE, str(ROOT / "functions" / function / "app.py"), env=environment)
    assert caches and set(caches.values()) == {0}, caches


def test_jitter_does_not_follow_the_random_modules_seed():
    draws = []
    for _ in range(2):
        random.seed(7)  # what a snapshot would freeze
        draws.append([retry.backoff_delay(3, base=2.0, cap=900.0) for _ in range(5)])
    assert draws[0] != draws[1]


_HOOKS_PROBE = r"""
import gc, importlib.util, json, sys

spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

from snapshot_restore_py import get_before_snapshot

hooks = get_before_snapshot()
for function, args, kwargs in reversed(hooks):  # what the runtime does before the snapshot
    function(*args, **kwargs)
print(json.dumps({"hooks": [f"{h[0].__module__}.{h[0].__qualname__}" for h in hooks],
                  "frozen": gc.get_freeze_count(), "left": len(gc.get_objects())}))
"""


@pytest.mark.parametrize("function", ["submit", "callback", "status", "playground", "mcp"])
def test_a_snapstart_init_freezes_its_heap_before_the_snapshot(function):
    paths = [ROOT / "layers" / "common", ROOT / "layers" / "mcp", ROOT]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    snap_start = probe_json(
        _HOOKS_PROBE,
        str(ROOT / "functions" / function / "app.py"),
        env={**environment, "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"},
    )
    # The runtime's registry holds our hook; run, it leaves the collector nothing of the init to walk
    assert snap_start["hooks"] == ["sora_relay.runtime.snapshot.freeze_heap"]
    assert snap_start["frozen"] > 10_000 and snap_start["left"] < 100
    # An on-demand init registers nothing: its instance serves events on, no snapshot is taken
    on_demand = probe_json(
        _HOOKS_PROBE,
        str(ROOT / "functions" / function / "app.py"),
        env={**environment, "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"},
    )
    assert on_demand["hooks"] == [] and on_demand["left"] > 10_000
