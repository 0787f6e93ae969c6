"""The SDP of a GB/T 28181 live play: the platform's offer and the device's answer.

GB/T 28181 adds two lines a standard parser refuses: ``y=`` (the 10-digit SSRC, decimal) and ``f=``
(media format hints). They are taken out first; the rest is ordinary SDP (RFC 4566, RFC 4571/4145
for ``TCP/RTP/AVP`` with ``a=setup:``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from models.errors import StreamError

Transport = Literal["udp", "tcp-passive", "tcp-active"]
Setup = Literal["active", "passive", "actpass"]

_SSRC = re.compile(r"^\d{10}$")


class SdpError(StreamError):
    """A device's SDP that cannot be used; the message names the line or field."""


def build_offer(
    *, channel_id: str, ip: str, port: int, transport: Transport, ssrc: str, platform_id: str | None = None
) -> str:
    """The platform's INVITE offer: ``s=Play``, PS over RTP at 90 kHz, receive only, ``y=<SSRC>``.

    ``transport`` is how the media reaches us: ``udp``; ``tcp-passive`` (we listen on ``port``, the
    device connects: ``a=setup:passive``); ``tcp-active`` (we connect to the device's port from its
    answer: ``a=setup:active``, ``port`` is then only a placeholder, by convention 9 would do).
    """
    if not _SSRC.match(ssrc):
        raise ValueError(f"ssrc must be 10 digits (got {ssrc!r})")
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    proto = "RTP/AVP" if transport == "udp" else "TCP/RTP/AVP"
    lines = [
        "v=0",
        f"o={platform_id or channel_id} 0 0 IN IP4 {ip}",
        "s=Play",
        f"c=IN IP4 {ip}",
        "t=0 0",
        f"m=video {port} {proto} 96",
        "a=recvonly",
        "a=rtpmap:96 PS/90000",
    ]
    if transport != "udp":
        lines += [f"a=setup:{'passive' if transport == 'tcp-passive' else 'active'}", "a=connection:new"]
    lines.append(f"y={ssrc}")
    return "\r\n".join(lines) + "\r\n"


@dataclass(frozen=True)
class Answer:
    """What a device's SDP answer says about the media it will send."""

    ip: str
    port: int
    protocol: str  # "RTP/AVP" or "TCP/RTP/AVP"
    payload_type: int
    encoding: str  # "PS" normally; some devices answer "H264"
    clock_rate: int
    ssrc: str | None  # the y= line (10 digits) when given
    setup: Setup | None  # TCP: the device's role

    @property
    def tcp(self) -> bool:
        return self.protocol.upper().startswith("TCP")

    @property
    def ssrc_int(self) -> int | None:
        return int(self.ssrc) if self.ssrc else None


def strip_gb_lines(text: str) -> tuple[str, dict[str, str]]:
    """The SDP without ``y=``/``f=`` lines, and those lines' values."""
    kept: list[str] = []
    extra: dict[str, str] = {}
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if line[:2] in ("y=", "f="):
            extra[line[0]] = line[2:].strip()
        else:
            kept.append(line)
    return "\r\n".join(kept) + "\r\n", extra


def parse_answer(text: str) -> Answer:
    """The device's address, port, transport, payload and SSRC from its answer; SdpError naming the field."""
    body, extra = strip_gb_lines(text)
    session_ip: str | None = None
    media_ip: str | None = None
    media: list[str] | None = None
    rtpmap: dict[int, tuple[str, int]] = {}
    setup: str | None = None
    for line in body.split("\r\n"):
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "c":
            parts = value.split()
            if len(parts) < 3 or parts[0] != "IN":
                raise SdpError(f"bad c= line in the device's SDP: {line!r}")
            ip = parts[2].split("/")[0]
            if media is None:
                session_ip = ip
            else:
                media_ip = ip
        elif kind == "m":
            if media is not None and media[0] == "video":
                continue  # the first video section is the one
            media = value.split()
        elif kind == "a" and media is not None and media[0] == "video":
            if value.startswith("rtpmap:"):
                pt, _, enc = value[len("rtpmap:") :].partition(" ")
                name, _, rate = enc.partition("/")
                if pt.strip().isdigit():
                    rtpmap[int(pt)] = (
                        name.strip().upper(),
                        int(rate.split("/")[0]) if rate[:1].isdigit() else 90000,
                    )
            elif value.startswith("setup:"):
                setup = value[len("setup:") :].strip().lower()
    if media is None or media[0] != "video":
        raise SdpError("the device's SDP has no m=video line")
    if len(media) < 4 or not media[1].isdigit():
        raise SdpError(f"bad m= line in the device's SDP: {' '.join(media)!r}")
    ip = media_ip or session_ip
    if ip is None:
        raise SdpError("the device's SDP has no c= line")
    pt = int(media[3]) if media[3].isdigit() else 96
    encoding, clock_rate = rtpmap.get(pt, ("PS", 90000))
    ssrc = extra.get("y")
    if ssrc is not None:
        ssrc = ssrc.strip()
        if not ssrc.isdigit():
            raise SdpError(f"bad y= line (SSRC) in the device's SDP: {ssrc!r}")
        ssrc = ssrc.zfill(10)
    if setup not in (None, "active", "passive", "actpass"):
        raise SdpError(f"bad a=setup in the device's SDP: {setup!r}")
    return Answer(
        ip=ip,
        port=int(media[1]),
        protocol=media[2],
        payload_type=pt,
        encoding=encoding,
        clock_rate=clock_rate,
        ssrc=ssrc,
        setup=setup,  # type: ignore[arg-type]
    )
