"""SandboxServer: the sandbox on a loopback HTTPS port, served from a daemon thread.

The TLS handshake runs in each connection's worker thread (not in the accept loop), so one slow or
broken client cannot stall the others.
"""

from __future__ import annotations

import contextlib
import http
import http.server
import json
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from . import certs, identity_endpoint, tokens
from .app import MAX_BODY_BYTES, SandboxApp, seed
from .backend import Backend
from .config import SandboxConfig
from .store import Store


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as azure-core's requests session expects
    server: _HttpsServer
    timeout = 60

    def _serve(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        # Authenticate and check size and media type from the headers alone: an unauthenticated or
        # oversized body is never read (the connection is closed instead of drained).
        response = self.server.app.precheck(self.command, self.path, headers)
        if response is not None:
            length = _declared_length(headers)
            if length is not None and length <= MAX_BODY_BYTES:
                # Bounded: drain it in small reads so the client, still sending, is not reset
                # before it has read the refusal.
                while length > 0:
                    chunk = self.rfile.read(min(length, 65536))
                    if not chunk:
                        break
                    length -= len(chunk)
            else:
                self.close_connection = True
                response.headers["Connection"] = "close"
        else:
            length = int(headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            response = self.server.app.handle(self.command, self.path, headers, body)
        if response.drop:
            self.close_connection = True
            # Shut the socket down without a byte of response: the client sees a dropped connection.
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_POST = _serve

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (malformed request line, unknown method, oversized headers) in
        ARM's JSON envelope instead of its HTML page."""
        status = http.HTTPStatus(code)
        body = json.dumps({"error": {"code": status.phrase.replace(" ", "").replace("-", ""),
                                     "message": message or status.description or status.phrase}}).encode()
        self.close_connection = True
        # A request line too broken to parse leaves http.server at HTTP/0.9, which sends no status
        # line or headers; the sandbox speaks HTTP/1.1 only.
        self.request_version = "HTTP/1.1"
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and serve print their own
        return


def _declared_length(headers: dict[str, str]) -> int | None:
    """The Content-Length of a request with a plain (not chunked) body, if it is a sane number."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return None
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        return None
    return length if length >= 0 else None


class _HttpsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    app: SandboxApp
    tls: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        # http.server sends the headers and the body in two writes: with Nagle's algorithm the
        # body waits for the client's delayed ACK of the headers, 40 ms on every response.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls_socket = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that cannot complete TLS gets nothing, like any HTTPS server
        try:
            super().finish_request(tls_socket, client_address)
        finally:
            # socketserver closes `request`, which wrap_socket detached: the TLS socket is ours.
            self.shutdown_request(tls_socket)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients hanging up mid-request are normal (retries, dropped-connection faults)


class SandboxServer:
    """An ARM look-alike on https://host:port. See docs/sandbox.md."""

    def __init__(self, db_path: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 config: SandboxConfig | None = None, *, insecure_unsigned_tokens: bool = False):
        self.db_path = db_path
        self.insecure_unsigned_tokens = insecure_unsigned_tokens
        self.host = host
        self.port = port
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if db_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="reconciler-sandbox-")
            cert_dir = Path(self._tmp.name)
        else:
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            cert_dir = Path(f"{db_path}.certs")
        self._cert_dir = cert_dir
        self.store = Store(db_path)
        self.backend = Backend(self.store, config or SandboxConfig())
        self._httpd: _HttpsServer | None = None
        self._thread: threading.Thread | None = None
        self._certs: certs.CertFiles | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> SandboxServer:
        if self._httpd is not None:
            return self
        self._certs = certs.ensure(self._cert_dir, self.host)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self._certs.server_cert, self._certs.server_key)
        httpd = _HttpsServer((self.host, self.port), _Handler, bind_and_activate=True)
        httpd.tls = tls
        httpd.app = SandboxApp(self.backend, allow_unsigned_tokens=self.insecure_unsigned_tokens)
        self.port = httpd.server_address[1]
        httpd.app.default_base_url = self.url
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"sandbox-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def serve_forever(self) -> None:
        """Block until interrupted (for `reconciler sandbox serve`)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- addresses and credentials ---------------------------------------------------------------
    @property
    def url(self) -> str:
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"https://{host}:{self.port}"

    @property
    def app(self) -> SandboxApp:
        """The request handling behind the socket (bytes in, Response out) of a started server: what
        an in-process client calls instead of connecting (tests/inprocess.py)."""
        if self._httpd is None:
            raise RuntimeError("the sandbox is not started")
        return self._httpd.app

    @property
    def ca_cert_path(self) -> str:
        if self._certs is None:
            self._certs = certs.ensure(self._cert_dir, self.host)
        return str(self._certs.ca_cert)

    @property
    def tenant_id(self) -> str:
        return self.backend.directory.tenant_id

    @property
    def admin_object_id(self) -> str:
        return self.backend.directory.admin_object_id

    def admin_token(self) -> str:
        return self.token_for(self.admin_object_id)

    def token_for(self, object_id: str, audience: str = tokens.AUDIENCES[0]) -> str:
        """A token signed with this database's key (what the sandbox's own token endpoints issue)."""
        principal = self.backend.directory.get(object_id)
        return tokens.issue(object_id.lower(), self.tenant_id, principal.app_id if principal else "",
                            key=tokens.signing_key(self.store), audience=audience)

    @property
    def identity_header(self) -> str:
        """The secret the managed-identity token endpoints require in X-IDENTITY-HEADER."""
        return identity_endpoint.secret(self.store)

    @property
    def identity_endpoint(self) -> str:
        return self.url + identity_endpoint.APP_SERVICE_PATH

    # --- state -----------------------------------------------------------------------------------
    def seed(self, subscriptions: Iterable[str] = (), resource_groups: Iterable[tuple[str, str, str]] = (),
             principals: Iterable[tuple[str, str, str]] = (),
             group_members: Iterable[tuple[str, str]] = ()) -> None:
        """Idempotent. `group_members` are (group object id, member object id) pairs, after principals."""
        seed(self.backend, subscriptions, resource_groups, principals, group_members)

    def add_principal(self, object_id: str, type: str, display_name: str, member_of: Iterable[str] = ()) -> None:
        """Add (or update) a directory principal, optionally as a direct member of the groups `member_of`."""
        self.backend.directory.add(object_id, type, display_name)
        for group_id in member_of:
            self.backend.directory.add_member(group_id, object_id)

    def add_group_member(self, group_id: str, member_id: str) -> None:
        """Make a user, service principal or group a direct member of a group (membership is transitive)."""
        self.backend.directory.add_member(group_id, member_id)

    def remove_group_member(self, group_id: str, member_id: str) -> bool:
        return self.backend.directory.remove_member(group_id, member_id)

    @property
    def config(self) -> SandboxConfig:
        return self.backend.config

    def configure(self, **changes: Any) -> SandboxConfig:
        self.backend.config = self.backend.config.replace(**changes)
        return self.backend.config

    def inject_fault(self, kind: str, operation: str = "*", count: int = 1) -> None:
        """Make the next `count` requests for `operation` (an operationId, or "*") fail with `kind`."""
        self.backend.faults.inject(kind, operation, count)

    def reset(self) -> None:
        self.backend.reset()

    def request_counts(self) -> dict[str, int]:
        return self.backend.counts()
