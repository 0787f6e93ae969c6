"""SSRC allocation for GB/T 28181 media: 10 decimal digits, ``[0|1][domain digits 4..8][4-digit serial]``.

The first digit is 0 for live play and 1 for playback; the next five are the 4th to 8th digits of the
platform's 10-digit domain; the last four a serial, unique among the sessions open at once (the lowest
free one: a channel played again after a loss gets its SSRC back, on a new port). Devices put the SSRC
in their answer's ``y=`` line and in every RTP header (as the integer of those digits).
"""

from __future__ import annotations

import threading


class SsrcPool:
    """Hands out unique SSRCs for one platform domain; thread-safe."""

    def __init__(self, domain: str) -> None:
        if len(domain) != 10 or not domain.isdigit():
            raise ValueError(f"domain must be 10 digits (got {domain!r})")
        self._middle = domain[3:8]
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def allocate(self, *, playback: bool = False) -> str:
        with self._lock:
            for serial in range(1, 10_000):
                ssrc = f"{1 if playback else 0}{self._middle}{serial:04d}"
                if ssrc not in self._used:
                    self._used.add(ssrc)
                    return ssrc
        raise RuntimeError("all 9999 SSRCs of this domain are in use")

    def release(self, ssrc: str) -> None:
        with self._lock:
            self._used.discard(ssrc)

    def __len__(self) -> int:
        return len(self._used)
