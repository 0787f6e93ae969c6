"""The RTP receiver of one GB/T 28181 media session, in its own thread ``gb-rtp-<label>``.

Transports: UDP; TCP with RFC 4571 framing (each RTP packet preceded by its 16-bit length), either
passive (we listen, the device connects: ``a=setup:passive`` in our offer) or active (we connect to
the port of the device's answer). Packets are filtered by SSRC (the ``y=`` of the session; a device
that ignores it and sends one other SSRC only is adopted after a while, with a warning), put back in
sequence order through a small reorder buffer, and handed on in order with a flag that says packets
were lost before this one. Nothing here blocks the caller; ``on_packet`` runs in the receiver thread.
"""

from __future__ import annotations

import heapq
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

Mode = Literal["udp", "tcp-passive", "tcp-active"]

#: on_packet(payload, rtp_timestamp, marker, gap_before)
OnPacket = Callable[[bytes, int, bool, bool], None]

_RECV_BUFFER = 4 * 1024 * 1024
# A device that answers with y=X but sends SSRC Y on every packet (seen on older NVRs): after this many
# packets of Y and none of X, Y is taken.
ADOPT_AFTER_PACKETS = 100


@dataclass
class ReceiverStats:
    packets: int = 0
    bytes: int = 0
    lost: int = 0  # sequence numbers never received (given up on)
    reordered: int = 0  # packets that arrived after a later one and were put back in order
    duplicates: int = 0
    wrong_ssrc: int = 0  # packets dropped for another SSRC than the session's
    malformed: int = 0
    connections: int = 0  # TCP connections accepted or made
    last_packet_at: float | None = None  # time.monotonic()


@dataclass(frozen=True, slots=True)
class _Rtp:
    seq: int
    timestamp: int
    marker: bool
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> _Rtp | None:
    """Header fields and payload of an RTP packet (CSRCs, extension and padding removed), None if bad."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    b0, b1, seq, ts, ssrc = struct.unpack_from(">BBHII", data)
    pos = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # header extension
        if len(data) < pos + 4:
            return None
        pos += 4 + 4 * struct.unpack_from(">H", data, pos + 2)[0]
    end = len(data)
    if b0 & 0x20 and end > pos:  # padding
        end -= data[-1]
    if pos > end:
        return None
    return _Rtp(seq, ts, bool(b1 & 0x80), ssrc, data[pos:end])


class Reorderer:
    """Puts packets back in sequence order; gives up on a missing one after ``window`` later packets
    or ``max_wait_s``, and then reports the gap."""

    def __init__(self, *, window: int = 64, max_wait_s: float = 0.2) -> None:
        self.window = window
        self.max_wait_s = max_wait_s
        self._next: int | None = None  # extended sequence number expected next
        self._heap: list[tuple[int, float, _Rtp]] = []
        self._seen: set[int] = set()
        self._gap = False
        self._max_seen: int | None = None
        self.lost = 0
        self.reordered = 0
        self.duplicates = 0

    def _extend(self, seq: int) -> int:
        if self._next is None:
            return seq
        base = self._next
        # the extended value nearest to what we expect (16-bit wrap)
        candidate = (base & ~0xFFFF) | seq
        if candidate - base > 0x8000:
            candidate -= 0x10000
        elif base - candidate > 0x8000:
            candidate += 0x10000
        return candidate

    def push(self, pkt: _Rtp, now: float) -> list[tuple[_Rtp, bool]]:
        """The packets now deliverable, in order, each with ``gap_before``."""
        ext = self._extend(pkt.seq)
        if self._next is None:
            self._next = ext
        if ext < self._next:
            if ext < self._next - 0x4000:  # far behind: the sender restarted its sequence
                self._restart(ext)
            else:
                self.duplicates += 1  # or too late: already given up on
                return self._drain(now)
        if ext in self._seen:
            self.duplicates += 1
            return self._drain(now)
        if self._max_seen is not None and ext < self._max_seen:
            self.reordered += 1
        self._max_seen = ext if self._max_seen is None else max(ext, self._max_seen)
        self._seen.add(ext)
        heapq.heappush(self._heap, (ext, now, pkt))
        return self._drain(now)

    def _restart(self, ext: int) -> None:
        self._heap.clear()
        self._seen.clear()
        self._next = ext
        self._max_seen = None
        self._gap = True

    def _drain(self, now: float) -> list[tuple[_Rtp, bool]]:
        out: list[tuple[_Rtp, bool]] = []
        heap = self._heap
        while heap:
            ext, arrived, pkt = heap[0]
            assert self._next is not None
            if ext != self._next:
                overdue = len(heap) > self.window or now - arrived > self.max_wait_s
                if not overdue:
                    break
                self.lost += ext - self._next
                self._gap = True
                self._next = ext
            heapq.heappop(heap)
            self._seen.discard(ext)
            out.append((pkt, self._gap))
            self._gap = False
            self._next = ext + 1
        return out

    def flush(self, now: float) -> list[tuple[_Rtp, bool]]:
        """Deliver what waits for a packet that is not coming (called when the socket is quiet)."""
        return self._drain(now + self.max_wait_s + 1.0) if self._heap else []


class RtpReceiver:
    """Receives one session's RTP and calls ``on_packet`` in order; ``port`` is known after ``bind``."""

    def __init__(
        self,
        *,
        mode: Mode,
        on_packet: OnPacket,
        bind_ip: str = "0.0.0.0",
        port: int = 0,
        ssrc: int | None = None,
        label: str = "",
        reorder_window: int = 64,
    ) -> None:
        self.mode: Mode = mode
        self.label = label or f"{mode}:{port}"
        self.stats = ReceiverStats()
        self.ssrc = ssrc
        self._on_packet = on_packet
        self._reorder = Reorderer(window=reorder_window)
        self._stop = threading.Event()
        self._remote: tuple[str, int] | None = None
        self._remote_set = threading.Event()
        self._other_ssrcs: dict[int, int] = {}
        self._good_ssrc_seen = False
        self._conn: socket.socket | None = None
        self._sock = self._bind(bind_ip, port)
        self.port: int = self._sock.getsockname()[1] if self._sock is not None else 0
        self._thread = threading.Thread(target=self._run, name=f"gb-rtp-{self.label}", daemon=True)

    def _bind(self, ip: str, port: int) -> socket.socket | None:
        if self.mode == "tcp-active":
            return None  # we connect out once the answer names the device's port
        kind = socket.SOCK_DGRAM if self.mode == "udp" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_INET, kind)
        try:
            if self.mode == "udp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECV_BUFFER)
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
            if self.mode == "tcp-passive":
                sock.listen(2)
            sock.settimeout(0.25)
        except OSError:
            sock.close()
            raise
        return sock

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> RtpReceiver:
        self._thread.start()
        return self

    def connect_to(self, ip: str, port: int) -> None:
        """tcp-active: the device's address from its answer; the thread connects (and reconnects)."""
        self._remote = (ip, port)
        self._remote_set.set()

    def stop(self, timeout: float | None = 2.0) -> None:
        self._stop.set()
        self._remote_set.set()
        if timeout is not None and self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for sock in (self._conn, self._sock):
            if sock is not None:
                try:
                    sock.close()
                except OSError:
                    pass

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def idle_for(self, now: float | None = None) -> float | None:
        """Seconds since the last packet (None: none yet)."""
        last = self.stats.last_packet_at
        return None if last is None else (now or time.monotonic()) - last

    # -- the thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self.mode == "udp":
                self._run_udp()
            elif self.mode == "tcp-passive":
                self._run_tcp_passive()
            else:
                self._run_tcp_active()
        except Exception:  # top of a long-running loop: the session ends, the feed notices the silence
            logger.exception("%s: RTP receiver crashed", self.label)

    def _run_udp(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._stop.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                self._deliver(self._reorder.flush(time.monotonic()))
                continue
            except OSError:
                return
            self._packet(data)

    def _run_tcp_passive(self) -> None:
        listener = self._sock
        assert listener is not None
        while not self._stop.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            logger.info("%s: device connected from %s:%d", self.label, *peer[:2])
            self._read_stream(conn)

    def _run_tcp_active(self) -> None:
        self._remote_set.wait()
        delay = 0.2
        while not self._stop.is_set() and self._remote is not None:
            try:
                conn = socket.create_connection(self._remote, timeout=3.0)
            except OSError as err:
                logger.info("%s: cannot connect to %s:%d (%s); retrying", self.label, *self._remote, err)
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, 5.0)
                continue
            delay = 0.2
            self._read_stream(conn)
            if self._stop.wait(0.2):
                return

    def _read_stream(self, conn: socket.socket) -> None:
        """RFC 4571: a 16-bit big-endian length, then that many bytes of RTP; until EOF or stop."""
        self._conn = conn
        self.stats.connections += 1
        conn.settimeout(0.25)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECV_BUFFER)
        buf = bytearray()
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(262_144)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    logger.info("%s: device closed the media connection", self.label)
                    return
                buf += chunk
                pos = 0
                while len(buf) - pos >= 2:
                    size = (buf[pos] << 8) | buf[pos + 1]
                    if len(buf) - pos - 2 < size:
                        break
                    self._packet(bytes(buf[pos + 2 : pos + 2 + size]))
                    pos += 2 + size
                del buf[:pos]
        finally:
            self._conn = None
            conn.close()

    def _packet(self, data: bytes) -> None:
        pkt = parse_rtp(data)
        stats = self.stats
        if pkt is None:
            stats.malformed += 1
            return
        if self.ssrc is not None and pkt.ssrc != self.ssrc:
            stats.wrong_ssrc += 1
            count = self._other_ssrcs.get(pkt.ssrc, 0) + 1
            self._other_ssrcs[pkt.ssrc] = count
            if self._good_ssrc_seen or count < ADOPT_AFTER_PACKETS or len(self._other_ssrcs) > 1:
                return
            logger.warning(
                "%s: the device sends SSRC %010d instead of %010d; taking it", self.label, pkt.ssrc, self.ssrc
            )
            self.ssrc = pkt.ssrc
            stats.wrong_ssrc -= 1  # this one is kept
        elif self.ssrc is None:
            self.ssrc = pkt.ssrc
        self._good_ssrc_seen = True
        now = time.monotonic()
        stats.packets += 1
        stats.bytes += len(data)
        stats.last_packet_at = now
        self._deliver(self._reorder.push(pkt, now))

    def _deliver(self, ready: list[tuple[_Rtp, bool]]) -> None:
        r = self._reorder
        self.stats.lost, self.stats.reordered, self.stats.duplicates = r.lost, r.reordered, r.duplicates
        for pkt, gap in ready:
            try:
                self._on_packet(pkt.payload, pkt.timestamp, pkt.marker, gap)
            except Exception:  # a consumer bug must not stop the receiver
                logger.exception("%s: on_packet failed", self.label)
