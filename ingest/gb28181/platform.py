"""``GbPlatform``: GridPatrol as the GB/T 28181 platform (上级平台) that cameras and NVRs register to.

It answers REGISTER (Digest), tracks keepalives, collects catalogs into the device registry (the
``DeviceStore``: the database in production), and plays channels: ``invite`` sends the INVITE with the
media side's SDP offer, waits for the 200 OK, ACKs and returns the :class:`Dialog`; ``bye`` ends it.

Everything runs on one asyncio loop. Callers on another loop or thread use :meth:`GbPlatform.submit`
(or :class:`PlatformThread` runs the platform on a loop of its own thread).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, tzinfo
from typing import Any, Protocol, TypeVar

from ingest.gb28181 import manscdp
from ingest.gb28181.catalog import Catalog, CatalogCollector
from ingest.gb28181.dialog import ClientTransactions, Dialog, RequestFailed, dialog_from_answer
from ingest.gb28181.registrar import (
    DeviceState,
    DigestAuth,
    Registry,
    Verdict,
    contact_peer,
    device_id_of,
    register_expires,
)
from ingest.gb28181.settings import Gb28181Settings, is_gb_id
from ingest.gb28181.sip import (
    SipError,
    SipMessage,
    addr_uri,
    new_branch,
    new_call_id,
    new_tag,
    response_to,
    uri_host,
)
from ingest.gb28181.transport import Peer, SipTransport
from models.errors import ConfigError, StreamError

logger = logging.getLogger(__name__)

T = TypeVar("T")
USER_AGENT = "GridPatrol"
_SSRC_LINE = re.compile(r"^y=(\d{10})\s*$", re.MULTILINE)


class DeviceUnavailable(StreamError):
    """The device of a channel is not registered or not online: nothing to INVITE."""


class DeviceStore(Protocol):
    """Where the registry is kept (the database). Methods block; the platform calls them in threads."""

    def registered(self, state: DeviceState, *, expires_s: int) -> None: ...

    def set_status(self, device_id: str, status: str) -> None: ...

    def keepalive(self, device_id: str) -> None: ...

    def save_catalog(self, device_id: str, catalog: Catalog) -> int: ...

    def channel_of_camera(self, camera_id: int) -> tuple[str, str] | None: ...


class GbPlatform:
    """The SIP side of GB/T 28181: registrar, keepalives, catalog, INVITE/ACK/BYE."""

    def __init__(
        self, settings: Gb28181Settings, *, store: DeviceStore | None = None, timezone: tzinfo | None = None
    ) -> None:
        if settings.password is None:
            raise ConfigError(
                "GRIDPATROL_GB28181_PASSWORD is not set: devices register with it (SIP 认证密码)"
            )
        self.settings = settings
        self.store = store
        #: the installation's time zone: devices set their clocks from the Date of our 200 to REGISTER
        self.timezone = timezone
        self.auth = DigestAuth(
            realm=settings.domain,
            password=settings.password.get_secret_value(),
            nonce_ttl_s=settings.nonce_ttl_s,
        )
        self.registry = Registry(offline_after_s=settings.offline_after_s)
        self.catalogs = CatalogCollector()
        self.transport = SipTransport(
            self._on_message,
            host=settings.sip_host,
            port=settings.sip_port,
            udp=settings.udp,
            tcp=settings.tcp,
            max_tcp_connections=settings.max_tcp_connections,
        )
        self.transactions = ClientTransactions(self.transport.send)
        self.dialogs: dict[str, Dialog] = {}
        #: called with a device ID when it goes offline (missed keepalives), unregisters or expires
        self.on_device_lost: list[Callable[[str], None]] = []
        #: called with a device ID when it (re)registers or comes back online
        self.on_device_online: list[Callable[[str], None]] = []
        #: called with a Dialog the device ended with its own BYE
        self.on_dialog_ended: list[Callable[[Dialog], None]] = []
        #: called with each catalog collected (after it is saved)
        self.on_catalog: list[Callable[[Catalog], None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._store_locks: dict[str, asyncio.Lock] = {}

    # --- life -------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.transport.port

    @property
    def sip_uri(self) -> str:
        return f"sip:{self.settings.id}@{self.settings.domain}"

    async def start(self) -> GbPlatform:
        self.loop = asyncio.get_running_loop()
        await self.transport.start()
        self._sweeper = self.loop.create_task(self._sweep_loop(), name="gb28181-sweep")
        logger.info(
            "gb28181 platform %s (domain %s) listening on %s:%d (%s)",
            self.settings.id,
            self.settings.domain,
            self.settings.sip_host,
            self.port,
            "/".join(t for t, on in (("udp", self.settings.udp), ("tcp", self.settings.tcp)) if on),
        )
        return self

    async def stop(self) -> None:
        for dialog in list(self.dialogs.values()):
            with contextlib.suppress(SipError, TimeoutError):
                await asyncio.wait_for(self.bye(dialog), timeout=1.0)
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.transport.stop()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the platform's loop from any thread (e.g. ``platform.submit(platform.invite(...))``)."""
        if self.loop is None:
            raise RuntimeError("the platform is not started")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store(
        self, what: str, fn: Callable[..., T], device_id: str, *args: Any, **kwargs: Any
    ) -> T | None:
        """Write to the registry in a thread; one device's writes in the order its messages came (a
        REGISTER and the Expires: 0 right after it must not land the other way round)."""
        if self.store is None:
            return None
        lock = self._store_locks.setdefault(device_id, asyncio.Lock())
        async with lock:
            try:
                return await asyncio.to_thread(fn, device_id, *args, **kwargs)
            except Exception:  # the registry must keep answering devices while the database hiccups
                logger.exception("gb28181 device %s: saving %s failed", device_id, what)
                return None

    # --- queries for the rest of GridPatrol -------------------------------------------------------------
    def device(self, device_id: str) -> DeviceState | None:
        return self.registry.devices.get(device_id)

    def online(self, device_id: str) -> bool:
        state = self.registry.devices.get(device_id)
        return state is not None and state.online

    def channel_of_camera(self, camera_id: int) -> tuple[str, str]:
        """(device ID, channel ID) of a GB camera; blocks on the database (call it in a thread)."""
        found = self.store.channel_of_camera(camera_id) if self.store is not None else None
        if found is None:
            raise DeviceUnavailable(f"camera {camera_id} is not a GB/T 28181 channel")
        return found

    # --- incoming ---------------------------------------------------------------------------------------
    async def _on_message(self, msg: SipMessage, peer: Peer) -> None:
        if not msg.is_request:
            self._on_response(msg)
            return
        method = msg.method
        if method == "REGISTER":
            await self._on_register(msg, peer)
        elif method == "MESSAGE":
            await self._on_manscdp(msg, peer)
        elif method == "BYE":
            await self._on_bye(msg, peer)
        elif method == "ACK":
            return
        elif method in ("OPTIONS", "NOTIFY", "INFO"):
            await self._reply(msg, peer, 200, "OK")
        else:
            await self._reply(
                msg,
                peer,
                405,
                "Method Not Allowed",
                extra=[("Allow", "REGISTER, MESSAGE, BYE, ACK, OPTIONS")],
            )

    async def _reply(
        self,
        request: SipMessage,
        peer: Peer,
        status: int,
        reason: str,
        *,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        resp = response_to(
            request, status, reason, to_tag=new_tag(), extra=[("User-Agent", USER_AGENT), *(extra or [])]
        )
        try:
            await self.transport.send(resp, peer)
        except SipError as err:
            logger.warning("%s: cannot answer %s: %s", peer, request.method, err)

    async def _on_register(self, msg: SipMessage, peer: Peer) -> None:
        device_id = device_id_of(msg)
        if device_id is None or not is_gb_id(device_id):
            await self._reply(msg, peer, 400, "Bad Request (From must name a 20-digit device ID)")
            return
        verdict = self.auth.check(msg, device_id=device_id)
        if verdict in (Verdict.challenge, Verdict.stale):
            challenge = self.auth.challenge(stale=verdict is Verdict.stale)
            await self._reply(msg, peer, 401, "Unauthorized", extra=[("WWW-Authenticate", challenge)])
            return
        if verdict is Verdict.forbidden:
            logger.warning(
                "gb28181 device %s from %s: REGISTER refused (wrong password or realm)", device_id, peer
            )
            await self._reply(msg, peer, 403, "Forbidden")
            return
        expires = register_expires(msg, max_s=self.settings.max_expires_s)
        contact = msg.get("contact")
        extra = [
            ("Date", datetime.now(self.timezone).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]),
            ("Expires", str(expires)),
        ]
        if contact:
            extra.append(("Contact", f"<{addr_uri(contact)}>;expires={expires}"))
        if expires == 0:
            await self._reply(msg, peer, 200, "OK", extra=extra)
            if self.registry.unregister(device_id) is not None:
                logger.info("gb28181 device %s unregistered", device_id)
                self._lost(device_id)
            await self._store("status", self._store_status, device_id, "unregistered")
            return
        now = time.monotonic()
        state = DeviceState(
            device_id=device_id,
            peer=peer,
            domain=uri_host(msg.get("to") or "") or self.settings.domain,
            expires_at=now + expires,
            last_seen=now,
            user_agent=(msg.get("user-agent") or "")[:200],
            contact=contact_peer(contact, transport=peer.transport) if contact else None,
        )
        fresh = self.registry.register(state)
        await self._reply(msg, peer, 200, "OK", extra=extra)
        await self._store("registration", self._store_registered, device_id, state, expires_s=expires)
        if fresh:
            logger.info("gb28181 device %s registered from %s (expires %d s)", device_id, peer, expires)
            for cb in self.on_device_online:
                cb(device_id)
            if self.settings.catalog_on_register:
                self._spawn(self._catalog_and_save(device_id), name=f"gb28181-catalog-{device_id}")

    def _store_registered(self, _device_id: str, state: DeviceState, *, expires_s: int) -> None:
        assert self.store is not None
        self.store.registered(state, expires_s=expires_s)

    def _store_status(self, device_id: str, status: str) -> None:
        assert self.store is not None
        self.store.set_status(device_id, status)

    async def _on_manscdp(self, msg: SipMessage, peer: Peer) -> None:
        sender = device_id_of(msg) or ""
        try:
            doc = manscdp.read(msg.body, content_type=msg.content_type)
        except manscdp.ManscdpError as err:
            logger.warning("gb28181 device %s: unreadable MESSAGE body: %s", sender, err)
            await self._reply(msg, peer, 400, "Bad Request")
            return
        device_id = sender if sender in self.registry.devices else doc.device_id
        known = self.registry.devices.get(device_id)
        if known is not None and known.peer.host != peer.host:
            # MESSAGEs carry no credentials: only the address that registered speaks for the device
            # (a NAT may change the port, not the address), or anyone could redirect its INVITEs
            logger.warning(
                "gb28181 device %s: MESSAGE from %s, not its registered address: refused", device_id, peer
            )
            await self._reply(msg, peer, 403, "Forbidden (not the registered address)")
            return
        was_online = self.online(device_id)
        state = self.registry.seen(device_id, peer, keepalive=doc.cmd_type == "Keepalive")
        if state is None:
            # GB/T 28181: a device the platform does not know must register first
            await self._reply(msg, peer, 403, "Forbidden (not registered)")
            return
        await self._reply(msg, peer, 200, "OK")
        if not was_online:
            state.online = True
            logger.info("gb28181 device %s is back online", device_id)
            await self._store("status", self._store_status, device_id, "online")
            for cb in self.on_device_online:
                cb(device_id)
        if doc.cmd_type == "Keepalive":
            await self._store("keepalive", self._store_keepalive, device_id)
        elif doc.kind == "Response" and doc.cmd_type == "Catalog":
            try:
                part = manscdp.catalog_part(doc)
            except manscdp.ManscdpError as err:
                logger.warning("gb28181 device %s: %s", device_id, err)
                return
            if not self.catalogs.feed(part, sender=device_id):
                logger.info("gb28181 device %s: a catalog nobody asked for (SN %s)", device_id, part.sn)
        else:
            logger.debug("gb28181 device %s: %s/%s ignored", device_id, doc.kind, doc.cmd_type)

    def _store_keepalive(self, device_id: str) -> None:
        assert self.store is not None
        self.store.keepalive(device_id)

    async def _on_bye(self, msg: SipMessage, peer: Peer) -> None:
        dialog = self.dialogs.get(msg.get("call-id", "") or "")
        if dialog is None or dialog.peer.host != peer.host:  # only the device ends its plays
            await self._reply(msg, peer, 481, "Call/Transaction Does Not Exist")
            return
        self.dialogs.pop(dialog.call_id, None)
        await self._reply(msg, peer, 200, "OK")
        logger.info("gb28181 device %s ended the play of channel %s", dialog.device_id, dialog.channel_id)
        dialog.ended.set()
        for cb in self.on_dialog_ended:
            cb(dialog)

    def _on_response(self, msg: SipMessage) -> None:
        if self.transactions.response(msg):
            return
        # a repeated 200 OK to an INVITE: our ACK got lost, send it again
        dialog = self.dialogs.get(msg.get("call-id") or "")
        if dialog is not None and dialog.ack is not None and msg.status == 200:
            self._spawn(self.transport.send(dialog.ack, dialog.peer), name="gb28181-re-ack")

    def _lost(self, device_id: str) -> None:
        for cb in self.on_device_lost:
            try:
                cb(device_id)
            except Exception:
                logger.exception("gb28181 device %s: an on_device_lost callback failed", device_id)

    async def _sweep_loop(self) -> None:
        tick = min(max(self.settings.keepalive_interval_s / 4, 0.05), 5.0)
        while True:
            await asyncio.sleep(tick)
            silent, expired = self.registry.sweep()
            for state in silent:
                logger.warning(
                    "gb28181 device %s is offline: no keepalive for %d intervals",
                    state.device_id,
                    self.settings.keepalive_misses,
                )
                self._lost(state.device_id)
                await self._store("status", self._store_status, state.device_id, "offline")
            for state in expired:
                logger.warning("gb28181 device %s: its registration expired", state.device_id)
                self._lost(state.device_id)
                await self._store("status", self._store_status, state.device_id, "offline")

    # --- outgoing ---------------------------------------------------------------------------------------
    def _via(self, peer: Peer) -> str:
        host = self.transport.local_host_for(peer) or self.settings.advertised_host
        return f"SIP/2.0/{peer.transport.upper()} {host}:{self.port}"

    def _contact(self, peer: Peer) -> str:
        host = self.transport.local_host_for(peer) or self.settings.advertised_host
        return f"<sip:{self.settings.id}@{host}:{self.port}>"

    def _new_request(self, method: str, *, uri: str, to_uri: str, peer: Peer) -> SipMessage:
        msg = SipMessage(method=method, uri=uri)
        msg.headers = [
            ("Via", f"{self._via(peer)};rport;branch={new_branch()}"),
            ("From", f"<{self.sip_uri}>;tag={new_tag()}"),
            ("To", f"<{to_uri}>"),
            ("Call-ID", new_call_id(self.settings.advertised_host)),
            ("CSeq", f"1 {method}"),
            ("Max-Forwards", "70"),
            ("User-Agent", USER_AGENT),
        ]
        return msg

    def _online_state(self, device_id: str) -> DeviceState:
        state = self.registry.devices.get(device_id)
        if state is None:
            raise DeviceUnavailable(f"gb28181 device {device_id} is not registered")
        if not state.online:
            raise DeviceUnavailable(f"gb28181 device {device_id} is offline")
        if state.peer.transport == "tcp" and not self.transport.connected(state.peer) and state.contact:
            # its TCP connection has gone: reach it where its Contact says it listens
            state.peer = state.contact
        return state

    async def query_catalog(self, device_id: str) -> Catalog:
        """Ask a device for its catalog and collect its Response MESSAGEs (until SumNum items, or the
        catalog timeout: then ``Catalog.complete`` is false and the items so far are returned)."""
        state = self._online_state(device_id)
        sn = self.catalogs.next_sn()
        pending = self.catalogs.expect(device_id, sn)
        msg = self._new_request(
            "MESSAGE",
            uri=f"sip:{device_id}@{state.domain}",
            to_uri=f"sip:{device_id}@{state.domain}",
            peer=state.peer,
        )
        msg.headers.append(("Content-Type", manscdp.CONTENT_TYPE))
        msg.body = manscdp.catalog_query(sn=sn, device_id=device_id)
        try:
            answer = await self.transactions.request(
                msg, state.peer, timeout_s=self.settings.request_timeout_s
            )
        except SipError:
            self.catalogs.forget(pending)
            raise
        if answer.status is not None and answer.status >= 300:
            self.catalogs.forget(pending)
            raise RequestFailed(
                f"gb28181 device {device_id}: catalog query answered {answer.status} {answer.reason}",
                status=answer.status,
            )
        return await self.catalogs.wait(pending, timeout_s=self.settings.catalog_timeout_s)

    async def _catalog_and_save(self, device_id: str) -> None:
        try:
            catalog = await self.query_catalog(device_id)
        except (SipError, StreamError) as err:
            logger.warning("gb28181 device %s: catalog query failed: %s", device_id, err)
            return
        if not catalog.complete:
            logger.warning(
                "gb28181 device %s: catalog incomplete (%d of %d items)",
                device_id,
                len(catalog.items),
                catalog.sum_num,
            )
        cameras = await self._store("catalog", self._store_catalog, device_id, catalog)
        logger.info(
            "gb28181 device %s: catalog of %d item(s), %s camera(s)", device_id, len(catalog.items), cameras
        )
        for cb in self.on_catalog:
            cb(catalog)

    def _store_catalog(self, device_id: str, catalog: Catalog) -> int:
        assert self.store is not None
        return self.store.save_catalog(device_id, catalog)

    async def invite(self, device_id: str, channel_id: str, offer_sdp: str) -> Dialog:
        """Play a channel: INVITE with ``offer_sdp``, wait for the 200 OK, ACK. Raises DeviceUnavailable
        (not registered/offline), RequestFailed (the device refused: ``.status``) or TransactionTimeout."""
        state = self._online_state(device_id)
        target = f"sip:{channel_id}@{state.peer.host}:{state.peer.port}"
        msg = self._new_request(
            "INVITE", uri=target, to_uri=f"sip:{channel_id}@{state.domain}", peer=state.peer
        )
        ssrc = m.group(1) if (m := _SSRC_LINE.search(offer_sdp)) else "0000000000"
        msg.headers += [
            ("Contact", self._contact(state.peer)),
            ("Content-Type", "APPLICATION/SDP"),
            # GB/T 28181 Subject: media sender ID:SSRC, media receiver ID:stream serial
            ("Subject", f"{channel_id}:{ssrc},{self.settings.id}:0"),
        ]
        msg.body = offer_sdp.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
        answer = await self.transactions.request(msg, state.peer, timeout_s=self.settings.request_timeout_s)
        assert answer.status is not None
        if answer.status >= 300:
            await self._ack_failure(msg, answer, state.peer)
            raise RequestFailed(
                f"gb28181 device {device_id} channel {channel_id}: INVITE answered {answer.status} {answer.reason}",
                status=answer.status,
            )
        dialog = dialog_from_answer(msg, answer, device_id=device_id, channel_id=channel_id, peer=state.peer)
        dialog.ack = dialog.in_dialog("ACK", via=self._via(state.peer), cseq=dialog.cseq)
        self.dialogs[dialog.call_id] = dialog
        await self.transport.send(dialog.ack, state.peer)
        logger.info("gb28181 device %s channel %s: playing (call %s)", device_id, channel_id, dialog.call_id)
        return dialog

    async def _ack_failure(self, invite: SipMessage, answer: SipMessage, peer: Peer) -> None:
        """RFC 3261 17.1.1.3: the ACK of a failure answer is part of the INVITE transaction (same branch)."""
        ack = SipMessage(method="ACK", uri=invite.uri)
        ack.headers = [
            ("Via", invite.header("via")),
            ("From", invite.header("from")),
            ("To", answer.header("to")),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq[0]} ACK"),
            ("Max-Forwards", "70"),
        ]
        with contextlib.suppress(SipError):
            await self.transport.send(ack, peer)

    async def bye(self, dialog: Dialog) -> None:
        """End a play. The device's answer is awaited but not required: the dialog ends either way."""
        self.dialogs.pop(dialog.call_id, None)
        if dialog.ended.is_set():
            return
        dialog.ended.set()
        if dialog.device_id not in self.registry.devices:
            return  # unregistered or expired: nobody to tell
        msg = dialog.in_dialog("BYE", via=self._via(dialog.peer))
        msg.headers.append(("User-Agent", USER_AGENT))
        try:
            answer = await self.transactions.request(
                msg, dialog.peer, timeout_s=self.settings.request_timeout_s
            )
        except SipError as err:
            logger.warning("gb28181 device %s: BYE of call %s: %s", dialog.device_id, dialog.call_id, err)
            return
        if answer.status is not None and answer.status >= 300:
            logger.info(
                "gb28181 device %s: BYE of call %s answered %s",
                dialog.device_id,
                dialog.call_id,
                answer.status,
            )

    async def reinvite(self, dialog: Dialog) -> Dialog:
        """Media stopped arriving: end the old dialog (best effort) and play the channel again with the
        same offer (a new dialog, which is what devices accept after their side of the media broke)."""
        await self.bye(dialog)
        return await self.invite(dialog.device_id, dialog.channel_id, dialog.offer_sdp)


class PlatformThread:
    """The platform on an event loop of its own thread (``gridpatrol serve``)."""

    def __init__(self, platform: GbPlatform) -> None:
        self.platform = platform
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gb28181", daemon=True)

    def start(self) -> PlatformThread:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.platform.start(), self._loop).result(timeout=10)
        except BaseException:  # the port is taken: nothing keeps running
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            raise
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.platform.stop(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
