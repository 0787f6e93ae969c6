"""Camera URLs: keep credentials out of every log line and error message.

Camera URLs carry secrets (``rtsp://admin:pass@host/...``, ``?token=...``); everything in ``ingest``
that names a URL in a log or an exception passes it through :func:`redact_url` first.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query keys that vendors use for secrets (Hikvision/Dahua style "?user=..&password=..", tokens).
_SECRET_KEYS = re.compile(r"(pass|pwd|secret|token|key|auth|sig|user|login)", re.IGNORECASE)
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp", "srt", "tcp"})


def redact_url(url: str) -> str:
    """``url`` with its user:password and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub("***@", url)
    if not parts.scheme or not parts.netloc:
        return _USERINFO.sub("***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = [(k, "***" if _SECRET_KEYS.search(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def scrub(text: str, url: str) -> str:
    """``text`` (an error message from FFmpeg or a library) with ``url`` and its userinfo redacted."""
    text = text.replace(url, redact_url(url))
    return _USERINFO.sub("***@", text)


def scheme_of(url: str) -> str:
    """The lower-case scheme of ``url``; ``"file"`` for plain paths."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else "file"


def is_live(url: str) -> bool:
    """Network sources reconnect at end of stream; files end."""
    return scheme_of(url) in LIVE_SCHEMES
