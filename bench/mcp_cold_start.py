"""The MCP function's cold start against a minimal server on the same SDK (target: at most 1.3x).

    .venv/bin/python -m bench.mcp_cold_start [--repeats N]

Each child is a fresh interpreter timed from spawn to the answer of its first `tools/call`
(`sora_list_actions`, which reaches no AWS service), then a second, warm call timed inside it:
- the function: `functions/mcp/app.py`'s handler with an API Gateway event (Mangum, a fresh
  stateless session manager, the server built on first use with the catalogue and our 14 tools);
- the baseline: an `MCPServer` with one tool of that name, served the same way (Mangum over a
  fresh stateless session manager), so the ratio is what sora-relay adds to the SDK's own cost.
The dev venv's interpreter runs both, bytecode cached (a warm-up round is discarded). Each child's
CPU time (user + system, the whole child) is recorded too: on a shared, loaded machine it moves far
less than the wall clock, which waits for the other tenants' processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import harness

ROOT = Path(__file__).resolve().parent.parent
BENCH = "mcp_cold_start"
LIMIT = 1.3  # our code's own cost over the SDK's
EVENT = ROOT / "events" / "mcp-tools-call.json"
CALL = {
    "jsonrpc": "2.0",
    "id": 7,
    "method": "tools/call",
    "params": {"name": "sora_list_actions", "arguments": {}},
}

_FUNCTION = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
event = json.load(open(sys.argv[2])); event["body"] = sys.argv[3]
class Context:
    function_name = "bench"; memory_limit_in_mb = 512; aws_request_id = "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
import app
answer = app.lambda_handler(event, Context())
assert answer["statusCode"] == 200 and '"isError":false' in answer["body"].replace(" ", ""), answer
sys.stderr.write("cold-done\n"); sys.stderr.flush()
start = time.perf_counter(); app.lambda_handler(event, Context())
print(json.dumps({"warm_ms": (time.perf_counter() - start) * 1000}))
"""

_BASELINE = r"""
import json, sys, time
from mangum import Mangum
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

server = MCPServer("baseline")

@server.tool()
def sora_list_actions() -> str:
    return "[]"

async def serve(scope, receive, send):
    server.streamable_http_app(json_response=True, stateless_http=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    async with server.session_manager.run():
        await server.session_manager.handle_request(scope, receive, send)

handler = Mangum(serve, lifespan="off")
event = json.load(open(sys.argv[2])); event["body"] = sys.argv[3]
answer = handler(event, None)
assert answer["statusCode"] == 200, answer
sys.stderr.write("cold-done\n"); sys.stderr.flush()
start = time.perf_counter(); handler(event, None)
print(json.dumps({"warm_ms": (time.perf_counter() - start) * 1000}))
"""


def _environment(cache: str) -> dict[str, str]:
    path = os.pathsep.join(str(ROOT / part) for part in ("layers/common", "layers/mcp", "."))
    env_json = json.loads((ROOT / "events" / "env.json").read_text())["McpFunction"]
    return {
        **os.environ,
        **env_json,
        "PYTHONPATH": path,
        "PYTHONPYCACHEPREFIX": cache,
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(script: str, env: dict[str, str]) -> tuple[float, float, float]:
    """(cold ms: spawn to the first answer, warm ms: the second call, CPU ms of the child)."""
    cpu_before = _cpu_of_children()
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(ROOT / "functions" / "mcp"), str(EVENT), json.dumps(CALL)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None and child.stdout is not None
    for line in child.stderr:
        if line.strip() == "cold-done":
            cold = time.perf_counter() - started
            break
    else:
        child.wait()
        raise RuntimeError(f"the child failed: {child.returncode}")
    out, err = child.communicate(timeout=60)
    if child.returncode != 0:
        raise RuntimeError(err)
    cpu = _cpu_of_children() - cpu_before  # the children run one at a time: this one's
    return cold * 1000, json.loads(out.strip().splitlines()[-1])["warm_ms"], cpu * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        env = _environment(cache)
        _run(_FUNCTION, env), _run(_BASELINE, env)  # warm-up: fills the bytecode cache
        function, baseline = [], []
        for _ in range(args.repeats):  # alternate, so drift hits both alike
            function.append(_run(_FUNCTION, env))
            baseline.append(_run(_BASELINE, env))
    cold_ratios = harness.ratios([run[0] for run in function], [run[0] for run in baseline])
    warm_ratios = harness.ratios([run[1] for run in function], [run[1] for run in baseline])
    cpu_ratios = harness.ratios([run[2] for run in function], [run[2] for run in baseline])
    cold_f = statistics.median(run[0] for run in function)
    cold_b = statistics.median(run[0] for run in baseline)
    warm_f = statistics.median(run[1] for run in function)
    warm_b = statistics.median(run[1] for run in baseline)
    cpu_f = statistics.median(run[2] for run in function)
    cpu_b = statistics.median(run[2] for run in baseline)
    figures = [
        harness.Figure(
            BENCH,
            "McpFunction cold start / minimal server on the same SDK",
            harness.Spread.of(cold_ratios),
            "x",
            limit=LIMIT,
            note=f"{cold_f:.0f} ms vs {cold_b:.0f} ms, spawn to the first tools/call answered",
        ),
        harness.Figure(
            BENCH,
            "McpFunction cold start CPU time / minimal server",
            harness.Spread.of(cpu_ratios),
            "x",
            note=f"{cpu_f:.0f} ms vs {cpu_b:.0f} ms of CPU, the whole child",
        ),
        harness.Figure(
            BENCH,
            "McpFunction warm tools/call / minimal server",
            harness.Spread.of(warm_ratios),
            "x",
            note=f"{warm_f:.1f} ms vs {warm_b:.1f} ms",
        ),
    ]
    harness.print_figures("Benchmark 8: the MCP function, cold and warm, against a bare SDK server", figures)
    rest = _rest_submit()
    if rest:
        print(
            f"\n  next to the REST submit (bench/out/cold_start.json, {rest['at']}): cold "
            f"{rest['cold_ms']:.0f} ms, warm {rest['warm_ms']:.1f} ms; McpFunction cold {cold_f:.0f} ms, "
            f"warm tools/call {warm_f:.1f} ms"
        )
    path = harness.save(
        BENCH,
        figures,
        method="spawn -> first tools/call answered (sora_list_actions, no AWS call), dev venv interpreter, "
        "bytecode cached; baseline: MCPServer with one tool of that name behind Mangum, stateless JSON",
        repeats=args.repeats,
        cold_ms={"function": cold_f, "baseline": cold_b},
        warm_ms={"function": warm_f, "baseline": warm_b},
        cpu_ms={"function": cpu_f, "baseline": cpu_b},
        rest_submit=rest,
    )
    print(f"\n  saved {harness.shown(path)}")
    return harness.exit_code(figures)


def _rest_submit() -> dict[str, object] | None:
    """The REST submit's own cold and warm figures from the cold-start benchmark, if it ran."""
    found = harness.load("cold_start")
    submit = (found or {}).get("functions", {}).get("SubmitFunction")
    if not submit:
        return None
    return {
        "at": found["at"],
        "cold_ms": submit["cold_handler_ms"]["median"],
        "warm_ms": submit["warm_handler_ms"]["median"],
    }


if __name__ == "__main__":
    sys.exit(main())
