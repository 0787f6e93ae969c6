"""HTTP byte ranges for event clips: what is served for each Range header, and what is refused (416)."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from api.ranges import parse_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "cap", "expected", "error"),
    [
        ("bytes=0-99", None, (0, 99), None),
        ("bytes=900-", None, (900, 999), None),
        ("bytes=0-", 100, (0, 99), None),  # open-ended: cut, the player asks again
        ("bytes=950-2000", None, (950, 999), None),  # past the end: up to the end
        ("bytes=-100", None, (900, 999), None),
        ("bytes=-5000", None, (0, 999), None),
        ("bytes=10-20, 30-40", None, (10, 20), None),  # the first of several
        ("BYTES = 5 - 6", None, (5, 6), None),
        ("bytes=1000-", None, None, "past the end"),
        ("bytes=50-10", None, None, "past the end"),
        ("bytes=-0", None, None, "empty suffix"),
        ("bytes=-", None, None, "bytes=first-last"),
        ("frames=1-2", None, None, "bytes=first-last"),
        ("bytes=a-b", None, None, "bytes=first-last"),
    ],
)
def test_ranges(header: str, cap: int | None, expected: tuple[int, int] | None, error: str | None) -> None:
    if error is None:
        assert parse_range(header, SIZE, open_ended_max=cap) == expected
        return
    with pytest.raises(HTTPException) as caught:
        parse_range(header, SIZE, open_ended_max=cap)
    assert caught.value.status_code == 416
    assert error in str(caught.value.detail)
    assert caught.value.headers == {"Content-Range": f"bytes */{SIZE}", "Accept-Ranges": "bytes"}
