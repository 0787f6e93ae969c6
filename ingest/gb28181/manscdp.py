"""MANSCDP XML bodies (GB/T 28181 annex A): Keepalive notifications, Catalog queries and responses.

Devices write GB2312 about as often as UTF-8, with an XML declaration naming it (or not, or naming the
wrong one). Python's ElementTree refuses multi-byte encodings, so the text is decoded first (declared
charset, then the Content-Type's, then UTF-8, then GB18030, a superset of GB2312 and GBK) and parsed
without its declaration.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from models.errors import GridPatrolError

CONTENT_TYPE = "Application/MANSCDP+xml"
_DECL = re.compile(rb"<\?xml[^>]*\?>", re.IGNORECASE)
_DECL_ENC = re.compile(rb"encoding\s*=\s*[\"']([A-Za-z0-9_-]+)[\"']", re.IGNORECASE)
_CT_ENC = re.compile(r"charset\s*=\s*\"?([A-Za-z0-9_-]+)", re.IGNORECASE)
#: a bare ampersand (device names like "A&B路口" come unescaped from some firmware)
_BARE_AMP = re.compile(r"&(?!(?:[A-Za-z]+|#\d+|#x[0-9A-Fa-f]+);)")


class ManscdpError(GridPatrolError):
    """A body that is not MANSCDP XML the platform can read."""


def _codec(name: str) -> str:
    low = name.lower()
    # GB2312 devices put GBK characters in (rare street names): read every GB charset as GB18030
    return "gb18030" if low in {"gb2312", "gbk", "gb18030", "gb_2312-80"} else low


def decode_body(body: bytes, *, content_type: str = "") -> str:
    """The body's text, without its XML declaration: strict UTF-8 when it is that, else the declared
    charset, the Content-Type's, then GB18030."""
    # Valid UTF-8 with Chinese in it is practically never GB2312 text, while firmware that declares
    # GB2312 and sends UTF-8 is common: strict UTF-8 first, then the declared charset
    candidates: list[str] = ["utf-8"]
    decl = _DECL.search(body[:200])
    if decl and (m := _DECL_ENC.search(decl.group(0))):
        candidates.append(_codec(m.group(1).decode("ascii")))
    if m2 := _CT_ENC.search(content_type):
        candidates.append(_codec(m2.group(1)))
    candidates.append("gb18030")
    for codec in candidates:
        try:
            text = body.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
        return _DECL.sub(b"", text.encode("utf-8"), count=1).decode("utf-8").strip()
    raise ManscdpError("the body is neither UTF-8 nor GB2312")  # unreachable: GB18030 decodes anything


def parse_xml(body: bytes, *, content_type: str = "") -> ET.Element:
    text = decode_body(body, content_type=content_type)
    try:
        return ET.fromstring(text)
    except ET.ParseError:
        try:
            return ET.fromstring(_BARE_AMP.sub("&amp;", text))
        except ET.ParseError as err:
            raise ManscdpError(f"not well-formed XML: {err}") from err


def _text(el: ET.Element | None, tag: str) -> str:
    if el is None:
        return ""
    found = el.find(tag)
    return (found.text or "").strip() if found is not None else ""


@dataclass(frozen=True)
class Manscdp:
    """The envelope every MANSCDP body has: kind (Query, Notify, Response, Control), CmdType, SN, DeviceID."""

    kind: str
    cmd_type: str
    sn: int | None
    device_id: str
    root: ET.Element = field(repr=False, compare=False)


def read(body: bytes, *, content_type: str = "") -> Manscdp:
    root = parse_xml(body, content_type=content_type)
    sn_text = _text(root, "SN")
    try:
        sn = int(sn_text) if sn_text else None
    except ValueError:
        sn = None
    return Manscdp(
        kind=root.tag, cmd_type=_text(root, "CmdType"), sn=sn, device_id=_text(root, "DeviceID"), root=root
    )


@dataclass(frozen=True)
class CatalogItem:
    """One item of a device's catalog: a channel (a camera) or a directory/organisation node."""

    channel_id: str
    name: str
    manufacturer: str = ""
    model: str = ""
    civil_code: str = ""
    address: str = ""
    parent_id: str = ""
    status: str = ""
    lon: float | None = None
    lat: float | None = None

    @property
    def is_video_channel(self) -> bool:
        """GB/T 28181 type code (digits 11-13): 131 camera, 132 IP camera; NVRs list their inputs
        with these. Civil-code or organisation items (shorter IDs, types 2xx) are not cameras."""
        return len(self.channel_id) == 20 and self.channel_id[10:13] in {"131", "132"}


def _coordinate(text: str, *, low: float, high: float) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    # devices that do not know their place send 0.0 (or garbage): no location rather than the Gulf of Guinea
    if value == 0.0 or not low <= value <= high:
        return None
    return value


@dataclass(frozen=True)
class CatalogPart:
    """One Catalog Response MESSAGE: SumNum (items in the whole catalog) and the items it carries."""

    sn: int | None
    device_id: str
    sum_num: int
    items: list[CatalogItem]


def catalog_part(doc: Manscdp) -> CatalogPart:
    if doc.kind != "Response" or doc.cmd_type != "Catalog":
        raise ManscdpError(f"not a Catalog response: {doc.kind}/{doc.cmd_type}")
    try:
        sum_num = int(_text(doc.root, "SumNum") or "0")
    except ValueError as err:
        raise ManscdpError("SumNum is not a number") from err
    items = []
    device_list = doc.root.find("DeviceList")
    for item in device_list.findall("Item") if device_list is not None else []:
        channel_id = _text(item, "DeviceID")
        if not channel_id:
            continue
        items.append(
            CatalogItem(
                channel_id=channel_id,
                name=_text(item, "Name") or channel_id,
                manufacturer=_text(item, "Manufacturer"),
                model=_text(item, "Model"),
                civil_code=_text(item, "CivilCode"),
                address=_text(item, "Address"),
                parent_id=_text(item, "ParentID"),
                status=_text(item, "Status").upper(),
                lon=_coordinate(_text(item, "Longitude"), low=-180, high=180),
                lat=_coordinate(_text(item, "Latitude"), low=-90, high=90),
            )
        )
    return CatalogPart(sn=doc.sn, device_id=doc.device_id, sum_num=sum_num, items=items)


def _xml(root: ET.Element, *, encoding: str) -> bytes:
    body = ET.tostring(root, encoding="unicode")
    codec = _codec(encoding)
    return f'<?xml version="1.0" encoding="{encoding}"?>\r\n{body}\r\n'.encode(codec)


def _element(kind: str, cmd_type: str, sn: int, device_id: str) -> ET.Element:
    root = ET.Element(kind)
    for tag, value in (("CmdType", cmd_type), ("SN", str(sn)), ("DeviceID", device_id)):
        ET.SubElement(root, tag).text = value
    return root


def catalog_query(*, sn: int, device_id: str, encoding: str = "GB2312") -> bytes:
    """``<Query><CmdType>Catalog</CmdType>`` for a device."""
    return _xml(_element("Query", "Catalog", sn, device_id), encoding=encoding)


def keepalive(*, sn: int, device_id: str, encoding: str = "GB2312") -> bytes:
    """A Keepalive notification (what a device sends; tests and cascades use it)."""
    root = _element("Notify", "Keepalive", sn, device_id)
    ET.SubElement(root, "Status").text = "OK"
    return _xml(root, encoding=encoding)


def catalog_response(
    *, sn: int, device_id: str, sum_num: int, items: list[CatalogItem], encoding: str = "GB2312"
) -> bytes:
    """A Catalog Response MESSAGE body (what a device sends; tests build theirs with it)."""
    root = _element("Response", "Catalog", sn, device_id)
    ET.SubElement(root, "SumNum").text = str(sum_num)
    device_list = ET.SubElement(root, "DeviceList", Num=str(len(items)))
    for it in items:
        el = ET.SubElement(device_list, "Item")
        for tag, value in (
            ("DeviceID", it.channel_id),
            ("Name", it.name),
            ("Manufacturer", it.manufacturer),
            ("Model", it.model),
            ("CivilCode", it.civil_code),
            ("Address", it.address),
            ("ParentID", it.parent_id),
            ("Status", it.status or "ON"),
        ):
            ET.SubElement(el, tag).text = value
        if it.lon is not None and it.lat is not None:
            ET.SubElement(el, "Longitude").text = f"{it.lon:.6f}"
            ET.SubElement(el, "Latitude").text = f"{it.lat:.6f}"
    return _xml(root, encoding=encoding)
