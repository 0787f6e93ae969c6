"""``gridpatrol demo``: a ready-to-look-at installation with a small district, cameras and users.

Everything lives under ``<data dir>/demo`` so the demo never touches a real database. The cameras take
the path real ones take: each clip is served by the RTSP gateway's replay (``/replay/camN``) and every
camera's URL points there with the credential of a service user (``demo-feed``, a fresh random password
at each start), so the worker reads RTSP like from any camera and the live view shows the same stream
the detectors see. The clips are
timed against the demo's ticket settings (``DEMO_VERIFY_CLEAR_S``): one camera's cart stays away far
longer than the verification time (its resolved ticket is verified), the market's stall comes back
well within it (its resolved ticket is reopened). The README's walkthrough follows these cameras.
"""

from __future__ import annotations

import secrets
import shlex
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from gridpatrol.democlip import Crowd, LeftObject, transcode_clip, write_clip, zones_document
from models.db.tables import Camera, Role, User
from models.errors import GridPatrolError
from models.grid.cameras import CameraSpec, register_cameras
from models.grid.credentials import set_camera_secrets
from models.grid.tree import import_grids
from models.grid.zones import save_zones
from models.identity.passwords import hash_password, rtsp_ha1
from models.identity.users import add_user, find_user
from models.tickets.categories import DEFAULT_CATEGORIES, TicketSettings

LON0, LAT0, CELL = 118.70, 32.10, 0.01
DEMO_PASSWORD = "gridpatrol-demo"
#: bumped whenever the demo's data or clips change: an older demo folder is refused with a hint
DEMO_VERSION = "3"
#: the service user whose credential is in the cameras' URLs (it reads the gateway's replays)
DEMO_FEED_USER = "demo-feed"
#: every clip loops after this many seconds
DEMO_CLIP_S = 120.0
#: seconds a resolved camera ticket's zone must stay clear to be verified; the clips are timed around it
DEMO_VERIFY_CLEAR_S = 30
DWELL_S = 8.0


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: Role
    grids: tuple[str, ...]
    display_name: str


DEMO_USERS = (
    DemoUser("admin", Role.admin, (), "系统管理员"),
    DemoUser("operator", Role.operator, (), "指挥中心值班员"),
    DemoUser("district-jiangbei", Role.manager, ("D-JB",), "江北新区网格中心"),
    DemoUser("street-taishan", Role.manager, ("S-TS",), "泰山街道网格中心"),
    DemoUser("street-dingshan", Role.manager, ("S-DS",), "顶山街道网格中心"),
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


@dataclass(frozen=True)
class DemoSpot:
    """A simulated camera: where it stands (grid cells from the district's corner) and what its clip shows."""

    name: str
    dx: float
    dy: float
    left: tuple[LeftObject, ...] = ()
    crowd: Crowd | None = None
    story: str = ""
    codec: Literal["h264", "h265"] = "h264"
    #: loop length; the stories above are timed for DEMO_CLIP_S, a camera without one may loop sooner
    clip_s: float = DEMO_CLIP_S
    #: real footage used instead of a drawn clip when the set-up put it in the assets folder
    footage: str | None = None


#: cart = in the fire lane, stall = on the road; times are seconds into the clip, which loops. Nothing
#: is left before 8 s: the replay starts when the worker connects, and the classic detector learns the
#: empty scene for its first seconds (something there already would be learnt as background)
DEMO_SPOTS = (
    DemoSpot("桥北路口-东", 0.3, 0.5, (LeftObject(8.0, 40.0),),
             story="a cart in the fire lane for 32 s, then away for 88 s: resolved → verified"),
    DemoSpot("桥北农贸市场", 0.6, 1.2, (LeftObject(8.0, 50.0, "stall"), LeftObject(60.0, 118.0, "stall")),
             story="a stall on the road, packed up for 10 s twice a loop: resolved → reopened"),
    DemoSpot("浦珠路消防通道", 1.4, 0.4, (LeftObject(10.0, 100.0),),
             story="a cart in the fire lane: left alone it escalates to the street, then the district"),
    DemoSpot("南浦广场", 2.8, 1.0, crowd=Crowd(10.0, 60.0, people=8), story="eight people gather on the square"),
    DemoSpot("南浦小区北门", 3.5, 1.6, story="people only pass by (real footage when set up): no ticket (H.265)",
             codec="h265", clip_s=30.0, footage="vtest.avi"),
)


def demo_replays(demo_dir: Path) -> dict[str, Path]:
    """The replays the gateway serves for the demo: ``camN`` → its clip (written by :func:`prepare_demo`)."""
    clips_dir = (demo_dir / f"clips-v{DEMO_VERSION}").resolve()
    return {f"cam{i}": clips_dir / f"cam{i}.mp4" for i in range(1, len(DEMO_SPOTS) + 1)}


def write_demo_clips(demo_dir: Path, *, footage_dir: Path | None = None) -> None:
    """Write the clips that are missing, in parallel (once per demo folder; seconds). A camera with real
    footage (Debian opencv-doc's ``vtest.avi``, which ``scripts/setup.sh`` puts in ``footage_dir``)
    gets it re-encoded; without it, a drawn clip."""

    def write(spot: DemoSpot, clip: Path) -> None:
        partial = clip.with_name(clip.stem + ".part.mp4")
        source = footage_dir / spot.footage if footage_dir is not None and spot.footage else None
        if source is not None and source.is_file():
            transcode_clip(source, partial, codec=spot.codec)
        else:
            write_clip(partial, seconds=spot.clip_s, left=spot.left, crowd=spot.crowd, codec=spot.codec)
        partial.replace(clip)  # an interrupted first run leaves no half clip behind

    missing = [(s, c) for s, c in zip(DEMO_SPOTS, demo_replays(demo_dir).values(), strict=True) if not c.is_file()]
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="demo-clip") as pool:  # encoders release the GIL
        for done in [pool.submit(write, spot, clip) for spot, clip in missing]:
            done.result()


def free_tcp_port(host: str) -> int:
    """A TCP port free on ``host`` now (for a gateway configured with port 0: the cameras' URLs name it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def replay_url(name: str, *, password: str, gateway: str) -> str:
    """The RTSP URL a demo camera is read from: the gateway's replay, with the service credential."""
    return f"rtsp://{DEMO_FEED_USER}:{password}@{gateway}/replay/{name}"


def demo_cameras(*, password: str, gateway: str) -> list[CameraSpec]:
    """Simulated cameras: the gateway's replays of the generated street clips, looped in real time."""
    return [
        CameraSpec(
            name=spot.name,
            url=replay_url(f"cam{i}", password=password, gateway=gateway),
            lon=LON0 + spot.dx * CELL,
            lat=LAT0 + spot.dy * CELL,
        )
        for i, spot in enumerate(DEMO_SPOTS, start=1)
    ]


def refresh_feed(session: Session, *, gateway: str) -> None:
    """A fresh random password for the service user, and the cameras' URLs with it and the gateway's
    address of this start (the port may differ from the last one)."""
    password = secrets.token_urlsafe(18)
    user = find_user(session, DEMO_FEED_USER)
    if user is None:
        raise GridPatrolError(f"the demo's service user {DEMO_FEED_USER!r} is missing: delete the demo folder")
    user.password_hash, user.rtsp_ha1 = hash_password(password), rtsp_ha1(user.username, password)
    user.token_version += 1  # sessions of an earlier start end
    cams = session.scalars(select(Camera).order_by(Camera.id)).all()
    for i, cam in enumerate(cams[: len(DEMO_SPOTS)], start=1):
        set_camera_secrets(cam, None, url=replay_url(f"cam{i}", password=password, gateway=gateway))
    session.flush()


def demo_ticket_settings(base: TicketSettings, *, accept_within_s: int, resolve_within_s: int) -> TicketSettings:
    """``base`` with the demo's deadlines for every category and the verification time the clips are timed for."""
    categories = {
        name: policy.model_copy(update={"accept_within_s": accept_within_s, "resolve_within_s": resolve_within_s})
        for name, policy in {**DEFAULT_CATEGORIES, **base.ticket_categories}.items()
    }
    return base.model_copy(update={"ticket_categories": categories, "ticket_verify_clear_s": DEMO_VERIFY_CLEAR_S})


def prepare_demo(session: Session, demo_dir: Path, *, gateway: str, footage_dir: Path | None = None) -> bool:
    """Load the demo data once (cameras, zones, users) and point the cameras at the gateway's replays
    (``gateway``: HOST:PORT the worker reaches it at); returns False when the data was already there.
    ``footage_dir`` holds real footage some cameras use (:func:`write_demo_clips`).
    A demo folder made by an older version (other clips, users) is refused: delete it to rebuild."""
    marker = demo_dir / "demo-version"
    if session.scalar(select(User.id).where(User.username == "admin")) is not None:
        found = marker.read_text().strip() if marker.is_file() else "1"
        if found != DEMO_VERSION:
            raise GridPatrolError(
                f"{demo_dir} holds the data of an older demo (version {found}, this is {DEMO_VERSION}): "
                f"delete that folder (rm -r {demo_dir}) and start the demo again"
            )
        write_demo_clips(demo_dir, footage_dir=footage_dir)
        refresh_feed(session, gateway=gateway)
        return False
    write_demo_clips(demo_dir, footage_dir=footage_dir)
    import_grids(session, demo_tree())
    register_cameras(session, demo_cameras(password="-", gateway=gateway))
    for cam, spot in zip(session.scalars(select(Camera).order_by(Camera.id)), DEMO_SPOTS, strict=True):
        save_zones(session, cam.id, zones_document(dwell_s=DWELL_S, crowd=spot.crowd is not None), author=None, channel="cli")
    for u in DEMO_USERS:
        add_user(
            session,
            username=u.username,
            role=u.role,
            password=DEMO_PASSWORD,
            grid_codes=list(u.grids),
            display_name=u.display_name,
        ).demo = True  # published passwords: no process serves them outside the demo (gridpatrol.runtime)
    # reads the replays (an operator may; no grid): its password lives only in the cameras' URLs
    add_user(
        session, username=DEMO_FEED_USER, role=Role.operator, password=secrets.token_urlsafe(18),
        display_name="演示摄像机源",
    ).demo = True
    refresh_feed(session, gateway=gateway)
    marker.write_text(DEMO_VERSION + "\n")
    return True


def second_shell_env(demo_dir: Path, database_url: str) -> list[str]:
    """What a second shell sets to talk to this demo's database (CLI commands such as ``tickets list``)."""
    return [
        "export GRIDPATROL_ENVIRONMENT=demo",
        f"export GRIDPATROL_DATA_DIR={shlex.quote(str(demo_dir.resolve()))}",
        f"export GRIDPATROL_DATABASE_URL={shlex.quote(database_url)}",
        "unset GRIDPATROL_REDIS_URL",
    ]


def demo_banner(
    *,
    base_url: str,
    rtsp_url: str,
    demo_dir: Path,
    database_url: str,
    gridpatrol: str,
    accept_within_s: int,
    resolve_within_s: int,
) -> str:
    """What the demo prints before it starts: where to look, who to log in as, what happens, what to type."""
    rule = "=" * 100
    users = "\n".join(
        f"    {u.username:<18} {u.role.value:<12} {u.display_name}" + (f" ({', '.join(u.grids)})" if u.grids else "")
        for u in DEMO_USERS
    )
    cams = "\n".join(f"    cam{i} {s.name}: {s.story}" for i, s in enumerate(DEMO_SPOTS, start=1))
    token = (
        f"TOKEN=$(curl -s {base_url}/api/auth/token -d username=leader-qb1 -d password={DEMO_PASSWORD}"
        " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
    )
    env = "\n".join(f"    {line}" for line in second_shell_env(demo_dir, database_url))
    return f"""{rule}
GridPatrol demo · 江北新区 (2 streets, 3 grids, {len(DEMO_SPOTS)} simulated cameras; data in {demo_dir.resolve()})
  Open {base_url}/ (the web UI: 视频墙, 工单, 数字云图; log in as any user below)
  The API with its docs: {base_url}/docs · health: {base_url}/healthz
  RTSP players (VLC, ffplay): {rtsp_url}/cameras/ID with a user's name and password

  !!! DEMO CREDENTIALS: every user's password is '{DEMO_PASSWORD}', published in the source, and logins
  !!! are signed with the demo's published key, which every environment but GRIDPATROL_ENVIRONMENT=demo
  !!! refuses. Never expose this port to a network.
{users}

  The cameras are the gateway's replays ({rtsp_url}/replay/cam1 ... cam{len(DEMO_SPOTS)}), read by the
  worker over RTSP with the service user {DEMO_FEED_USER} (a random password, new at every start).
  What the cameras show (clips loop every {DEMO_CLIP_S:.0f} s; tickets within a minute):
{cams}
  Deadlines: accept within {accept_within_s} s (then the street manager), resolve within {resolve_within_s} s
  (then the district manager); a resolved ticket is verified after {DEMO_VERIFY_CLEAR_S} s clear, reopened if it comes back.

  Next, in a second shell (same database):
{env}
    {token}
    curl -s -H "Authorization: Bearer $TOKEN" {base_url}/api/tickets | python3 -m json.tool
    {gridpatrol} tickets list
{rule}"""
