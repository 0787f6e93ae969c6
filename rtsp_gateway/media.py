"""The media hub's in-process interface: what a consumer (RTSP viewer, browser live view, clip buffer)
gets when it subscribes to a camera.

A subscription yields the track's codec parameters first (:class:`TrackInfo`), then RTP packets of the
camera's video as they arrive (:class:`RtpPacket`), starting at a keyframe. Nothing is decoded: packets
are forwarded as the camera sent them, except that the hub gives every track one stable SSRC and
continuous sequence numbers and timestamps across upstream reconnects (a viewer sees one stream).
Consumers that need whole frames (fMP4 muxing) reassemble access units with
``rtsp_gateway.depacketize.Depacketizer``.

A subscriber that falls behind is not allowed to stall the others: its queue is bounded, and when it
overflows the subscriber skips to the next keyframe (``RtpPacket.discontinuity`` is set on the first
packet after a gap); one that stays behind is ended with :class:`SlowConsumer`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from models.errors import GridPatrolError, StreamError

Codec = Literal["h264", "h265"]
StreamKind = Literal["main", "sub"]
#: which kind of consumer holds a subscription (counted separately in the metrics)
ConsumerKind = Literal["rtsp", "mse", "clip", "internal"]


@dataclass(frozen=True)
class TrackInfo:
    """The video track of one camera stream, as the hub forwards it."""

    codec: Codec
    payload_type: int
    clock_rate: int
    #: parameter sets as NAL units without start codes: H.264 (SPS, PPS), H.265 (VPS, SPS, PPS);
    #: empty until known (then they arrive in-band before the first keyframe)
    parameter_sets: tuple[bytes, ...] = ()
    #: the SDP ``a=fmtp`` value to give viewers (packetization-mode, sprop-*), never an upstream address
    fmtp: str = ""
    width: int | None = None
    height: int | None = None
    #: the stable SSRC of the packets the hub forwards for this track
    ssrc: int = 0


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (header and payload as bytes on the wire), as the hub forwards it."""

    data: bytes
    #: ``time.monotonic()`` when the packet left the upstream socket (latency measurements)
    received_at: float
    #: the first packet of a keyframe's access unit (where a new subscriber may start)
    keyframe: bool = False
    #: the first packet after packets this subscriber did not get (upstream loss or its own slowness)
    discontinuity: bool = False
    #: an RTCP packet (sender report) rather than RTP; forwarded on the RTCP channel
    rtcp: bool = False


class Subscription(Protocol):
    """One consumer's view of one camera stream. Iterate :meth:`packets`; :meth:`close` when done."""

    camera_id: int
    stream: StreamKind

    @property
    def info(self) -> TrackInfo:
        """The current track parameters (they may change after an upstream reconnect)."""
        ...

    def packets(self) -> AsyncIterator[RtpPacket]:
        """Packets from the next keyframe on; ends (StopAsyncIteration) when the hub ends the
        subscription, or raises :class:`UpstreamGone`/:class:`SlowConsumer` with the reason."""
        ...

    def batches(self) -> AsyncIterator[list[RtpPacket]]:
        """The same packets as :meth:`packets`, everything queued at once (one write per batch keeps a
        server's fan-out cheap); ends and raises like :meth:`packets`. Use one of the two, not both."""
        ...

    @property
    def bytes_sent(self) -> int: ...

    def close(self) -> None:
        """Leave; the last subscriber's leaving starts the upstream's linger timer."""
        ...


class Hub(Protocol):
    async def subscribe(
        self,
        camera_id: int,
        *,
        stream: StreamKind = "main",
        user_id: int | None,
        consumer: ConsumerKind,
    ) -> Subscription:
        """Join the camera's one upstream session (opened now if none is running), waiting until the
        track's parameters are known. Raises :class:`HubLimit` (viewers per camera, sessions per user),
        :class:`NoSuchStream` (no such camera or sub-stream) or :class:`UpstreamGone` (the camera cannot
        be reached)."""
        ...

    async def subscribe_replay(
        self, name: str, *, user_id: int | None, consumer: ConsumerKind
    ) -> Subscription:
        """Join the replay ``name`` (``gridpatrol gateway --replay NAME=FILE``; served to RTSP viewers at
        ``/replay/NAME``) like a camera; :class:`NoSuchStream` when there is no such replay."""
        ...


class HubError(StreamError):
    """A subscription could not be made or kept."""


class NoSuchStream(HubError):
    """The camera, or the sub-stream asked for, does not exist (the server answers as for a camera the
    viewer may not see: 404, nothing about it)."""


class HubLimit(HubError):
    """A configured limit was reached; the message names it (e.g. 'camera 7 already has 64 viewers')."""

    def __init__(self, message: str, *, limit: Literal["viewers_per_camera", "sessions_per_user"]) -> None:
        super().__init__(message)
        self.limit = limit


class UpstreamGone(HubError):
    """The camera could not be reached (after the retries allowed while viewers wait)."""


class SlowConsumer(HubError):
    """The subscriber stayed behind the stream and was ended so the others are not held back."""


@dataclass
class HubStats:
    """What /metrics shows about the hub."""

    upstreams: int = 0
    viewers: dict[ConsumerKind, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    dropped_packets: int = 0
    slow_consumers_ended: int = 0
    upstream_reconnects: int = 0


__all__ = [
    "Codec",
    "ConsumerKind",
    "GridPatrolError",
    "Hub",
    "HubError",
    "HubLimit",
    "HubStats",
    "NoSuchStream",
    "RtpPacket",
    "SlowConsumer",
    "StreamKind",
    "Subscription",
    "TrackInfo",
    "UpstreamGone",
]
