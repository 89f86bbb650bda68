"""Where a vulnerable.list comes from: a file, standard input, or a URL.

The seed copied the list from the scanning machine with scp; today it is often another
Jenkins job's archived artifact, fetched over HTTPS. A URL's user and password (a Jenkins API
token) are used but never shown: messages name the URL without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import httpx

from careen.errors import InputFileError, ServiceError
from careen.plan import Candidate, candidates_from_list
from careen.vulnlist import ReadResult, read_vulnerable_list

#: A vulnerable.list of 100,000 images is about 5 MB; anything much larger is not one.
MAX_LIST_BYTES = 32 * 1024 * 1024
FETCH_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class ListedImages:
    listing: ReadResult
    #: How messages and the stored plan name the source: ``stdin``, a path, a URL without
    #: credentials.
    shown: str

    @property
    def source(self) -> str:
        """The plan's ``source`` field."""
        if self.shown == "stdin":
            return "stdin"
        return f"url:{self.shown}" if "://" in self.shown else f"file:{self.shown}"

    def candidates(self) -> list[Candidate]:
        details = {entry.image: f"listed in {self.shown}" + (
            f" ({int(entry.severity)}={entry.count})" if entry.severity is not None else "")
            for entry in self.listing.entries}
        return candidates_from_list([entry.image for entry in self.listing.entries], details)


def read_list(spec: str, *, stdin: TextIO, strict: bool = False,
              transport: httpx.BaseTransport | None = None) -> ListedImages:
    """Read the list named by ``spec``: ``-`` (standard input), ``http(s)://...`` or a path."""
    if spec == "-":
        text, shown = stdin.read(), "stdin"
    elif spec.startswith(("http://", "https://")):
        text, shown = fetch_list(spec, transport=transport), redact(spec)
    else:
        path = Path(spec)
        if not path.is_file():
            raise InputFileError(spec, "no such file; give --from PATH, - for stdin, or a URL")
        text, shown = path.read_text(encoding="utf-8", errors="replace"), spec
    return ListedImages(read_vulnerable_list(text, source=shown, strict=strict), shown)


def redact(url: str, *, query: bool = False) -> str:
    """``url`` without its user and password (and without its query unless ``query``)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query if query else "", ""))


def fetch_list(url: str, *, transport: httpx.BaseTransport | None = None) -> str:
    """GET a list over HTTP(S): certificates verified, no redirect to another host, a size
    bound, and errors that name the URL without its credentials."""
    shown = redact(url)
    parts = urlsplit(url)
    auth = (parts.username or "", parts.password or "") if parts.username else None
    bare = redact(url, query=True)
    try:
        with httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, transport=transport,
                          follow_redirects=False) as client, \
                client.stream("GET", bare, auth=auth) as response:
            if response.status_code != 200:
                raise ServiceError("list", shown, f"HTTP {response.status_code}",
                                   hint="check the URL (and its credentials, for a Jenkins "
                                        "artifact)")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_LIST_BYTES:
                    raise InputFileError(shown, f"larger than {MAX_LIST_BYTES // 2**20} MB: "
                                         "not a vulnerable.list")
    except httpx.HTTPError as error:
        raise ServiceError("list", shown, f"cannot fetch it: {type(error).__name__}",
                           hint="check the URL and that this machine can reach it") from None
    return body.decode("utf-8", errors="replace")
