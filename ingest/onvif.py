"""ONVIF: describe a device (onvif-zeep-async) and find devices with a raw WS-Discovery Probe.

``describe(address, user, password)`` returns a :class:`DeviceDescription`: device information,
media profiles (resolution, codec, frame rate), a stream URI per profile (the largest profile is the
main stream for viewing, the next lower resolution the sub-stream for analysis) and a snapshot URI. Each
capability is probed on its own and a missing one is recorded in ``missing`` instead of failing
the whole call (cameras are quirky; Home Assistant's ONVIF integration does the same). Only an
unreachable device or refused credentials raise.

``discover(timeout_s)`` multicasts one WS-Discovery Probe (UDP 239.255.255.250:3702, TTL 1: the
local segment only) and parses the ProbeMatch answers' XAddrs. It is a raw socket rather than the
``WSDiscovery`` library, which found nothing on loopback.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp
import zeep.exceptions
from onvif import ONVIFCamera

from models.errors import CameraError
from models.secrets import redact_url

logger = logging.getLogger(__name__)

WS_DISCOVERY_ADDR = ("239.255.255.250", 3702)
_AUTH_HINTS = ("not authorized", "notauthorized", "unauthorized", "authority failure", "401")


class CameraAuthError(CameraError):
    """The device refused the credentials."""


@dataclass(frozen=True, slots=True)
class MediaProfile:
    token: str
    name: str | None
    encoding: str | None  # H264, H265, JPEG...
    resolution_wh: tuple[int, int] | None
    fps: float | None
    stream_uri: str | None  # as the device gives it (usually without credentials)
    snapshot_uri: str | None


@dataclass(frozen=True, slots=True)
class DeviceDescription:
    host: str
    port: int
    manufacturer: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    serial_number: str | None = None
    hardware_id: str | None = None
    profiles: list[MediaProfile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # capabilities that failed, with the reason

    @property
    def main_profile(self) -> MediaProfile | None:
        """The largest profile with a stream URI: the main stream (主码流) people watch."""
        usable = [p for p in self.profiles if p.stream_uri]
        return max(usable, key=_pixels, default=None)

    @property
    def sub_profile(self) -> MediaProfile | None:
        """The profile with the next lower resolution than the main one: the sub-stream (子码流) detectors
        read. None when every profile has the main stream's size (a camera with one stream). Cameras
        with a third stream (Hikvision, Dahua) list it lower still: the second is the usual sub-stream."""
        main = self.main_profile
        if main is None:
            return None
        lower = [p for p in self.profiles if p.stream_uri and _pixels(p) < _pixels(main)]
        return max(lower, key=_pixels, default=None)

    @property
    def analysis_profile(self) -> MediaProfile | None:
        """What the worker analyses by default: the sub-stream, else the main stream."""
        return self.sub_profile or self.main_profile

    @property
    def viewing_profile(self) -> MediaProfile | None:
        return self.main_profile

    @property
    def snapshot_uri(self) -> str | None:
        best = self.viewing_profile
        if best is not None and best.snapshot_uri:
            return best.snapshot_uri
        return next((p.snapshot_uri for p in self.profiles if p.snapshot_uri), None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["main_uri"] = self.main_profile.stream_uri if self.main_profile else None
        data["sub_uri"] = self.sub_profile.stream_uri if self.sub_profile else None
        data["analysis_uri"] = self.analysis_profile.stream_uri if self.analysis_profile else None
        data["viewing_uri"] = data["main_uri"]
        data["snapshot_uri"] = self.snapshot_uri
        return data


def _pixels(profile: MediaProfile) -> int:
    return profile.resolution_wh[0] * profile.resolution_wh[1] if profile.resolution_wh else 0


def with_credentials(uri: str, user: str, password: str) -> str:
    """``uri`` with ``user:password@`` (percent-encoded) in it, for registering an RTSP source."""
    if not user:
        return uri
    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    auth = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return urlunsplit((parts.scheme, auth + host, parts.path, parts.query, parts.fragment))


def parse_address(address: str) -> tuple[str, int]:
    """``http://host:port/...``, ``host:port`` or ``host`` (port 80) to (host, port)."""
    if "://" not in address:
        address = "http://" + address
    parts = urlsplit(address)
    if not parts.hostname:
        raise CameraError(f"not an ONVIF address: {redact_url(address)}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def _is_auth_error(err: BaseException) -> bool:
    text = f"{err} {getattr(err, 'code', '')} {getattr(err, 'subcodes', '')}".lower()
    return any(hint in text for hint in _AUTH_HINTS)


async def _probe(what: str, missing: list[str], coro: Any, timeout_s: float) -> Any:
    """Await one capability; a fault or timeout is recorded in ``missing`` and gives None."""
    try:
        return await asyncio.wait_for(coro, timeout_s)
    except zeep.exceptions.Fault as err:
        if _is_auth_error(err):
            raise CameraAuthError(f"{what}: the device refused the credentials ({err})") from err
        missing.append(f"{what}: {err}")
    except (TimeoutError, zeep.exceptions.Error, aiohttp.ClientError, AttributeError, KeyError, ValueError) as err:
        missing.append(f"{what}: {type(err).__name__}: {err}")
    return None


async def describe_async(
    address: str, user: str = "", password: str = "", *, timeout_s: float = 10.0
) -> DeviceDescription:
    """Describe the ONVIF device at ``address`` (see the module docstring)."""
    host, port = parse_address(address)
    # onvif-zeep-async wants "" rather than None for "no credentials".
    cam = ONVIFCamera(host, port, user or "", password or "")
    missing: list[str] = []
    try:
        try:
            await asyncio.wait_for(cam.update_xaddrs(), timeout_s)
        except zeep.exceptions.Fault as err:
            if _is_auth_error(err):
                raise CameraAuthError(f"{host}:{port}: the device refused the credentials ({err})") from err
            missing.append(f"services: {err}")  # fall back to the default service addresses
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise CameraError(f"{host}:{port}: ONVIF device unreachable ({type(err).__name__}: {err})") from err
        info = await _probe("device_information", missing, _device_information(cam), timeout_s)
        media = await _probe("media_service", missing, cam.create_media_service(), timeout_s)
        profiles: list[MediaProfile] = []
        if media is not None:
            raw = await _probe("profiles", missing, media.GetProfiles(), timeout_s) or []
            for prof in raw:
                profiles.append(await _profile(media, prof, missing, timeout_s))
        info = info or {}
        return DeviceDescription(
            host=host,
            port=port,
            manufacturer=info.get("Manufacturer"),
            model=info.get("Model"),
            firmware_version=info.get("FirmwareVersion"),
            serial_number=info.get("SerialNumber"),
            hardware_id=info.get("HardwareId"),
            profiles=profiles,
            missing=missing,
        )
    finally:
        await cam.close()


async def _device_information(cam: ONVIFCamera) -> dict[str, Any]:
    devicemgmt = await cam.create_devicemgmt_service()
    result = await devicemgmt.GetDeviceInformation()
    return {k: getattr(result, k, None) for k in ("Manufacturer", "Model", "FirmwareVersion", "SerialNumber", "HardwareId")}


async def _profile(media: Any, prof: Any, missing: list[str], timeout_s: float) -> MediaProfile:
    token = str(prof.token)
    enc = getattr(prof, "VideoEncoderConfiguration", None)
    res = getattr(enc, "Resolution", None)
    rate = getattr(getattr(enc, "RateControl", None), "FrameRateLimit", None)
    stream = await _probe(
        f"stream_uri[{token}]",
        missing,
        media.GetStreamUri(
            {"StreamSetup": {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}, "ProfileToken": token}
        ),
        timeout_s,
    )
    snapshot = await _probe(f"snapshot_uri[{token}]", missing, media.GetSnapshotUri({"ProfileToken": token}), timeout_s)
    return MediaProfile(
        token=token,
        name=getattr(prof, "Name", None),
        encoding=getattr(enc, "Encoding", None),
        resolution_wh=(int(res.Width), int(res.Height)) if res is not None else None,
        fps=float(rate) if rate else None,
        stream_uri=getattr(stream, "Uri", None),
        snapshot_uri=getattr(snapshot, "Uri", None),
    )


def describe(address: str, user: str = "", password: str = "", *, timeout_s: float = 10.0) -> DeviceDescription:
    """Blocking :func:`describe_async` for the CLI (not from inside a running event loop)."""
    return asyncio.run(describe_async(address, user, password, timeout_s=timeout_s))


# -- WS-Discovery ----------------------------------------------------------------------------------

_NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
}

_PROBE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<s:Envelope xmlns:s="{s}" xmlns:a="{a}" xmlns:d="{d}" xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
    "<s:Header><a:MessageID>{mid}</a:MessageID>"
    '<a:To s:mustUnderstand="true">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>'
    '<a:Action s:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>'
    "</s:Header><s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body></s:Envelope>"
)


@dataclass(frozen=True, slots=True)
class DiscoveredDevice:
    endpoint: str  # the device's stable id (urn:uuid:...)
    xaddrs: list[str]  # device service URLs, e.g. http://192.0.2.7/onvif/device_service
    scopes: list[str]
    types: list[str]
    name: str | None  # from the onvif://www.onvif.org/name/... scope
    hardware: str | None  # from the .../hardware/... scope
    sender: str  # IP address the answer came from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_probe_matches(payload: bytes, *, relates_to: str | None, sender: str) -> list[DiscoveredDevice]:
    """The ProbeMatch entries of one WS-Discovery answer (empty for anything else)."""
    try:
        root = ET.fromstring(payload)
    except ET.ParseError:
        return []
    related = root.findtext("s:Header/a:RelatesTo", default=None, namespaces=_NS)
    if relates_to is not None and related is not None and related.strip() != relates_to:
        return []
    found = []
    # Standard answers wrap ProbeMatch in ProbeMatches; ipycam 1.3 sends a bare ProbeMatch.
    for match in root.iter(f"{{{_NS['d']}}}ProbeMatch"):
        scopes = _split_scopes(match.findtext("d:Scopes", default="", namespaces=_NS) or "")
        found.append(
            DiscoveredDevice(
                # wsa:EndpointReference per the spec; ipycam puts it in the discovery namespace
                endpoint=(match.findtext(".//a:Address", default="", namespaces=_NS) or "").strip(),
                xaddrs=(match.findtext("d:XAddrs", default="", namespaces=_NS) or "").split(),
                scopes=scopes,
                types=(match.findtext("d:Types", default="", namespaces=_NS) or "").split(),
                name=_scope(scopes, "name"),
                hardware=_scope(scopes, "hardware"),
                sender=sender,
            )
        )
    return found


def _split_scopes(text: str) -> list[str]:
    """Scopes are space-separated URIs; a token without ``://`` continues the previous scope
    (ipycam puts the camera name unescaped, spaces included, into its name scope)."""
    scopes: list[str] = []
    for token in text.split():
        if "://" not in token and scopes:
            scopes[-1] += " " + token
        else:
            scopes.append(token)
    return scopes


def _scope(scopes: list[str], key: str) -> str | None:
    prefix = f"onvif://www.onvif.org/{key}/"
    for scope in scopes:
        if scope.startswith(prefix):
            return unquote(scope[len(prefix) :])
    return None


def discover(timeout_s: float = 3.0, *, interface_ip: str | None = None) -> list[DiscoveredDevice]:
    """Multicast a Probe and collect ProbeMatches for ``timeout_s`` seconds, one entry per device."""
    message_id = f"urn:uuid:{uuid.uuid4()}"
    probe = _PROBE.format(mid=message_id, **_NS).encode()
    found: dict[str, DiscoveredDevice] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as sock:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        if interface_ip:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface_ip))
        sock.bind((interface_ip or "", 0))
        deadline = time.monotonic() + timeout_s
        for _ in range(2):  # UDP: send twice, answers are deduplicated by endpoint
            sock.sendto(probe, WS_DISCOVERY_ADDR)
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            try:
                payload, (sender, _port) = sock.recvfrom(65535)
            except TimeoutError:
                break
            for device in parse_probe_matches(payload, relates_to=message_id, sender=sender):
                found.setdefault(device.endpoint or ",".join(device.xaddrs), device)
    logger.info("discovery: %d ONVIF device(s) answered in %.1fs", len(found), timeout_s)
    return list(found.values())
