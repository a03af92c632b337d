"""Hardening of the sandbox's HTTP server (issue 9 item 8): authentication before the body is read,
size, media-type and nesting limits, no tracebacks to clients, private files, signed tokens."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.sandbox import SandboxServer, routes, tokens
from reconciler.sandbox.app import MAX_BODY_BYTES, MAX_JSON_DEPTH

from .conftest import RG, SUB, clients, quiet_config, raw

MSI_LIST = f"/subscriptions/{SUB}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version=2024-11-30"
IDENTITY = (f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
            "big?api-version=2024-11-30")


def _forged_admin_token(srv: SandboxServer) -> str:
    """What anyone could build before: alg none, the tenant id (from WWW-Authenticate) and the admin's oid."""
    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")
    claims = {"aud": "https://management.azure.com/", "oid": srv.admin_object_id, "tid": srv.tenant_id,
              "exp": 4102444800}
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def _send_head(srv: SandboxServer, head: str, body: bytes = b"", timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
    """Send a request's head (and maybe part of a body) on a raw TLS socket; return the answer's
    status and JSON body. The socket timeout makes a server that waits for the body fail the test."""
    ctx = ssl.create_default_context(cafile=srv.ca_cert_path)
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as plain, \
            ctx.wrap_socket(plain, server_hostname="127.0.0.1") as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        lines = header.decode().split("\r\n")
        length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(lines[0].split()[1]), json.loads(rest[:length])


def _head(method: str, path: str, length: int, token: str | None, content_type: str = "application/json") -> str:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n")


def test_unauthenticated_huge_put_is_refused_before_its_body_is_read(srv: SandboxServer) -> None:
    # 500 MB announced, not a byte sent: the answer must come from the headers alone.
    status, body = _send_head(srv, _head("PUT", IDENTITY, 500 * 1024 * 1024, None))
    assert (status, body["error"]["code"]) == (401, "AuthenticationFailed")


def test_refused_small_bodies_are_drained_so_the_client_reads_the_whole_answer(srv: SandboxServer) -> None:
    # A client that sends its whole (small) body before reading must get the complete 401, and the
    # connection stays usable (keep-alive), as az's Graph calls need.
    payload = json.dumps({"ids": ["x" * 200_000]}).encode()
    ctx = ssl.create_default_context(cafile=srv.ca_cert_path)
    conn = http.client.HTTPSConnection(srv.host, srv.port, context=ctx, timeout=10)
    try:
        for _ in range(2):
            conn.request("POST", "/v1.0/directoryObjects/getByIds", body=payload,
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            body = json.loads(resp.read())
            # Graph's own 401 (GRAPH-FACTS): the path is served by the Graph subset.
            assert (resp.status, body["error"]["code"]) == (401, "InvalidAuthenticationToken")
            assert body["error"]["message"] == "Access token is empty."
    finally:
        conn.close()


def test_oversized_body_is_413_in_arms_envelope_without_reading_it(srv: SandboxServer) -> None:
    status, body = _send_head(srv, _head("PUT", IDENTITY, MAX_BODY_BYTES + 1, srv.admin_token()))
    assert status == 413
    assert body["error"]["code"] == "RequestEntityTooLarge"
    assert str(MAX_BODY_BYTES) in body["error"]["message"]


def test_body_at_the_limit_is_read_and_handled(srv: SandboxServer) -> None:
    payload = json.dumps({"location": "westus", "tags": {"pad": "x" * 1000}}).encode()
    payload += b" " * (MAX_BODY_BYTES - len(payload))
    status, body = _send_head(srv, _head("PUT", IDENTITY, len(payload), srv.admin_token()), payload)
    assert status == 201 and body["name"] == "big"


def test_non_json_body_is_415(srv: SandboxServer) -> None:
    status, body = _send_head(srv, _head("PUT", IDENTITY, 2, srv.admin_token(), "text/plain"), b"{}")
    assert (status, body["error"]["code"]) == (415, "UnsupportedMediaType")
    assert "text/plain" in body["error"]["message"]
    # JSON with a charset parameter is JSON
    ok = raw(srv, "PUT", IDENTITY, {"location": "westus"}, headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status == 201


def test_chunked_bodies_are_refused_with_411(srv: SandboxServer) -> None:
    head = (f"PUT {IDENTITY} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {srv.admin_token()}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    status, body = _send_head(srv, head)
    assert (status, body["error"]["code"]) == (411, "LengthRequired")


@pytest.mark.parametrize(("request_line", "status", "code"), [
    ("GET / HTTP/one.one\r\n\r\n", 400, "BadRequest"),
    (f"BREW {MSI_LIST} HTTP/1.1\r\nHost: x\r\n\r\n", 501, "NotImplemented"),
])
def test_http_level_refusals_use_arms_envelope(srv: SandboxServer, request_line: str, status: int,
                                              code: str) -> None:
    got, body = _send_head(srv, request_line)
    assert (got, body["error"]["code"]) == (status, code)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deeply_nested_json_is_400_not_a_crash(srv: SandboxServer, depth: int) -> None:
    payload = ('{"location": "westus", "tags": ' + "[" * depth + "]" * depth + "}").encode()
    status, body = _send_head(srv, _head("PUT", IDENTITY, len(payload), srv.admin_token()), payload)
    assert (status, body["error"]["code"]) == (400, "InvalidRequestContent")
    assert "nests deeper" in body["error"]["message"]


def test_internal_errors_answer_500_without_traceback_or_paths(
        srv: SandboxServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(method: str, path: str) -> Any:
        raise RuntimeError(f"boom in {Path(__file__).resolve()}")
    monkeypatch.setattr(routes, "match", broken)
    with caplog.at_level(logging.ERROR, logger="reconciler.sandbox.app"):
        r = raw(srv, "GET", MSI_LIST)
    assert r.status == 500
    assert r.body["error"]["code"] == "InternalServerError"
    assert set(r.body["error"]) == {"code", "message"}
    text = json.dumps(r.body)
    assert "Traceback" not in text and "boom" not in text and str(Path(__file__).parent) not in text
    assert r.headers["x-ms-request-id"] in r.body["error"]["message"]
    logged = "\n".join(rec.getMessage() + (rec.exc_text or "") for rec in caplog.records)
    assert "boom" in logged and "Traceback" in logged and r.headers["x-ms-request-id"] in logged


def test_forged_unsigned_admin_token_is_refused(srv: SandboxServer) -> None:
    r = raw(srv, "GET", MSI_LIST, token=_forged_admin_token(srv))
    assert (r.status, r.body["error"]["code"]) == (401, "InvalidAuthenticationToken")
    assert "www-authenticate" in r.headers


def test_token_signed_with_another_key_is_refused(srv: SandboxServer) -> None:
    other = tokens.issue(srv.admin_object_id, srv.tenant_id, key=b"k" * 32)
    r = raw(srv, "GET", MSI_LIST, token=other)
    assert (r.status, r.body["error"]["code"]) == (401, "InvalidAuthenticationToken")
    tampered = srv.token_for(srv.admin_object_id).split(".")
    tampered[2] = tampered[2][:-2] + ("AA" if tampered[2][-2:] != "AA" else "BB")
    assert raw(srv, "GET", MSI_LIST, token=".".join(tampered)).status == 401
    assert raw(srv, "GET", MSI_LIST).status == 200  # the sandbox's own signed token


@pytest.fixture
def insecure() -> Iterator[SandboxServer]:
    with SandboxServer(config=quiet_config(), insecure_unsigned_tokens=True).start() as server:
        server.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westus")])
        yield server


def test_unsigned_tokens_pass_only_behind_the_explicit_flag(insecure: SandboxServer) -> None:
    assert raw(insecure, "GET", MSI_LIST, token=_forged_admin_token(insecure)).status == 200
    assert raw(insecure, "GET", MSI_LIST).status == 200  # signed tokens still work


def test_signing_key_is_per_database_and_survives_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "s.db")
    with SandboxServer(db_path=db, config=quiet_config()).start() as first:
        first.seed(subscriptions=[SUB], resource_groups=[(SUB, RG, "westus")])
        token = first.admin_token()
    with SandboxServer(db_path=db, config=quiet_config()).start() as again:
        assert clients(again, token=token).res.resource_groups.get(RG).name == RG
    with SandboxServer(db_path=str(tmp_path / "other.db"), config=quiet_config()).start() as other:
        assert raw(other, "GET", "/subscriptions?api-version=2022-12-01", token=token).status == 401


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_and_key_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with SandboxServer(db_path=str(db), config=quiet_config()).start() as srv:
        srv.seed(subscriptions=[SUB])
        assert _mode(db) == 0o600
        for companion in (Path(f"{db}-wal"), Path(f"{db}-shm")):
            if companion.exists():
                assert _mode(companion) == 0o600
        key = Path(f"{db}.certs") / "server.key"
        assert _mode(key) == 0o600
        assert _mode(key.parent) == 0o700


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    with SandboxServer(db_path=str(db), config=quiet_config()).start():
        assert _mode(db) == 0o600


def test_responses_are_not_held_back_by_nagle(srv: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """http.server writes a response's head and body separately: without TCP_NODELAY the body waits
    for the client's delayed ACK of the head (40 ms a request on Linux). Every accepted connection
    must have it set before TLS starts."""
    httpd = srv._httpd
    assert httpd is not None
    seen: list[int] = []
    wrap = httpd.tls.wrap_socket

    def recording_wrap(sock: socket.socket, **kwargs: Any) -> ssl.SSLSocket:
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return wrap(sock, **kwargs)

    monkeypatch.setattr(httpd.tls, "wrap_socket", recording_wrap)
    assert raw(srv, "GET", MSI_LIST).status == 200
    assert seen and all(seen)
