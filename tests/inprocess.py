"""An in-process transport: the real SDK clients and azure-core pipeline, the sandbox's own request
handling, and no socket between them.

Only the last hop changes. azure-core's RequestsTransport and requests still prepare every request
(headers, Content-Length, body) and read every response; the requests adapter that would open a TLS
connection hands the prepared request to `SandboxApp.precheck`/`handle` instead, exactly as the
HTTPS server's handler does (reconciler/sandbox/server.py), and a dropped connection surfaces as the
same requests ConnectionError a closed socket gives. What it cannot reproduce is what lives in the
socket: TLS, read timeouts, the server's header limits; the tests of those keep real HTTPS (the
`https` marker, see tests/e2e/conftest.py).

`serve_in_process(server)` registers it for the sandbox's URL (reconciler/azure/transports.py), so
anything built for that endpoint, the CLI's `--arm-endpoint URL` included, goes through it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.client import RemoteDisconnected, responses
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3 import HTTPResponse
from urllib3.exceptions import ProtocolError

from reconciler.azure import transports
from reconciler.sandbox import SandboxServer
from reconciler.sandbox.app import Response, SandboxApp


class SandboxAdapter(BaseAdapter):
    """A requests adapter that answers from a SandboxApp instead of a connection."""

    def __init__(self, app: SandboxApp) -> None:
        super().__init__()
        self.app = app
        self._builder = HTTPAdapter()  # its build_response: the same Response a real connection gives

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Mapping[str, str] | None = None) -> requests.Response:
        split = urlsplit(request.url or "")
        target = split.path + (f"?{split.query}" if split.query else "")
        headers = {k.lower(): str(v) for k, v in request.headers.items()}
        headers.setdefault("host", split.netloc)  # http.client adds it on the wire
        method = request.method or "GET"
        answer = self.app.precheck(method, target, headers)
        if answer is None:
            answer = self.app.handle(method, target, headers, _body_bytes(request.body))
        if answer.drop:
            raise requests.ConnectionError(ProtocolError(
                "Connection aborted.", RemoteDisconnected("Remote end closed connection without response")),
                request=request)
        return self._builder.build_response(request, _urllib3_response(method, answer))

    def close(self) -> None:
        self._builder.close()


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    return b"".join(body)  # an iterable body (requests sends it chunked; precheck refuses that first)


def _urllib3_response(method: str, answer: Response) -> HTTPResponse:
    body = b"" if method == "HEAD" else answer.body
    headers = {**answer.headers, "Content-Length": str(len(answer.body))}
    return HTTPResponse(body=io.BytesIO(body), headers=headers, status=answer.status,
                        reason=responses.get(answer.status, ""), preload_content=False, decode_content=False,
                        request_method=method)


def transport_for(app: SandboxApp, url: str) -> RequestsTransport:
    """azure-core's own requests transport, on a session whose adapter for `url` is in-process."""
    session = requests.Session()
    session.trust_env = False  # no proxy can sit on an in-process hop
    session.mount(url.rstrip("/") + "/", SandboxAdapter(app))
    return RequestsTransport(session=session, session_owner=True)


@contextmanager
def serve_in_process(server: SandboxServer) -> Iterator[None]:
    """Every SDK client built for `server.url` while this is open talks to it in process, and the
    CLI's client budget paces FIC calls at the sandbox's rates (its `fic_throttle_scale`)."""
    url, app = server.url, server.app
    transports.register(url, lambda: transport_for(app, url), fic_scale=server.config.fic_throttle_scale)
    try:
        yield
    finally:
        transports.unregister(url)
