"""The GB/T 28181 device registry on SQLite and PostgreSQL: catalogs become cameras placed in the grid
tree, a second catalog updates them without duplicates, a grid set by hand stays, and two catalogs
saved at once (PostgreSQL row locks) leave one camera per channel."""

from __future__ import annotations

import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from models.db.engine import transaction
from models.db.tables import Camera, GbChannel, GridNode
from models.grid import gb28181 as registry
from tests.support import sample

DEVICE = "34020000001180000001"  # an NVR


def channels(n: int, *, grid: str = "G1") -> list[registry.ChannelSpec]:
    lon, lat = sample.point_in(grid)
    return [
        registry.ChannelSpec(channel_id=f"340200000013100000{i:02d}", name=f"通道{i}", lon=lon, lat=lat)
        for i in range(1, n + 1)
    ] + [registry.ChannelSpec(channel_id="34020000002160000001", name="虚拟组织", is_camera=False)]


def grid_of(session: Session, camera_id: int | None) -> str | None:
    cam = session.get(Camera, camera_id)
    assert cam is not None
    node = session.get(GridNode, cam.grid_id) if cam.grid_id else None
    return node.code if node else None


def test_catalog_cameras_follow_the_catalog(seeded: sessionmaker[Session]) -> None:
    with transaction(seeded) as session:
        registry.record_registration(
            session,
            device_id=DEVICE,
            domain="3402000000",
            transport="tcp",
            host="10.0.0.5",
            port=5060,
            user_agent="NVR",
            expires_s=3600,
        )
        report = registry.save_catalog(session, DEVICE, channels(3))
    assert (report.channels, report.cameras_created, report.cameras_updated) == (4, 3, 0)
    with transaction(seeded) as session:
        first = registry.list_channels(session, DEVICE)[0]
        assert grid_of(session, first.camera_id) == "G1"
        cam = session.get(Camera, first.camera_id)
        assert cam is not None and cam.url == f"gb28181://{DEVICE}/{first.channel_id}"
        cam.grid_id = session.scalars(select(GridNode.id).where(GridNode.code == "G3")).one()
        cam.grid_override = True
        # the cameras moved: the new catalog places them in G2, except the one an operator placed by hand
        report = registry.save_catalog(session, DEVICE, channels(3, grid="G2"))
    assert (report.cameras_created, report.cameras_updated) == (0, 3)
    with seeded() as session:
        cams = [c.camera_id for c in registry.list_channels(session, DEVICE) if c.camera_id]
        assert [grid_of(session, c) for c in cams] == ["G3", "G2", "G2"]
        rows = registry.list_devices(session)
        assert [(r.device_id, r.status, r.channels, r.cameras, r.address) for r in rows] == [
            (DEVICE, "online", 4, 3, "10.0.0.5:5060")
        ]
        assert registry.channel_of_camera(session, cams[1]) == (DEVICE, "34020000001310000002")
    with transaction(seeded) as session:
        registry.set_device_status(session, DEVICE, "offline")
    with seeded() as session:
        assert registry.list_devices(session)[0].status == "offline"


def test_catalogs_saved_at_once_leave_one_camera_per_channel(seeded: sessionmaker[Session]) -> None:
    with transaction(seeded) as session:
        registry.record_registration(
            session,
            device_id=DEVICE,
            domain="3402000000",
            transport="udp",
            host="10.0.0.5",
            port=5060,
            user_agent="",
            expires_s=60,
        )
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def save() -> None:
        start.wait()
        try:
            with transaction(seeded) as session:
                registry.save_catalog(session, DEVICE, channels(4))
        except BaseException as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=save) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with seeded() as session:
        assert session.scalar(select(func.count()).select_from(GbChannel)) == 5
        assert (
            session.scalar(select(func.count()).select_from(Camera).where(Camera.url.like("gb28181://%")))
            == 4
        )
