"""SIP over UDP and TCP on one port (asyncio): receive messages, send them back where devices are.

A TCP device keeps its connection open and the platform sends its own requests (Catalog, INVITE, BYE)
down that same connection; the connection is found by the device's address. When it has gone, the
platform connects to the address the device registered from.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from ingest.gb28181.sip import SipError, SipMessage, frame_length, parse

logger = logging.getLogger(__name__)

Transport = Literal["udp", "tcp"]


@dataclass(frozen=True)
class Peer:
    """Where a message came from, and where answers go."""

    transport: Transport
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport}:{self.host}:{self.port}"


Handler = Callable[[SipMessage, Peer], Awaitable[None]]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a DatagramTransport (not a subclass at run time)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not data.strip(b"\r\n"):
            return  # a keepalive ping
        self.owner.received(data, Peer("udp", str(addr[0]), int(addr[1])))


class SipTransport:
    """The platform's SIP listeners; ``handler`` runs for every message received."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str,
        port: int,
        udp: bool = True,
        tcp: bool = True,
        max_tcp_connections: int = 10_000,
    ) -> None:
        self._handler = handler
        self._host = host
        self._requested_port = port
        self._want_udp = udp
        self._want_tcp = tcp
        self._max_tcp = max_tcp_connections
        self._udp: _Udp | None = None
        self._tcp: asyncio.Server | None = None
        self._streams: dict[tuple[str, int], asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = port

    async def start(self) -> None:
        """Bind UDP and TCP to the same port (a free one when port 0: TCP picks it, UDP follows)."""
        loop = asyncio.get_running_loop()
        if self._want_tcp:
            self._tcp = await asyncio.start_server(self._serve_stream, self._host, self._requested_port)
            self.port = self._tcp.sockets[0].getsockname()[1]
        if self._want_udp:
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            _, proto = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self._host, self.port), family=family
            )
            self._udp = proto
            assert proto.transport is not None
            self.port = proto.transport.get_extra_info("sockname")[1]

    async def stop(self) -> None:
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        if self._tcp is not None:
            self._tcp.close()
        for writer in list(self._streams.values()):
            writer.close()
        self._streams.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tcp is not None:
            await self._tcp.wait_closed()

    # --- receiving --------------------------------------------------------------------------------------
    def received(self, data: bytes, peer: Peer) -> None:
        try:
            msg = parse(data)
        except SipError as err:
            logger.warning("%s: dropped a message that is not SIP: %s", peer, err)
            return
        task = asyncio.get_running_loop().create_task(self._handle(msg, peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, msg: SipMessage, peer: Peer) -> None:
        try:
            await self._handler(msg, peer)
        except Exception:  # one device's odd message must not stop the platform
            logger.exception("%s: handling %s failed", peer, msg.method or msg.status)

    async def _serve_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        key = (str(addr[0]), int(addr[1]))
        if len(self._streams) >= self._max_tcp:
            logger.warning(
                "tcp:%s:%d: refused, %d SIP connections are open already", *key, len(self._streams)
            )
            writer.close()
            return
        self._streams[key] = writer
        try:
            await self._read_stream(reader, Peer("tcp", *key))
        finally:
            if self._streams.get(key) is writer:
                del self._streams[key]
            writer.close()

    async def _read_stream(self, reader: asyncio.StreamReader, peer: Peer) -> None:
        buffer = bytearray()
        while True:
            try:
                while (n := frame_length(buffer)) is not None:
                    if n < 0:
                        del buffer[:-n]
                        continue
                    data = bytes(buffer[:n])
                    del buffer[:n]
                    self.received(data, peer)
            except SipError as err:
                logger.warning("%s: closing a TCP connection that does not speak SIP: %s", peer, err)
                return
            try:
                chunk = await reader.read(65_536)
            except (ConnectionError, OSError):
                return
            if not chunk:
                return
            buffer += chunk

    # --- sending ----------------------------------------------------------------------------------------
    async def send(self, msg: SipMessage, peer: Peer) -> None:
        data = msg.encode()
        if peer.transport == "udp":
            if self._udp is None or self._udp.transport is None:
                raise SipError("the platform does not listen on UDP")
            self._udp.transport.sendto(data, (peer.host, peer.port))
            return
        writer = self._streams.get((peer.host, peer.port))
        if writer is None or writer.is_closing():
            writer = await self._connect(peer)
        writer.write(data)
        try:
            await writer.drain()
        except (ConnectionError, OSError) as err:
            raise SipError(f"{peer}: the TCP connection broke: {err}") from err

    async def _connect(self, peer: Peer) -> asyncio.StreamWriter:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(peer.host, peer.port), timeout=5)
        except (OSError, TimeoutError) as err:
            raise SipError(f"{peer}: cannot connect: {err}") from err
        key = (peer.host, peer.port)
        self._streams[key] = writer

        async def pump() -> None:
            try:
                await self._read_stream(reader, peer)
            finally:
                if self._streams.get(key) is writer:
                    del self._streams[key]
                writer.close()

        task = asyncio.get_running_loop().create_task(pump())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return writer

    def connected(self, peer: Peer) -> bool:
        """A TCP connection with ``peer`` is open (always true for UDP)."""
        if peer.transport == "udp":
            return True
        writer = self._streams.get((peer.host, peer.port))
        return writer is not None and not writer.is_closing()

    def local_host_for(self, peer: Peer) -> str | None:
        """The local address a TCP connection to ``peer`` uses (None for UDP or no connection)."""
        writer = self._streams.get((peer.host, peer.port))
        if peer.transport != "tcp" or writer is None:
            return None
        return str(writer.get_extra_info("sockname")[0])
