"""HTTP byte ranges (RFC 9110 section 14) for stored video, so that a browser's player can seek.

One range per request: ``bytes=a-b``, ``bytes=a-`` or ``bytes=-n`` (of a multi-range request the first is
served, which RFC 9110 allows). A range that cannot be satisfied, or a header that is not a byte range,
is a 416 with ``Content-Range: bytes */size``.
"""

from __future__ import annotations

import re

from fastapi import HTTPException

_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str, size: int, *, open_ended_max: int | None = None) -> tuple[int, int]:
    """(first byte, last byte), inclusive, of the first range in ``header``; 416 when unsatisfiable.
    An open-ended range (``bytes=a-``, what players send) is cut at ``open_ended_max`` bytes: the player
    asks again for the rest, and the server never holds a whole clip in memory for one request."""
    unit, _, spec = header.partition("=")
    match = _RANGE.match(spec.split(",")[0]) if unit.strip().lower() == "bytes" else None
    if match is None or match.group(1) == match.group(2) == "":
        raise _unsatisfiable(size, "the Range header must be bytes=first-last")
    first, last = match.group(1), match.group(2)
    if first == "":  # a suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise _unsatisfiable(size, "an empty suffix range")
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last == "" and open_ended_max is not None:
        end = min(end, start + open_ended_max - 1)
    if start >= size or (last != "" and int(last) < start):
        raise _unsatisfiable(size, f"the range starts past the end ({size} bytes)")
    return start, end


def _unsatisfiable(size: int, reason: str) -> HTTPException:
    return HTTPException(416, detail=reason, headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"})
