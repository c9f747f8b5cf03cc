"""Benchmark 1b: a restored SnapStart instance's first full garbage collection, its heap frozen
before the snapshot or not.

Each SnapStart function's init runs as Lambda runs it before a snapshot (`import app` with
AWS_LAMBDA_INITIALIZATION_TYPE=snap-start, in `make build`'s layout on python3.12, as
bench/cold_start.py does), then a fork plays the restored instance and times one `gc.collect()`.
Two children per round, interleaved: "frozen" runs the before-snapshot hooks the init registered
(snapshot_restore_py's registry, the last registered first, as the runtime does: our
runtime/snapshot.py collects and freezes the heap), "unfrozen" runs none and collects once
before the fork instead. Figures: the collection's median time in each, no target (recorded):
where a full collection falls is the collector's choice, this is what one costs when it does.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from bench import harness
from bench.cold_start import BUILD, RUNTIME, python312, snapstart_functions
from devstack.template import load_template

BENCH = "gc_freeze"

CHILD = r"""
import gc, json, os, sys, time
import app
from snapshot_restore_py import get_before_snapshot

hooks = get_before_snapshot()
if sys.argv[1] == "frozen":
    for hook, args, kwargs in reversed(hooks):
        hook(*args, **kwargs)
else:
    gc.collect()
tracked = len(gc.get_objects())
read, write = os.pipe()
if os.fork() == 0:  # the restored instance
    started = time.perf_counter()
    gc.collect()
    os.write(write, str(time.perf_counter() - started).encode())
    os._exit(0)
os.close(write)
seconds = float(os.read(read, 64))
os.wait()
print(json.dumps({"seconds": seconds, "tracked": tracked, "frozen": gc.get_freeze_count(), "hooks": len(hooks)}))
"""


def layer_dirs(logical_id: str) -> list[Path]:
    """The function's layers as Lambda mounts them: the Globals' `Layers`, then its own (SAM
    appends a function's to the Globals')."""
    template = load_template()
    own = template["Resources"][logical_id]["Properties"].get("Layers", [])
    refs = [*template.get("Globals", {}).get("Function", {}).get("Layers", []), *own]
    return [BUILD / ref["Ref"] / "python" for ref in refs]


def run_child(python: str, logical_id: str, mode: str) -> dict[str, float]:
    layers = layer_dirs(logical_id)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join(map(str, [BUILD / logical_id, *layers, RUNTIME])),
        "PYTHONNOUSERSITE": "1",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [python, "-S", "-c", CHILD, mode],
        env=env,
        cwd=BUILD / logical_id,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{logical_id} {mode} child failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="measured rounds (default 7)")
    args = parser.parse_args(argv)
    functions = sorted(snapstart_functions())
    if missing := [name for name in functions if not (BUILD / name).is_dir()]:
        print(f"no build of {missing} at {BUILD}: run `make build` first", file=sys.stderr)
        return 2
    python, figures, details = python312(), [], {}
    for logical_id in functions:
        runs = harness.interleaved(
            {mode: functools.partial(run_child, python, logical_id, mode) for mode in ("frozen", "unfrozen")},
            args.repeats,
            alternate=True,
        )
        seconds = {mode: [run["seconds"] for run in found] for mode, found in runs.items()}
        frozen_ms, unfrozen_ms = (
            harness.Spread.of(s * 1000 for s in seconds[m]) for m in ("frozen", "unfrozen")
        )
        last = runs["frozen"][-1]
        details[logical_id] = {"frozen_ms": frozen_ms, "unfrozen_ms": unfrozen_ms, **last}
        # Two times, not their ratio: frozen / unfrozen is about 0.001, which prints as 0.00x.
        name = f"{logical_id} restored, first full collection"
        figures += [
            harness.Figure(
                BENCH,
                f"{name}, heap unfrozen",
                unfrozen_ms,
                " ms",
                note=f"{runs['unfrozen'][-1]['tracked']} objects tracked",
            ),
            harness.Figure(
                BENCH,
                f"{name}, heap frozen by the before-snapshot hooks",
                frozen_ms,
                " ms",
                note=f"{last['hooks']} hook(s) run, {last['frozen']} objects frozen",
            ),
        ]
    harness.print_figures("Benchmark 1b: a restored instance's first full collection", figures)
    path = harness.save(BENCH, figures, functions=details)
    print(f"\n  saved {harness.shown(path)}")
    return harness.exit_code(figures)


if __name__ == "__main__":
    sys.exit(main())
