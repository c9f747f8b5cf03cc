"""What a SnapStart init does just before Lambda takes the snapshot: its heap frozen.

The hook is registered through `snapshot_restore_py`, AWS's library of SnapStart runtime hooks,
which the python3.12 managed runtime includes
(docs.aws.amazon.com/lambda/latest/dg/snapstart-runtime-hooks-python.html). The runtime runs the
before-snapshot hooks once the init has finished, in the reverse order of their registration.
"""

from __future__ import annotations

import gc


def freeze_heap() -> None:
    """Collect once, then move every object the init left to the permanent generation
    (`gc.freeze`): no collection in a restored instance walks them again. Unfrozen, one full
    collection of an API function's ~58,000 objects (the MCP function's 109,000) costs a restored
    instance 29-99 ms on the dev machine (bench/gc_freeze.py; docs/performance.md, section 1)."""
    gc.collect()
    gc.freeze()


def register_before_snapshot_hooks() -> None:
    """Register freeze_heap with the runtime; nothing where `snapshot_restore_py` is not installed
    (no runtime that takes snapshots is there to run it)."""
    try:
        from snapshot_restore_py import register_before_snapshot
    except ImportError:
        return
    register_before_snapshot(freeze_heap)
