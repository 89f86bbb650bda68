"""The optional webhook at the end of a run: a generic JSON POST that Slack (and Mattermost,
Rocket.Chat, Teams' incoming-webhook bridges...) accepts as a message.

Body: ``{"text": <one-line summary>, "blocks": [...], "run": <summary>}``. ``blocks`` are
Slack's Block Kit (a header, the counts, the top needs-attention items with their next steps,
a context line), which Slack and Mattermost show; ``text`` is the fallback (notifications,
receivers without blocks); ``run`` is for any other receiver. Scanner text goes into Slack's
``mrkdwn``, where ``&``, ``<`` and ``>`` must be written as entities (Slack's own rule: ``<``
would start a link or an ``@channel`` mention), control characters stripped.

A webhook that fails (unreachable, slow, non-2xx) is reported to the
:class:`~careen.events.Observer` as a warning and never raises: a chat outage must not turn a
good night red.

A webhook URL is a secret (Slack's carry their token in the path): messages name only its
scheme and host, never the path or query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from careen.events import Observer
from careen.reports.markdown import summary_line
from careen.reports.wording import ATTENTION_LABELS, attention_items, clean_text, group_counts
from careen.results import RunResult

#: Seconds for the whole request (connect, send, answer): a chat server is quick or broken.
DEFAULT_WEBHOOK_TIMEOUT = 10.0


#: Needs-attention items a message names; the rest is counted.
WEBHOOK_ATTENTION_ITEMS = 5
#: Slack's limit for a section's text.
_SECTION_LIMIT = 3000


def webhook_payload(result: RunResult, *, title: str = "Careen run",
                    top: int = WEBHOOK_ATTENTION_ITEMS) -> dict[str, Any]:
    items = attention_items(result)
    verdict = "needs attention" if result.failed or items else "ok"
    headline = f"{title} {result.run_id}: {verdict} — {summary_line(result)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text",
                                    "text": _plain(f"{title}: {verdict}")[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack(
            f"*{summary_line(result)}* · {len(items)} need attention · policy "
            f"{result.policy}")}},
    ]
    if items:
        lines = [f"• *{_slack(ATTENTION_LABELS.get(i.kind, i.kind.value))}* "
                 f"`{_slack(i.subject)}`: {_slack(i.reason)} → _{_slack(i.advice)}_"
                 for i in items[:top]]
        if len(items) > top:
            lines.append(f"…and {len(items) - top} more in the report")
        blocks.append({"type": "section", "text": {
            "type": "mrkdwn", "text": "\n".join(lines)[:_SECTION_LIMIT]}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _slack(
        f"run {result.run_id}" + (f" · plan {result.plan_id}" if result.plan_id else "")
        + (f" · tree {result.tree_commit[:12]}" if result.tree_commit else ""))}]})
    return {"text": _slack(headline), "blocks": blocks, "run": run_summary(result)}


def _plain(text: str) -> str:
    return " ".join(clean_text(text).split())


def _slack(text: str) -> str:
    """Untrusted text for Slack's mrkdwn: one line, ``& < >`` as Slack's entities."""
    return (_plain(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("`", "'"))


def run_summary(result: RunResult) -> dict[str, Any]:
    """The run in a few fields: ids, times, whether it failed, counts by outcome and group."""
    return {
        "run_id": result.run_id,
        "plan_id": result.plan_id,
        "started_at": result.started_at.isoformat(),
        "finished_at": result.finished_at.isoformat(),
        "policy": result.policy,
        "failed": result.failed,
        "dry_run": result.dry_run,
        "images": len(result.images),
        "outcomes": result.counts,
        "groups": group_counts(result),
    }


def redacted_url(url: str) -> str:
    """``https://hooks.slack.com/...``: enough to know which service, none of its secret."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    return f"{parts.scheme or '?'}://{host}{port}/..."


def send_webhook(url: str, result: RunResult, observer: Observer, *,
                 title: str = "Careen run", timeout: float = DEFAULT_WEBHOOK_TIMEOUT,
                 headers: Mapping[str, str] | None = None,
                 transport: httpx.BaseTransport | None = None) -> bool:
    """POST the run's summary to ``url``; True if the receiver accepted it (2xx). Never
    raises for a network or HTTP problem: it is a warning on ``observer``."""
    where = redacted_url(url)
    if urlsplit(url).scheme not in ("http", "https"):
        observer.warning(f"webhook {where}: not an http(s) URL; no notification sent")
        return False
    try:
        with httpx.Client(timeout=timeout, transport=transport,
                          follow_redirects=False) as client:
            response = client.post(url, json=webhook_payload(result, title=title),
                                   headers=dict(headers or {}))
    except httpx.HTTPError as error:
        observer.warning(f"webhook {where}: {_describe(error)}; no notification sent")
        return False
    return _accepted(response, where, observer)


async def send_webhook_async(url: str, result: RunResult, observer: Observer, *,
                             title: str = "Careen run",
                             timeout: float = DEFAULT_WEBHOOK_TIMEOUT,
                             headers: Mapping[str, str] | None = None,
                             transport: httpx.AsyncBaseTransport | None = None) -> bool:
    """:func:`send_webhook` for an asyncio run loop."""
    where = redacted_url(url)
    if urlsplit(url).scheme not in ("http", "https"):
        observer.warning(f"webhook {where}: not an http(s) URL; no notification sent")
        return False
    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport,
                                     follow_redirects=False) as client:
            response = await client.post(url, json=webhook_payload(result, title=title),
                                         headers=dict(headers or {}))
    except httpx.HTTPError as error:
        observer.warning(f"webhook {where}: {_describe(error)}; no notification sent")
        return False
    return _accepted(response, where, observer)


def _accepted(response: httpx.Response, where: str, observer: Observer) -> bool:
    if response.is_success:
        observer.info(f"webhook {where}: notified (HTTP {response.status_code})")
        return True
    observer.warning(f"webhook {where}: answered HTTP {response.status_code}; "
                     "no notification sent (check the webhook URL)")
    return False


def _describe(error: httpx.HTTPError) -> str:
    # httpx's messages may quote the request URL; name the error class instead.
    if isinstance(error, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(error, httpx.ConnectError):
        return "cannot connect"
    return f"request failed ({type(error).__name__})"
