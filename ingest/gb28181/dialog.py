"""Client transactions (RFC 3261 17.1) and the platform's INVITE dialogs: INVITE, ACK, BYE.

Over UDP a request is retransmitted (T1 = 0.5 s, doubling, at most T2 = 4 s) until the device answers;
an INVITE stops at the first provisional answer and waits for the final one. A device that repeats its
200 OK (our ACK was lost) gets the ACK again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ingest.gb28181.sip import (
    SipError,
    SipMessage,
    addr_uri,
    new_branch,
    tag_of,
    via_params,
)
from ingest.gb28181.transport import Peer

logger = logging.getLogger(__name__)

T1_S = 0.5
T2_S = 4.0

Send = Callable[[SipMessage, Peer], Awaitable[None]]


class TransactionTimeout(SipError):
    """The device never gave a final answer."""


class RequestFailed(SipError):
    """The device answered with a failure status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Pending:
    method: str
    future: asyncio.Future[SipMessage]
    provisional: asyncio.Event = field(default_factory=asyncio.Event)


class ClientTransactions:
    """Requests the platform sent, matched to their answers by the Via branch and the CSeq method."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending: dict[tuple[str, str], _Pending] = {}

    async def request(self, msg: SipMessage, peer: Peer, *, timeout_s: float) -> SipMessage:
        """Send ``msg`` (its top Via carries the branch) and return the final response."""
        branch = via_params(msg.header("via")).get("branch", "")
        method = msg.method or ""
        key = (branch, method)
        pending = _Pending(method, asyncio.get_running_loop().create_future())
        self._pending[key] = pending
        try:
            await self._send(msg, peer)
            if peer.transport == "udp":
                resend = asyncio.get_running_loop().create_task(self._retransmit(msg, peer, pending))
            else:
                resend = None
            try:
                return await asyncio.wait_for(asyncio.shield(pending.future), timeout=timeout_s)
            except TimeoutError as err:
                raise TransactionTimeout(f"{method} to {peer}: no final answer in {timeout_s:g} s") from err
            finally:
                if resend is not None:
                    resend.cancel()
        finally:
            self._pending.pop(key, None)

    async def _retransmit(self, msg: SipMessage, peer: Peer, pending: _Pending) -> None:
        interval = T1_S
        while not pending.future.done():
            await asyncio.sleep(interval)
            if pending.future.done() or (pending.method == "INVITE" and pending.provisional.is_set()):
                return
            try:
                await self._send(msg, peer)
            except SipError as err:
                logger.warning("%s: retransmitting %s failed: %s", peer, pending.method, err)
            interval = min(interval * 2, T2_S)

    def response(self, msg: SipMessage) -> bool:
        """A response arrived; True when it belonged to a pending request."""
        via = msg.get("via")
        if via is None:
            return False
        try:
            _, method = msg.cseq
        except SipError:
            return False
        pending = self._pending.get((via_params(via).get("branch", ""), method))
        if pending is None:
            return False
        assert msg.status is not None
        if msg.status < 200:
            pending.provisional.set()
        elif not pending.future.done():
            pending.future.set_result(msg)
        return True


@dataclass
class Dialog:
    """A live-play session with one channel, after the device's 200 OK and our ACK."""

    device_id: str
    channel_id: str
    call_id: str
    local_tag: str
    remote_tag: str
    #: the device's Contact: where in-dialog requests (BYE) go
    remote_target: str
    peer: Peer
    local_uri: str
    remote_uri: str
    cseq: int
    offer_sdp: str
    answer_sdp: str
    #: set when the dialog ended (our BYE, or the device's)
    ended: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    ack: SipMessage | None = field(default=None, repr=False)

    def in_dialog(
        self, method: str, *, via: str, cseq: int | None = None, contact: str | None = None
    ) -> SipMessage:
        """A request inside this dialog (ACK keeps the INVITE's CSeq number, others take the next one)."""
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        msg = SipMessage(method=method, uri=self.remote_target)
        msg.headers = [
            ("Via", f"{via};rport;branch={new_branch()}"),
            ("From", f"<{self.local_uri}>;tag={self.local_tag}"),
            ("To", f"<{self.remote_uri}>;tag={self.remote_tag}"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Max-Forwards", "70"),
        ]
        if contact:
            msg.headers.append(("Contact", contact))
        return msg


def dialog_from_answer(
    invite: SipMessage,
    answer: SipMessage,
    *,
    device_id: str,
    channel_id: str,
    peer: Peer,
) -> Dialog:
    remote_tag = tag_of(answer.header("to"))
    if not remote_tag:
        raise SipError(f"{device_id}: the 200 OK to INVITE has no To tag")
    local_tag = tag_of(invite.header("from")) or ""
    contact = answer.get("contact")
    return Dialog(
        device_id=device_id,
        channel_id=channel_id,
        call_id=invite.call_id,
        local_tag=local_tag,
        remote_tag=remote_tag,
        remote_target=addr_uri(contact) if contact else invite.uri or "",
        peer=peer,
        local_uri=addr_uri(invite.header("from")),
        remote_uri=addr_uri(invite.header("to")),
        cseq=invite.cseq[0],
        offer_sdp=invite.body.decode("utf-8", errors="replace"),
        answer_sdp=answer.body.decode("utf-8", errors="replace"),
    )
