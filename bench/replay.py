"""Record the AWS and HTTP calls a handler makes; replay them with plain boto3 and httpx.

This is how the benchmarks give a handler's baseline "the same AWS and HTTP calls": the handler
runs once with a `Recorder` installed, and the baseline replays the recorded list, in order,
with nothing between the calls.

Recorded, at the lowest common level so that every client is seen (boto3's default session,
Powertools' own sessions, any httpx client):
- each boto3 client created (`botocore.session.Session.create_client`): its service and its
  signature version (S3 signs s3v4);
- each AWS call (`BaseClient._make_api_call`): the client, the operation, its parameters, and its
  answer or error code;
- each presigned URL (`generate_presigned_url`, local work but part of what the handler does);
- each httpx client created, and each request sent (`httpx.Client.send`): method, URL, headers,
  body, and for a JSON answer read whole, the answer.

The replay creates each client the first time the list uses it (as the handler did), and sends
each call with the recorded parameters. Values the backend makes up anew (an S3 UploadId, the
provider's task id) differ between the run and its replay, so a value seen in a recorded answer
is replaced, in later parameters, by the value the replay's own answer carried in that place.
The replay counts every call whose outcome (success or error code) differs from the recording:
the figure a benchmark reports as its replay fidelity.

Standard library only at import time: the cold-start children run this file's source under a
bare python3.12 whose path holds nothing but the function, the layer and boto3.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import sys
from typing import Any

_MIN_MAPPED_CHARS = 8  # shorter values are too likely to occur by chance
_SKIPPED_KEYS = frozenset({"ResponseMetadata"})


def _plain(value: Any) -> Any:
    """A JSON-able copy: bytes become {"__b64__": ...}, anything else unknown becomes str."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items() if key not in _SKIPPED_KEYS}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return {"__b64__": base64.b64encode(bytes(value)).decode()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _restore(value: Any, mapping: dict[str, str]) -> Any:
    """Inverse of _plain for parameters, with recorded values replaced by the replay's own."""
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {key: _restore(item, mapping) for key, item in value.items()}
    if isinstance(value, list):
        return [_restore(item, mapping) for item in value]
    if isinstance(value, str) and mapping:
        if value in mapping:
            return mapping[value]
        for old, new in mapping.items():
            if old in value:
                value = value.replace(old, new)
    return value


def _learn(recorded: Any, fresh: Any, mapping: dict[str, str]) -> None:
    """Walk a recorded answer and the replay's answer side by side; map differing strings."""
    if isinstance(recorded, dict) and isinstance(fresh, dict):
        for key, item in recorded.items():
            if key in fresh and key not in _SKIPPED_KEYS:
                _learn(item, fresh[key], mapping)
    elif isinstance(recorded, list) and isinstance(fresh, list):
        for old, new in zip(recorded, fresh, strict=False):
            _learn(old, new, mapping)
    elif (
        isinstance(recorded, str)
        and isinstance(fresh, str)
        and recorded != fresh
        and len(recorded) >= _MIN_MAPPED_CHARS
    ):
        mapping[recorded] = fresh


def _request_body(request: Any) -> bytes:
    try:
        return bytes(request.content)
    except Exception:  # a streaming body that was not read: nothing the benchmarks send
        return b""


class _AfterImport:
    """A meta path finder that runs `then()` once module `name` has been imported (by anyone)."""

    def __init__(self, name: str, then: Any) -> None:
        self.name = name
        self.then = then

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # once; the other finders locate the module as usual
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module
        then = self.then

        def exec_then(module: Any) -> None:
            exec_module(module)
            then()

        spec.loader.exec_module = exec_then  # type: ignore[method-assign]
        return spec


class Recorder:
    """Patches botocore and httpx in this process to record every call; `script()` is the list."""

    def __init__(self) -> None:
        self.clients: list[dict[str, Any]] = []
        self.http_clients = 0
        self.calls: list[dict[str, Any]] = []
        self._client_ids: dict[int, int] = {}
        self._http_ids: dict[int, int] = {}
        self._keep: list[Any] = []  # the clients themselves, so no id() is ever reused
        self._undo: list[tuple[Any, str, Any]] = []

    # -- installing ---------------------------------------------------------------------------

    def install(self) -> Recorder:
        """Patch botocore now, and httpx now or, if it is not imported yet, right after the handler
        imports it: recording must not import httpx into a handler that never does (the status
        function, the stream consumer, the authorizer), or its cold start would carry httpx's."""
        import botocore.client
        import botocore.exceptions
        import botocore.session
        import botocore.signers

        recorder = self
        create_client = botocore.session.Session.create_client
        make_api_call = botocore.client.BaseClient._make_api_call
        presign = botocore.signers.generate_presigned_url
        client_error = botocore.exceptions.ClientError

        def recording_create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = create_client(session, *args, **kwargs)
            recorder._aws_client(client)
            return client

        def recording_api_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            entry: dict[str, Any] = {
                "kind": "aws",
                "client": recorder._aws_client(client),
                "op": operation_name,
                "params": api_params,
            }
            recorder.calls.append(entry)
            try:
                response = make_api_call(client, operation_name, api_params)
            except client_error as error:
                entry["error"] = error.response.get("Error", {}).get("Code", "?")
                raise
            entry["response"] = response
            return response

        def recording_presign(
            client: Any,
            ClientMethod: str,
            Params: dict[str, Any] | None = None,
            ExpiresIn: int = 3600,
            HttpMethod: str | None = None,
        ) -> str:
            recorder.calls.append(
                {
                    "kind": "presign",
                    "client": recorder._aws_client(client),
                    "method": ClientMethod,
                    "params": Params,
                    "expires": ExpiresIn,
                }
            )
            return presign(client, ClientMethod, Params=Params, ExpiresIn=ExpiresIn, HttpMethod=HttpMethod)

        self._patch(
            (botocore.session.Session, "create_client", recording_create_client),
            (botocore.client.BaseClient, "_make_api_call", recording_api_call),
            (botocore.signers, "generate_presigned_url", recording_presign),
        )
        if "httpx" in sys.modules:
            self._install_httpx()
        else:
            sys.meta_path.insert(0, _AfterImport("httpx", self._install_httpx))
        return self

    def _install_httpx(self) -> None:
        import httpx

        recorder = self
        http_init = httpx.Client.__init__
        send = httpx.Client.send

        def recording_http_init(client: Any, *args: Any, **kwargs: Any) -> None:
            http_init(client, *args, **kwargs)
            recorder._http_client(client)

        def recording_send(client: Any, request: Any, **kwargs: Any) -> Any:
            entry: dict[str, Any] = {
                "kind": "http",
                "client": recorder._http_client(client),
                "method": request.method,
                "url": str(request.url),
                "headers": [
                    (name, value)
                    for name, value in request.headers.items()
                    if name.lower() not in ("content-length", "transfer-encoding")
                ],
                "content": _request_body(request),
            }
            recorder.calls.append(entry)
            response = send(client, request, **kwargs)
            entry["status"] = response.status_code
            if not kwargs.get("stream") and "json" in response.headers.get("content-type", ""):
                with contextlib.suppress(ValueError):
                    entry["response"] = response.json()
            return response

        self._patch(
            (httpx.Client, "__init__", recording_http_init),
            (httpx.Client, "send", recording_send),
        )

    def _patch(self, *replacements: tuple[Any, str, Any]) -> None:
        for owner, name, replacement in replacements:
            self._undo.append((owner, name, getattr(owner, name)))
            setattr(owner, name, replacement)

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()
        sys.meta_path[:] = [
            finder
            for finder in sys.meta_path
            if not (isinstance(finder, _AfterImport) and finder.then == self._install_httpx)
        ]

    def _aws_client(self, client: Any) -> int:
        index = self._client_ids.get(id(client))
        if index is None:
            index = self._client_ids[id(client)] = len(self.clients)
            self._keep.append(client)
            self.clients.append(
                {
                    "service": client.meta.service_model.service_name,
                    "signature_version": client.meta.config.signature_version,
                }
            )
        return index

    def _http_client(self, client: Any) -> int:
        index = self._http_ids.get(id(client))
        if index is None:
            index = self._http_ids[id(client)] = self.http_clients
            self._keep.append(client)
            self.http_clients += 1
        return index

    # -- reading ------------------------------------------------------------------------------

    def mark(self) -> int:
        """How many calls so far (to split the list between events)."""
        return len(self.calls)

    def script(self, start: int = 0, end: int | None = None) -> dict[str, Any]:
        """The calls from `start` to `end`, with every client, JSON-able."""
        return {
            "clients": self.clients,
            "http_clients": self.http_clients,
            "calls": [_plain(call) for call in self.calls[start:end]],
        }

    @staticmethod
    def summary(calls: list[dict[str, Any]]) -> list[str]:
        """One short line per call, e.g. `dynamodb.PutItem` or `http POST /sora/videos`."""
        lines = []
        for call in calls:
            if call["kind"] == "aws":
                lines.append(f"aws {call['op']}" + (f" ({call['error']})" if "error" in call else ""))
            elif call["kind"] == "presign":
                lines.append(f"presign {call['method']}")
            else:
                lines.append(f"http {call['method']} {call['url'].split('?')[0]}")
        return lines


class Replayer:
    """Plain boto3 clients and httpx clients that send a recorded list of calls again.

    Clients are created on first use and kept, as a warm Lambda keeps them.
    """

    def __init__(self, clients: list[dict[str, Any]], http_clients: int) -> None:
        import boto3
        import httpx
        from botocore.config import Config
        from botocore.exceptions import ClientError

        self._boto3 = boto3
        self._httpx = httpx
        self._config = Config
        self._client_error = ClientError
        self._specs = clients
        self._aws: dict[int, Any] = {}
        self._http: dict[int, Any] = {}
        self.mismatches: list[str] = []
        del http_clients  # created on first use like the AWS clients; the count is in the script

    def aws(self, index: int) -> Any:
        client = self._aws.get(index)
        if client is None:
            spec = self._specs[index]
            config = None
            if spec.get("signature_version") == "s3v4":
                config = self._config(signature_version="s3v4")
            client = self._aws[index] = self._boto3.client(spec["service"], config=config)
        return client

    def http(self, index: int) -> Any:
        client = self._http.get(index)
        if client is None:
            client = self._http[index] = self._httpx.Client(follow_redirects=False)
        return client

    def run(self, calls: list[dict[str, Any]]) -> None:
        mapping: dict[str, str] = {}
        for call in calls:
            kind = call["kind"]
            if kind == "aws":
                client = self.aws(call["client"])
                params = _restore(call["params"], mapping)
                try:
                    response = client._make_api_call(call["op"], params)
                except self._client_error as error:
                    code = error.response.get("Error", {}).get("Code", "?")
                    if code != call.get("error"):
                        self.mismatches.append(f"{call['op']}: {code}, recorded {call.get('error', 'ok')}")
                    continue
                if "error" in call:
                    self.mismatches.append(f"{call['op']}: ok, recorded {call['error']}")
                if "response" in call:
                    _learn(call["response"], response, mapping)
            elif kind == "presign":
                self.aws(call["client"]).generate_presigned_url(
                    call["method"], Params=_restore(call["params"], mapping), ExpiresIn=call["expires"]
                )
            else:
                content = _restore(call["content"], mapping)
                response = self.http(call["client"]).request(
                    call["method"],
                    _restore(call["url"], mapping),
                    headers=[(name, _restore(value, mapping)) for name, value in call["headers"]],
                    content=content or None,
                )
                if response.status_code != call.get("status"):
                    self.mismatches.append(
                        f"http {call['method']}: {response.status_code}, recorded {call.get('status')}"
                    )
                if "response" in call:
                    with contextlib.suppress(ValueError):
                        _learn(call["response"], response.json(), mapping)


def load_script(path: str) -> dict[str, Any]:
    with open(path) as handle:
        return json.load(handle)


# Our own code, left out of what the libraries-alone child imports.
OURS = frozenset({"app", "sora_relay"})


def imported_since(present: set[str]) -> list[str]:
    """The modules imported since `present` was taken, in import order, ours left out."""
    return [name for name in list(sys.modules) if name not in present and name.partition(".")[0] not in OURS]


def import_all(names: list[str]) -> list[str]:
    """Import `names` in order (the libraries a handler imported); the ones that cannot be."""
    unimportable = []
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # e.g. a name a package put into sys.modules itself
            unimportable.append(name)
    return unimportable
