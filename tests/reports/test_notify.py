from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from careen.events import RecordingObserver
from careen.reports.notify import redacted_url, send_webhook, send_webhook_async
from tests.reports.sample import sample_result

SECRET_PATH = "/services/T000/B000/s3cr3tt0ken"


class Receiver:
    def __init__(self, status: int) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.content_types: list[str] = []


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[tuple[Receiver, str]]:
    state = Receiver(getattr(request, "param", 200))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.bodies.append(json.loads(self.rfile.read(length)))
            state.content_types.append(self.headers.get("Content-Type", ""))
            self.send_response(state.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # shutdown() waits for serve_forever to look again: every 10 ms, not every 0.5 s.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}"
    finally:
        server.shutdown()
        server.server_close()


def test_posts_slack_blocks_and_run_summary(receiver: tuple[Receiver, str]) -> None:
    """Slack's Block Kit: a header, the counts, the top needs-attention items with their next
    steps (the rest counted), a context line; ``text`` the one-line fallback."""
    state, url = receiver
    observer = RecordingObserver()
    assert send_webhook(url, sample_result(), observer, title="Nightly") is True
    (body,) = state.bodies
    assert state.content_types == ["application/json"]
    assert body["text"] == ("Nightly run-20171208-020001-abcd: needs attention — 1 fixed, "
                            "2 still vulnerable, 1 failed, 1 unverified, 1 skipped")
    blocks = body["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]
    assert blocks[0]["text"] == {"type": "plain_text", "text": "Nightly: needs attention"}
    assert "6 need attention" in blocks[1]["text"]["text"]
    assert "medium &gt;= 3 or high &gt; 0" in blocks[1]["text"]["text"]
    items = blocks[2]["text"]["text"].splitlines()
    assert len(items) == 6 and items[-1] == "…and 1 more in the report"
    assert items[0].startswith("• *unreadable list line* `vulnerable.list:7`: not an image")
    assert "→ _fix the line in vulnerable.list" in items[0]
    # Slack's markup characters in scanner text are Slack's entities: no '<' reaches it.
    assert all("<" not in item and "&lt;script&gt;" in item for item in items[:1])
    assert "<" not in json.dumps(blocks)
    assert body["run"]["run_id"] == "run-20171208-020001-abcd"
    assert body["run"]["failed"] is True
    assert body["run"]["groups"]["fixed"] == 1
    assert body["run"]["outcomes"]["not_helped"] == 1
    assert observer.of_kind("warning") == []


@pytest.mark.parametrize("receiver", [500], indirect=True)
def test_a_refusing_receiver_is_a_warning(receiver: tuple[Receiver, str]) -> None:
    _, url = receiver
    observer = RecordingObserver()
    assert send_webhook(url, sample_result(), observer) is False
    (warning,) = observer.of_kind("warning")
    assert "HTTP 500" in warning
    assert "s3cr3t" not in warning and "127.0.0.1" in warning


def test_an_unreachable_receiver_never_raises() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    observer = RecordingObserver()
    assert send_webhook(f"http://127.0.0.1:{port}{SECRET_PATH}", sample_result(), observer,
                        timeout=2.0) is False
    (warning,) = observer.of_kind("warning")
    assert "cannot connect" in warning
    assert "s3cr3t" not in warning


def test_not_an_http_url_is_a_warning() -> None:
    observer = RecordingObserver()
    assert send_webhook("file:///etc/passwd", sample_result(), observer) is False
    assert "not an http(s) URL" in observer.of_kind("warning")[0]


async def test_async_variant(receiver: tuple[Receiver, str]) -> None:
    state, url = receiver
    observer = RecordingObserver()
    assert await send_webhook_async(url, sample_result(), observer) is True
    assert len(state.bodies) == 1
    assert "s3cr3t" not in " ".join(observer.of_kind("info"))


def test_redacted_url_hides_path_and_credentials() -> None:
    assert redacted_url("https://user:pw@hooks.example.com:8443/services/x?token=y") == (
        "https://hooks.example.com:8443/...")
