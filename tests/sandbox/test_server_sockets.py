"""The sandbox closes each connection's TLS socket itself, instead of leaving it to the garbage
collector (a ResourceWarning, which the suite's filterwarnings turn into failures)."""

from __future__ import annotations

import gc
import socket
import ssl
import threading
import time
import warnings

from reconciler.sandbox import SandboxServer


def _request(server: SandboxServer) -> bytes:
    context = ssl.create_default_context(cafile=server.ca_cert_path)
    with socket.create_connection(("127.0.0.1", server.port)) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"GET /subscriptions?api-version=2022-12-01 HTTP/1.1\r\nHost: sandbox\r\n"
                    b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
        return answer


def _handlers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "process_request_thread" in t.name}


def test_connections_are_closed_by_the_server_not_by_the_garbage_collector() -> None:
    earlier = _handlers()  # other tests' servers may still serve keep-alive connections
    with SandboxServer() as server, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(3):
            assert _request(server).startswith(b"HTTP/1.1 401")  # no token: refused, then closed
        deadline = time.monotonic() + 10
        while _handlers() - earlier and time.monotonic() < deadline:  # each handler ends after its reply
            time.sleep(0.01)
        assert not _handlers() - earlier
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
