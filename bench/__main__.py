"""`make bench`: run the eight benchmarks in order, then print every figure against its target.

    python -m bench [--only cold_start,warm] [--quick]

Each benchmark is its own script (python -m bench.NAME), run here in a fresh process, one after the
other, so none measures while another loads the machine. The cost model (6) runs last: it prices
what the others measured. Exit status: 0 if every figure with a target meets it, 1 if any misses,
2 if a benchmark could not run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from bench.harness import OUT, ROOT, load

# (module, title, arguments for --quick)
BENCHMARKS = [
    ("artifact", "4. deployment artifact", []),
    ("cold_start", "1. cold start", ["--repeats", "3"]),
    (
        "gc_freeze",
        "1b. a restored instance's first full collection, its heap frozen or not",
        ["--repeats", "3"],
    ),
    ("warm", "3. warm handler overhead", ["--repeats", "3"]),
    ("mcp_cold_start", "8. MCP function cold start and warm tools/call", ["--repeats", "3"]),
    ("archive", "2. archiving a video", ["--repeats", "1"]),
    ("callback", "7. callback answer time against the video's size", ["--repeats", "3", "--warmup", "1"]),
    ("throughput", "5. local stack throughput", ["--repeats", "1", "--tasks", "50"]),
    ("history", "8. lookups against 100,000 finished tasks", ["--tasks", "10000"]),
    ("cost", "6. cost of 1,000 videos", []),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", help="comma-separated benchmark names: " + ", ".join(b[0] for b in BENCHMARKS)
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats: a smoke run, not figures to quote"
    )
    args = parser.parse_args(argv)
    chosen = set(args.only.split(",")) if args.only else {name for name, _, _ in BENCHMARKS}
    unknown = chosen - {name for name, _, _ in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    failed_to_run = []
    began = time.monotonic()
    for name, title, quick in BENCHMARKS:
        if name not in chosen:
            continue
        (OUT / f"{name}.json").unlink(missing_ok=True)
        print(f"\n######## {title}: python -m bench.{name}", flush=True)
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", f"bench.{name}", *(quick if args.quick else [])], cwd=ROOT
        )
        print(
            f"######## {name}: exit {result.returncode} after {time.monotonic() - started:.0f} s", flush=True
        )
        if result.returncode not in (0, 1) or load(name) is None:
            failed_to_run.append(name)

    print(f"\n######## summary ({time.monotonic() - began:.0f} s{', --quick' if args.quick else ''})")
    missed = 0
    for name, title, _ in BENCHMARKS:
        if name not in chosen:
            continue
        result = load(name)
        if result is None:
            print(f"{title}: did not run to the end")
            continue
        print(title)
        for figure in result["figures"]:
            verdict = {True: "PASS", False: "MISS", None: "INFO"}[figure["ok"]]
            spread = figure["spread"]
            missed += figure["ok"] is False
            print(
                f"  [{verdict}] {figure['name']}: {spread['median']:.2f}{figure['unit']} "
                f"(min {spread['min']:.2f}, max {spread['max']:.2f}, n={spread['n']})  {figure['target']}"
            )
    if failed_to_run:
        print(f"could not run: {', '.join(failed_to_run)}")
        return 2
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
