"""SIP and MANSCDP as devices write them: compact headers, TCP framing, Digest over the ``uri=`` the
device chose, GB2312 bodies, catalogs split over several MESSAGEs."""

from __future__ import annotations

import asyncio

import pytest

from ingest.gb28181 import manscdp
from ingest.gb28181.catalog import CatalogCollector
from ingest.gb28181.registrar import DigestAuth, Verdict, contact_peer, digest_response, register_expires
from ingest.gb28181.sip import SipError, SipMessage, frame_length, parse, response_to, tag_of, uri_user
from ingest.gb28181.transport import Peer

DEVICE = "34020000001320000001"
REGISTER = (
    "REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
    "v: SIP/2.0/UDP 192.168.1.64:5060;rport;branch=z9hG4bK1\r\n"
    'f: "东门" <sip:34020000001320000001@3402000000>;tag=abc\r\n'
    "t: <sip:34020000001320000001@3402000000>\r\n"
    "i: 77@192.168.1.64\r\n"
    "CSeq: 1 REGISTER\r\n"
    "m: <sip:34020000001320000001@192.168.1.64:5060>;expires=120\r\n"
    "Expires: 3600\r\n"
    "l: 0\r\n\r\n"
).encode()


def test_compact_headers_are_read_as_their_long_names() -> None:
    msg = parse(REGISTER)
    assert (msg.method, msg.call_id, msg.cseq) == ("REGISTER", "77@192.168.1.64", (1, "REGISTER"))
    assert uri_user(msg.header("from")) == DEVICE
    assert tag_of(msg.header("From")) == "abc"
    assert register_expires(msg, max_s=3600) == 120  # Contact's expires= wins over Expires:
    assert contact_peer(msg.header("contact"), transport="tcp") == Peer("tcp", "192.168.1.64", 5060)
    resp = parse(response_to(msg, 200, "OK", to_tag="xyz").encode())
    assert resp.status == 200 and tag_of(resp.header("to")) == "xyz" and resp.call_id == msg.call_id


def test_tcp_framing_cuts_messages_at_their_content_length() -> None:
    body = manscdp.keepalive(sn=1, device_id=DEVICE)
    one = SipMessage(method="MESSAGE", uri="sip:a@b", headers=[("Call-ID", "1")], body=body).encode()
    stream = b"\r\n\r\n" + one + one[:20]
    assert frame_length(stream) == -4  # keepalive CRLFs first
    stream = stream[4:]
    assert frame_length(stream) == len(one)
    assert parse(stream[: len(one)]).body == body
    assert frame_length(stream[len(one) :]) is None  # the second message is not whole yet


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"HELLO\r\n\r\n", "not a SIP start line"),
        (b"MESSAGE sip:a@b SIP/2.0\r\nno colon here\r\n\r\n", "not a SIP header line"),
        (b"SIP/2.0 abc OK\r\n\r\n", "not a SIP status"),
    ],
)
def test_garbage_is_refused_with_the_reason(data: bytes, error: str) -> None:
    with pytest.raises(SipError, match=error):
        parse(data)


def _authorized(auth: DigestAuth, *, uri: str, password: str, username: str = DEVICE) -> SipMessage:
    msg = parse(REGISTER)
    nonce = auth.nonce()
    response = digest_response(
        username=username,
        realm="3402000000",
        password=password,
        method="REGISTER",
        uri=uri,
        nonce=nonce,
        qop="auth",
        nc="00000001",
        cnonce="c0ffee",
    )
    msg.set(
        "Authorization",
        f'Digest username="{username}", realm="3402000000", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"',
    )
    return msg


def test_digest_is_checked_over_the_uri_the_device_named() -> None:
    auth = DigestAuth(realm="3402000000", password="right-pass", nonce_ttl_s=60)
    # the uri= is not the Request-URI (sip:34020000002000000001@3402000000): devices differ here
    assert (
        auth.check(_authorized(auth, uri="sip:3402000000", password="right-pass"), device_id=DEVICE)
        is Verdict.ok
    )
    assert (
        auth.check(_authorized(auth, uri="sip:3402000000", password="wrong-pass"), device_id=DEVICE)
        is Verdict.forbidden
    )
    # the camera's "SIP 用户认证 ID" may differ from its device ID: the Digest is checked with the name it gives
    other = _authorized(auth, uri="sip:3402000000", password="right-pass", username="auth-id-7")
    assert auth.check(other, device_id=DEVICE) is Verdict.ok
    assert auth.check(parse(REGISTER), device_id=DEVICE) is Verdict.challenge
    challenge = auth.challenge()
    assert challenge.startswith('Digest realm="3402000000"') and 'qop="auth"' in challenge


def test_gb2312_bodies_are_decoded_by_their_declaration() -> None:
    item = manscdp.CatalogItem(channel_id="34020000001310000001", name="东门路口&解放路", lon=118.7, lat=32.1)
    body = manscdp.catalog_response(sn=7, device_id=DEVICE, sum_num=1, items=[item])
    assert body.startswith(b'<?xml version="1.0" encoding="GB2312"?>')
    assert "东门".encode("gb2312") in body
    part = manscdp.catalog_part(manscdp.read(body))
    assert part.items[0].name == "东门路口&解放路" and part.items[0].lon == pytest.approx(118.7)
    # firmware that declares GB2312, sends UTF-8 and leaves '&' bare
    sloppy = body.decode("gb18030").replace("&amp;", "&").encode("utf-8")
    assert manscdp.catalog_part(manscdp.read(sloppy)).items[0].name == "东门路口&解放路"


def test_a_catalog_in_several_messages_is_complete_at_sumnum() -> None:
    async def scenario() -> tuple[bool, int]:
        collector = CatalogCollector()
        pending = collector.expect(DEVICE, 5)
        for n in (1, 2, 2, 3):  # item 2 arrives twice
            item = manscdp.CatalogItem(channel_id=f"3402000000131000000{n}", name=f"ch{n}")
            body = manscdp.catalog_response(sn=5, device_id=DEVICE, sum_num=3, items=[item], encoding="UTF-8")
            assert collector.feed(manscdp.catalog_part(manscdp.read(body)), sender=DEVICE)
        catalog = await collector.wait(pending, timeout_s=1)
        return catalog.complete, len(catalog.items)

    assert asyncio.run(scenario()) == (True, 3)


def test_video_channels_are_told_from_directory_items() -> None:
    assert manscdp.CatalogItem(channel_id="34020000001310000001", name="cam").is_video_channel
    assert manscdp.CatalogItem(channel_id="34020000001320000001", name="ipc").is_video_channel
    assert not manscdp.CatalogItem(channel_id="34020000002150000001", name="group").is_video_channel
    assert not manscdp.CatalogItem(channel_id="340200", name="civil code").is_video_channel
