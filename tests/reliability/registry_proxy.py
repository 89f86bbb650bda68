"""A loopback HTTP proxy in front of a lab registry that answers chosen requests with an error.

The image is named for the proxy (``127.0.0.1:PORT/...`` for buildah, ``localhost:PORT/...``
for the docker CLI through podman, which pushes from its own process), so every request of a
push goes through it. A :class:`Fault` answers the first ``times`` requests that match it
(method and path) with its status and body instead of forwarding them; everything else is
forwarded unchanged, ``Host`` included, so the registry's ``Location`` headers point back at
the proxy. Every request is recorded with the status the client got.

Bodies are buffered whole (the lab's images are a few megabytes); a chunked request body
(how Go clients send blob chunks) is decoded and forwarded with a length.
"""

from __future__ import annotations

import http.client
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from .support import serving

#: Hop-by-hop headers a proxy must not forward (RFC 9110 7.6.1), and the length it recomputes.
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                         "te", "trailer", "upgrade", "content-length"})

#: What an overloaded load balancer in front of a registry sends (nginx's page, not JSON).
UNAVAILABLE_BODY = (b"<html><head><title>503 Service Temporarily Unavailable</title></head>"
                    b"<body><center><h1>503 Service Temporarily Unavailable</h1></center>"
                    b"<hr><center>nginx</center></body></html>\n")
#: Harbor's answer to a push by an account without the push permission.
DENIED_BODY = (b'{"errors":[{"code":"DENIED","message":"requested access to the resource is '
               b'denied"}]}')

#: Requests that start a blob upload, and those that put a manifest.
BLOB_UPLOAD = re.compile(r"/v2/.+/blobs/uploads/\Z")
MANIFEST_PUT = re.compile(r"/v2/.+/manifests/[^/]+\Z")


@dataclass
class Fault:
    """Answer the first ``times`` requests with ``method`` whose path (without the query)
    matches ``path`` with ``status`` and ``body``."""

    method: str
    path: re.Pattern[str]
    status: int
    body: bytes = UNAVAILABLE_BODY
    content_type: str = "text/html"
    times: int = 1
    fired: int = 0

    def take(self, method: str, path: str) -> bool:
        if self.fired >= self.times or method != self.method or not self.path.search(path):
            return False
        self.fired += 1
        return True


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    status: int
    injected: bool
    query: str = ""


@dataclass
class RegistryProxy:
    upstream: str
    faults: list[Fault]
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def host(self, name: str = "127.0.0.1") -> str:
        """``name:PORT``: pass ``"localhost"`` for images the docker CLI pushes via podman."""
        return f"{name}:{self.port}"

    @property
    def injected(self) -> list[Seen]:
        return [s for s in self.seen if s.injected]

    def uploads(self) -> list[Seen]:
        """Blob uploads started and manifests put (what a push attempt does)."""
        return [s for s in self.seen
                if (s.method == "POST" and BLOB_UPLOAD.search(s.path))
                or (s.method == "PUT" and MANIFEST_PUT.search(s.path))]

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            return next((f for f in self.faults if f.take(method, path)), None)

    def _record(self, seen: Seen) -> None:
        with self.lock:
            self.seen.append(seen)


@contextmanager
def registry_proxy(upstream: str, faults: list[Fault]) -> Iterator[RegistryProxy]:
    """Run a :class:`RegistryProxy` for ``upstream`` (``host:port``, plain HTTP)."""
    proxy = RegistryProxy(upstream, faults)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _handle(self) -> None:
            body = self._body()
            path, _, query = self.path.partition("?")
            fault = proxy._fault_for(self.command, path)
            if fault is not None:
                proxy._record(Seen(self.command, path, fault.status, True, query))
                self.send_response(fault.status)
                self.send_header("Content-Type", fault.content_type)
                self.send_header("Content-Length", str(len(fault.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(fault.body)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            connection = http.client.HTTPConnection(proxy.upstream, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
            finally:
                connection.close()
            proxy._record(Seen(self.command, path, answer.status, False, query))
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            length = answer.getheader("Content-Length")
            if self.command == "HEAD" and length is not None:
                self.send_header("Content-Length", length)
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: object) -> None:
            return None

    with serving(Handler, "registry-proxy") as port:
        proxy.port = port
        yield proxy
