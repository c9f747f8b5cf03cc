"""Attack 2b: one tenant's webhook riding another host's kept-alive TLS connection.

The outbound client is shared by every tenant's webhooks and video fetches. Two names that
resolve to the same address must still get separate connections, each verified for its own
name: a connection whose certificate was checked for a.test must never carry a request for
b.test. A local HTTPS server on 127.0.0.1 presents a certificate valid only for a.test.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sora_relay.adapters import outbound_http
from sora_relay.domain.errors import UnsafeUrl
from sora_relay.runtime.container import Container, use


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    signer: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if issuer is None:  # the CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA and a leaf certificate valid for a.test only."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("sora-relay test CA", ca_key, None, ca_key)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate("a.test", leaf_key, ca.subject, ca_key)
    pki = Pki(folder / "ca.pem", folder / "leaf.pem", folder / "leaf.key")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pki


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client pools the connection

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1  # type: ignore[attr-defined]  # one handler per connection

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client refusing our certificate for b.test is the point, not a failure


@pytest.fixture
def https_server(pki: Pki) -> Iterator[_Server]:
    """HTTPS on 127.0.0.1 (an ephemeral port) with the a.test certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    server = _Server(("127.0.0.1", 0), _Handler)
    # The handshake happens in each connection's thread, not in the accepting one.
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def shared_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """a.test and b.test both resolve to 127.0.0.1."""
    table = {"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]}

    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"{host} does not resolve")
        return table[host]

    monkeypatch.setattr(outbound_http, "resolve_host", resolve)


@pytest.fixture
def outbound(monkeypatch: pytest.MonkeyPatch, pki: Pki) -> Iterator[outbound_http.SafeHttp]:
    """The service's own shared outbound client, trusting the test CA and allowing 127.0.0.1."""
    monkeypatch.setenv("TASKS_TABLE_NAME", "tasks")
    monkeypatch.setenv("VIDEOS_BUCKET_NAME", "videos")
    monkeypatch.setenv("ALLOW_LOOPBACK_URLS", "true")
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))
    with use(Container()) as built:
        yield built.outbound_http


def test_a_connection_verified_for_one_host_is_not_reused_for_another_on_the_same_address(
    https_server, shared_address, outbound
):
    port = https_server.server_address[1]
    for _ in range(2):  # a.test resolves to 127.0.0.1 only in the test's DNS: the pin connected there
        with outbound.stream("GET", f"https://a.test:{port}/", field="callback_url") as response:
            assert response.status_code == 200 and response.read() == b"ok"
    assert https_server.connections == 1  # the same host reuses its kept-alive connection

    # b.test needs its own connection, verified for b.test: the certificate is a.test's only (a
    # reused connection would not be verified again, so the failure shows a new handshake)
    with (
        pytest.raises(httpx.ConnectError, match="certificate verify failed"),
        outbound.stream("GET", f"https://b.test:{port}/", field="callback_url"),
    ):
        pass


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """Every socket the client tries to open, refused (so a test never reaches the network)."""
    attempts: list[tuple[object, ...]] = []

    def refuse(*args: object, **kwargs: object) -> socket.socket:
        attempts.append(args)
        raise ConnectionRefusedError("no connections in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_a_name_that_rebinds_to_the_metadata_service_after_the_check_is_not_connected(
    monkeypatch, no_connections
):
    # Public when SafeHttp checks the URL, the metadata service when the connection opens
    answers = iter([["93.184.215.14"], ["169.254.169.254"]])
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    monkeypatch.setattr(outbound_http, "resolve_host", rebinding)
    http = outbound_http.SafeHttp(outbound_http.pinned_client(timeout=5, allow_loopback=False))
    with (
        pytest.raises(UnsafeUrl, match="callback_url was refused at connect time") as refused,
        http.stream("POST", "https://rebind.example.com/hook", field="callback_url", content=b"{}"),
    ):
        pass
    assert refused.value.param == "callback_url"
    assert lookups == ["rebind.example.com", "rebind.example.com"]  # checked, then checked again
    assert no_connections == []  # nothing was connected


def test_the_pinned_client_checks_the_address_on_its_own(monkeypatch, no_connections):
    monkeypatch.setattr(outbound_http, "resolve_host", lambda host, port: ["10.0.0.7"])
    with (
        outbound_http.pinned_client(timeout=5, allow_loopback=False) as client,
        pytest.raises(UnsafeUrl, match="resolves to a private"),
    ):
        client.get("https://internal.example.com/")
    assert no_connections == []


def test_the_pinned_client_connects_to_the_checked_address(monkeypatch, no_connections):
    monkeypatch.setattr(outbound_http, "resolve_host", lambda host, port: ["93.184.215.14"])
    with (
        outbound_http.pinned_client(timeout=5, allow_loopback=False) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get("https://cdn.example.com:8443/")
    assert [args[0] for args in no_connections] == [("93.184.215.14", 8443)]
