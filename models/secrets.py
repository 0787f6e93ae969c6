"""Keeping camera credentials out of everything a person or a log can read.

Camera URLs carry secrets (``rtsp://admin:pass@host/...``, ``?token=...``); every part that names a URL
in a log line, an error message or an API answer passes it through :func:`redact_url` first.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query keys that vendors use for secrets (Hikvision/Dahua style "?user=..&password=..", tokens).
_SECRET_KEYS = re.compile(r"(pass|pwd|secret|token|key|auth|sig|user|login|cred|session)", re.IGNORECASE)
USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def redact_url(url: str) -> str:
    """``url`` with its user:password and secret-looking query values replaced by ``***``:
    ``rtsp://admin:pw@host/live?token=x&ch=1`` → ``rtsp://***@host/live?token=***&ch=1``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return USERINFO.sub("***@", url)
    if not parts.scheme or not parts.netloc:
        return USERINFO.sub("***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = [(k, "***" if _SECRET_KEYS.search(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
