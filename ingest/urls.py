"""Camera URLs in ingest: error messages scrubbed of credentials, live or file sources.

The redaction rule itself is the kernel's (:func:`models.secrets.redact_url`), the one every part uses.
"""

from __future__ import annotations

from models.secrets import USERINFO, redact_url

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp", "srt", "tcp", "gb28181"})


def scrub(text: str, url: str) -> str:
    """``text`` (an error message from FFmpeg or a library) with ``url`` and its userinfo redacted."""
    text = text.replace(url, redact_url(url))
    return USERINFO.sub("***@", text)


def scheme_of(url: str) -> str:
    """The lower-case scheme of ``url``; ``"file"`` for plain paths."""
    head, sep, _ = url.partition("://")
    return head.lower() if sep else "file"


def is_live(url: str) -> bool:
    """Network sources reconnect at end of stream; files end."""
    return scheme_of(url) in LIVE_SCHEMES
