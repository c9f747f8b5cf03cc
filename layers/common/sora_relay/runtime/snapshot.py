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
    (`gc.freeze`): no collection in a restored instance walks them again. Unfrozen, a full
    collection of the init's ~55,000 objects could fall inside a restored instance's first event
    (45-60 ms in bench/cold_start.py on the dev machine: docs/performance.md, section 1)."""
    gc.collect()
    gc.freeze()


def register_before_snapshot_hooks() -> bool:
    """Register freeze_heap with the runtime; False where `snapshot_restore_py` is not installed
    (no runtime that takes snapshots is there to run it)."""
    try:
        from snapshot_restore_py import register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(freeze_heap)
    return True
