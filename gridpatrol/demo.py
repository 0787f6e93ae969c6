"""``gridpatrol demo``: a ready-to-look-at installation with a small district, cameras and users.

Everything lives under ``<data dir>/demo`` so the demo never touches a real database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridpatrol.democlip import LeftObject, write_clip, zones_document
from models.db.tables import Camera, Role, User
from models.grid.cameras import CameraSpec, register_cameras
from models.grid.tree import import_grids
from models.grid.zones import save_zones
from models.identity.users import add_user

LON0, LAT0, CELL = 118.70, 32.10, 0.01
DEMO_PASSWORD = "gridpatrol-demo"


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: Role
    grids: tuple[str, ...]
    display_name: str


DEMO_USERS = (
    DemoUser("admin", Role.admin, (), "系统管理员"),
    DemoUser("operator", Role.operator, (), "指挥中心值班员"),
    DemoUser("street-taishan", Role.manager, ("S-TS",), "泰山街道网格中心"),
    DemoUser("leader-qb1", Role.grid_leader, ("G-QB1",), "桥北第一网格网格长"),
    DemoUser("leader-qb2", Role.grid_leader, ("G-QB2",), "桥北第二网格网格长"),
    DemoUser("leader-np1", Role.grid_leader, ("G-NP1",), "南浦第一网格网格长"),
)


def _cell(col: int, row: int, cols: int = 1, rows: int = 1) -> dict[str, Any]:
    x0, y0 = LON0 + col * CELL, LAT0 + row * CELL
    x1, y1 = x0 + cols * CELL, y0 + rows * CELL
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def demo_tree() -> dict[str, Any]:
    nodes = [
        ("D-JB", "江北新区", "district", None, _cell(0, 0, 4, 2)),
        ("S-TS", "泰山街道", "street", "D-JB", _cell(0, 0, 2, 2)),
        ("S-DS", "顶山街道", "street", "D-JB", _cell(2, 0, 2, 2)),
        ("C-QB", "桥北社区", "community", "S-TS", _cell(0, 0, 2, 2)),
        ("C-NP", "南浦社区", "community", "S-DS", _cell(2, 0, 2, 2)),
        ("G-QB1", "桥北第一网格", "grid", "C-QB", _cell(0, 0, 1, 2)),
        ("G-QB2", "桥北第二网格", "grid", "C-QB", _cell(1, 0, 1, 2)),
        ("G-NP1", "南浦第一网格", "grid", "C-NP", _cell(2, 0, 2, 2)),
    ]
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"code": code, "name": name, "kind": kind, "parent_code": parent},
                "geometry": geometry,
            }
            for code, name, kind, parent, geometry in nodes
        ],
    }


#: name, position in grid cells from the district's corner, when a cart is left in the fire lane (s)
DEMO_SPOTS = [
    ("桥北路口-东", 0.3, 0.5, (12.0, 70.0)),
    ("桥北农贸市场", 0.6, 1.2, None),
    ("浦珠路消防通道", 1.4, 0.4, (25.0, 95.0)),
    ("南浦广场", 2.8, 1.0, None),
    ("南浦小区北门", 3.5, 1.6, (40.0, 100.0)),
]


def demo_cameras(clips_dir: Path) -> list[CameraSpec]:
    """Simulated cameras: generated street clips played in real time, in a loop, as camera streams."""
    specs = []
    for i, (name, dx, dy, left) in enumerate(DEMO_SPOTS, start=1):
        clip = clips_dir / f"cam{i}.mp4"
        if not clip.is_file():
            write_clip(clip, seconds=120, left=LeftObject(*left) if left else None)
        specs.append(CameraSpec(name=name, url=f"file://{clip.resolve()}", lon=LON0 + dx * CELL, lat=LAT0 + dy * CELL))
    return specs


def prepare_demo(session: Session, demo_dir: Path) -> bool:
    """Load the demo data once (cameras, zones, users); returns False when it was already there."""
    if session.scalar(select(User.id).where(User.username == "admin")) is not None:
        return False
    import_grids(session, demo_tree())
    register_cameras(session, demo_cameras(demo_dir / "clips"))
    for cam in session.scalars(select(Camera)):
        save_zones(session, cam.id, zones_document(dwell_s=8), author=None, channel="cli")
    for u in DEMO_USERS:
        add_user(
            session,
            username=u.username,
            role=u.role,
            password=DEMO_PASSWORD,
            grid_codes=list(u.grids),
            display_name=u.display_name,
        )
    return True
