"""The GB/T 28181 device registry: devices that register over SIP, their catalog channels, and the
cameras those channels become.

A video channel becomes an ordinary camera (so access, tickets and the walls treat it like any other)
whose stream URL is ``gb28181://<device ID>/<channel ID>``. It is placed into the grid tree by its
longitude/latitude when the catalog gives them (point in polygon), otherwise by its civil code
(行政区划代码) when a grid node carries that code (or a shorter prefix of it); a grid set by hand stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.db.tables import Camera, GbChannel, GbDevice, GridNode, utcnow
from models.grid.credentials import CredentialKeyring, set_camera_secrets, stream_host
from models.grid.geo import GridLocator

SCHEME = "gb28181"
DEVICE_STATUSES = ("online", "offline", "unregistered")


def camera_url(device_id: str, channel_id: str) -> str:
    return f"{SCHEME}://{device_id}/{channel_id}"


def parse_camera_url(url: str) -> tuple[str, str] | None:
    """(device ID, channel ID) of a ``gb28181://DEVICE/CHANNEL`` URL; None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme != SCHEME or not parts.netloc:
        return None
    channel = parts.path.strip("/")
    return (parts.netloc, channel) if channel else None


@dataclass(frozen=True)
class ChannelSpec:
    """One catalog item as the registry stores it."""

    channel_id: str
    name: str
    civil_code: str = ""
    manufacturer: str = ""
    model: str = ""
    address: str = ""
    status: str = ""
    lon: float | None = None
    lat: float | None = None
    #: a video channel (GB/T 28181 type 131/132) becomes a camera; directory items do not
    is_camera: bool = True


@dataclass
class CatalogReport:
    channels: int = 0
    cameras_created: int = 0
    cameras_updated: int = 0


def _device(session: Session, device_id: str, *, create: bool) -> GbDevice | None:
    dev = session.scalars(select(GbDevice).where(GbDevice.device_id == device_id).with_for_update()).first()
    if dev is None and create:
        dev = GbDevice(device_id=device_id)
        session.add(dev)
    return dev


def record_registration(
    session: Session,
    *,
    device_id: str,
    domain: str,
    transport: str,
    host: str,
    port: int,
    user_agent: str,
    expires_s: int,
    now: datetime | None = None,
) -> GbDevice:
    """A REGISTER accepted: the device is online until ``expires_s`` from now."""
    now = now or utcnow()
    dev = _device(session, device_id, create=True)
    assert dev is not None
    dev.domain, dev.transport, dev.host, dev.port = domain[:64], transport, host[:255], port
    dev.user_agent = user_agent[:200]
    dev.status = "online"
    dev.registered_at = now
    dev.expires_at = now + timedelta(seconds=expires_s)
    session.flush()
    return dev


def set_device_status(session: Session, device_id: str, status: str) -> None:
    if status not in DEVICE_STATUSES:
        raise ValueError(f"unknown device status {status!r}")
    dev = _device(session, device_id, create=False)
    if dev is not None:
        dev.status = status
        if status == "unregistered":
            dev.expires_at = None
        session.flush()


def record_keepalive(session: Session, device_id: str, *, now: datetime | None = None) -> None:
    dev = _device(session, device_id, create=False)
    if dev is not None:
        dev.last_keepalive_at = now or utcnow()
        dev.status = "online"
        session.flush()


def _grid_by_civil_code(session: Session, codes: set[str]) -> dict[str, int]:
    """Grid node per civil code: the node whose code is the civil code, or its longest prefix (a
    12-digit village code falls back to its 9-digit town, 6-digit county...)."""
    prefixes = {code[:n] for code in codes for n in range(len(code), 1, -1)}
    if not prefixes:
        return {}
    nodes = dict(session.execute(select(GridNode.code, GridNode.id).where(GridNode.code.in_(prefixes))).all())
    found: dict[str, int] = {}
    for code in codes:
        for n in range(len(code), 1, -1):
            if code[:n] in nodes:
                found[code] = nodes[code[:n]]
                break
    return found


def save_catalog(
    session: Session,
    device_id: str,
    channels: list[ChannelSpec],
    *,
    credentials: CredentialKeyring | None = None,
    now: datetime | None = None,
) -> CatalogReport:
    """Store a device's catalog and create or update the camera of each video channel, inside the
    caller's transaction. Channels missing from this catalog are kept (their cameras carry tickets)."""
    now = now or utcnow()
    report = CatalogReport()
    dev = _device(session, device_id, create=True)
    assert dev is not None
    session.flush()
    dev.catalog_at = now
    existing = {
        ch.channel_id: ch
        for ch in session.scalars(select(GbChannel).where(GbChannel.device_pk == dev.id).with_for_update())
    }
    cameras_wanted = [c for c in channels if c.is_camera]
    located = GridLocator.from_session(session).locate_many(
        [(c.lon, c.lat) for c in cameras_wanted if c.lon is not None and c.lat is not None]
    )
    located_iter = iter(located)
    grid_by_point = {
        c.channel_id: next(located_iter) for c in cameras_wanted if c.lon is not None and c.lat is not None
    }
    grid_by_code = _grid_by_civil_code(session, {c.civil_code for c in cameras_wanted if c.civil_code})
    for spec in channels:
        ch = existing.get(spec.channel_id)
        if ch is None:
            ch = GbChannel(device_pk=dev.id, channel_id=spec.channel_id)
            session.add(ch)
        ch.name, ch.civil_code, ch.address = spec.name[:200], spec.civil_code[:32], spec.address[:255]
        ch.manufacturer, ch.model, ch.status = spec.manufacturer[:200], spec.model[:200], spec.status[:16]
        ch.lon, ch.lat = spec.lon, spec.lat
        report.channels += 1
        if not spec.is_camera:
            continue
        cam = session.get(Camera, ch.camera_id) if ch.camera_id is not None else None
        if cam is None:
            cam = Camera(name=camera_name(spec), enabled=True)
            session.add(cam)
            report.cameras_created += 1
        else:
            report.cameras_updated += 1
        url = camera_url(device_id, spec.channel_id)
        set_camera_secrets(cam, credentials, url=url)
        cam.stream_host = stream_host(url)
        if spec.lon is not None and spec.lat is not None:
            cam.lon, cam.lat = spec.lon, spec.lat
        if not cam.grid_override:
            hit = grid_by_point.get(spec.channel_id)
            if hit is not None:
                cam.grid_id = hit[0]
            elif spec.civil_code in grid_by_code:
                cam.grid_id = grid_by_code[spec.civil_code]
        session.flush()
        ch.camera_id = cam.id
    session.flush()
    return report


def camera_name(spec: ChannelSpec) -> str:
    """Camera names are unique: the channel's name with its ID."""
    suffix = f" [{spec.channel_id}]"
    return (spec.name or "GB")[: 200 - len(suffix)] + suffix


def channel_of_camera(session: Session, camera_id: int) -> tuple[str, str] | None:
    row = session.execute(
        select(GbDevice.device_id, GbChannel.channel_id)
        .join(GbChannel, GbChannel.device_pk == GbDevice.id)
        .where(GbChannel.camera_id == camera_id)
    ).first()
    return (row[0], row[1]) if row else None


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    domain: str
    transport: str
    address: str
    status: str
    registered_at: datetime | None
    last_keepalive_at: datetime | None
    channels: int
    cameras: int
    user_agent: str


def list_devices(session: Session) -> list[DeviceRow]:
    """Every device with its channel and camera counts, by device ID."""
    counts = dict(
        session.execute(
            select(GbChannel.device_pk, func.count(GbChannel.id)).group_by(GbChannel.device_pk)
        ).all()
    )
    cams = dict(
        session.execute(
            select(GbChannel.device_pk, func.count(GbChannel.camera_id)).group_by(GbChannel.device_pk)
        ).all()
    )
    rows = []
    for dev in session.scalars(select(GbDevice).order_by(GbDevice.device_id)):
        rows.append(
            DeviceRow(
                device_id=dev.device_id,
                domain=dev.domain,
                transport=dev.transport,
                address=f"{dev.host}:{dev.port}" if dev.host else "",
                status=dev.status,
                registered_at=dev.registered_at,
                last_keepalive_at=dev.last_keepalive_at,
                channels=counts.get(dev.id, 0),
                cameras=cams.get(dev.id, 0),
                user_agent=dev.user_agent,
            )
        )
    return rows


def list_channels(session: Session, device_id: str) -> list[GbChannel]:
    return list(
        session.scalars(
            select(GbChannel)
            .join(GbDevice, GbChannel.device_pk == GbDevice.id)
            .where(GbDevice.device_id == device_id)
            .order_by(GbChannel.channel_id)
        )
    )
