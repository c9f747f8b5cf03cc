"""sora-relay's MCP server: one definition (server.py) over a backend that reaches the service.

Two backends: the Lambda behind `POST /mcp` calls the use cases in process (in_process.py, served
by lambda_endpoint.py), and `sora-relay mcp` in the CLI speaks the public HTTP API with the
user's key (sora_relay_cli/mcp.py). The definition itself imports neither.
"""
