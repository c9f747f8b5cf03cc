"""The MCP function's cold start against a minimal server on the same SDK (target: at most 1.3x).

    .venv/bin/python -m bench.mcp_cold_start [--repeats N]

Each child is a fresh interpreter timed from spawn to the answer of its first `tools/call`
(`sora_list_actions`, which reaches no AWS service), then a second, warm call timed inside it:
- the function: `functions/mcp/app.py`'s handler with an API Gateway event (Mangum, a fresh
  stateless session manager, the server built on first use with the catalogue and our 14 tools);
- the baseline: an `MCPServer` with one tool of that name, served the same way (Mangum over a
  fresh stateless session manager), so the ratio is what sora-relay adds to the SDK's own cost.
The dev venv's interpreter runs both, bytecode cached (a warm-up round is discarded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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


def _run(script: str, env: dict[str, str]) -> tuple[float, float]:
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
    return cold * 1000, json.loads(out.strip().splitlines()[-1])["warm_ms"]


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
    cold_f = statistics.median(cold for cold, _ in function)
    cold_b = statistics.median(cold for cold, _ in baseline)
    warm_f = statistics.median(warm for _, warm in function)
    warm_b = statistics.median(warm for _, warm in baseline)
    ratio = cold_f / cold_b
    print(f"MCP cold start (spawn to first tools/call answered), median of {args.repeats}:")
    print(f"  McpFunction  {cold_f:7.0f} ms   warm tools/call {warm_f:6.1f} ms")
    print(f"  baseline     {cold_b:7.0f} ms   warm tools/call {warm_b:6.1f} ms")
    print(f"  ratio        {ratio:7.2f}     (target <= 1.3) {'OK' if ratio <= 1.3 else 'OVER'}")
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
