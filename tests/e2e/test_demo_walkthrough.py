"""The README's demo walkthrough, followed step by step: ``gridpatrol demo`` is started as the README says
(on a free port, a temporary ``GRIDPATROL_DATA_DIR`` and the short deadlines ``--accept-within 30
--resolve-within 60`` it documents), and the README's own shell blocks are run with bash, in order.

The demo's cameras are the gateway's RTSP replays, read by the worker over RTSP: the first tickets, the
wall's pictures (snapshots of the frames the worker decoded) and the live view a leader plays from the
gateway with their own login all come down that one path.

What is asserted is what the README says happens: tickets of all three rules for the right leaders,
a resolved ticket verified and another reopened by the video, an untouched ticket escalated to the
street and then the district, the banner's environment reaching the same database. States and counts
only: every wait is a poll with a generous bound for a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np
import pytest
import websockets

from gridpatrol.demo import DEMO_FEED_USER, DEMO_PASSWORD
from tests.rtsp_gateway.mse_fixtures import fmp4_frames
from tests.support.procs import free_port, run_cli, serving

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = re.compile(r"^### The demo, step by step$(.*?)^## ", re.M | re.S)
BLOCK = re.compile(r"^( *)```sh\n(.*?)^\1```$", re.M | re.S)
ACCEPT_S, RESOLVE_S = 30, 60


def readme_blocks() -> list[str]:
    """The ``sh`` blocks of the README's demo section, in order, dedented."""
    section = SECTION.search(README.read_text(encoding="utf-8"))
    assert section is not None, "README has no '### The demo, step by step' section"
    return [textwrap.dedent(m.group(2)) for m in BLOCK.finditer(section.group(1))]


def test_readme_has_the_walkthrough_blocks() -> None:
    blocks = readme_blocks()
    assert len(blocks) == 4, blocks  # log in and list; accept and resolve; watch; escalation
    assert "GP=http://127.0.0.1:8000" in blocks[0]
    assert "--accept-within" in README.read_text(encoding="utf-8")


Row = tuple[int, str, str, str, str, int]


def rows(output: str) -> list[Row]:
    """The lines ``show`` prints: id, camera, category, state, assignee, escalation level."""
    out: list[Row] = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0].isdigit():
            out.append((int(parts[0]), parts[1], parts[2], parts[3], parts[4], int(parts[5])))
    return out


def poll(what: str, check: Callable[[], Any], *, within_s: float, log: Path) -> Any:
    """``check()`` until it returns something truthy; a bound for a loaded machine, not the assertion."""
    deadline = time.monotonic() + within_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {within_s:.0f}s; demo log:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(2.0)


def play(url: str) -> tuple[str, int]:
    """Codec and decoded-frame count of a few seconds of an RTSP stream, read as a player reads it."""
    with av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}, timeout=(10.0, 10.0)) as player:
        stream = player.streams.video[0]
        frames = 0
        for frame in player.decode(stream):
            assert frame.to_ndarray(format="bgr24").std() > 5  # a picture, not a grey screen
            frames += 1
            if frames >= 10:
                break
        return stream.codec_context.name, frames


async def live_view(url: str, headers: dict[str, str]) -> tuple[dict[str, Any], bytes]:
    """What the live page receives: the MSE answer, then the init segment and ten frames."""
    async with websockets.connect(url, additional_headers=headers, open_timeout=30) as ws:
        await ws.send(json.dumps({"type": "mse", "value": "avc1.640029"}))
        hello = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if hello.get("type") != "mse":
            return hello, b""
        return hello, b"".join([bytes(await asyncio.wait_for(ws.recv(), 30)) for _ in range(1 + 10)])


def test_the_readme_demo_walkthrough(tmp_path: Path) -> None:
    data = tmp_path / "var"
    port, rtsp_port = free_port(), free_port()
    env = {
        "GRIDPATROL_DATA_DIR": str(data),
        "GRIDPATROL_ENVIRONMENT": "development",
        "GRIDPATROL_GATEWAY_PORT": str(rtsp_port),
    }
    blocks = [b.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for b in readme_blocks()]
    prelude = blocks[0]

    def sh(script: str) -> str:
        """A README block after the first one (GP, token, show, QB1; its own output dropped), as the
        second shell runs it; ``sh("")`` is the first block's output."""
        quiet = f"{{\n{prelude}\n}} > /dev/null\n" if script else f"{prelude}\n"
        done = subprocess.run(["bash", "-c", f"set -e\n{quiet}{script}"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    args = ["demo", "--port", str(port), "--accept-within", str(ACCEPT_S), "--resolve-within", str(RESOLVE_S)]
    with serving(args, env, port=port, timeout=120) as base:
        log = data / f"serve-{port}.log"
        banner = log.read_text(errors="replace")
        # the banner: where to look, loud demo credentials, and the environment of a second shell
        assert f"http://127.0.0.1:{port}/docs" in banner
        assert "DEMO CREDENTIALS" in banner and DEMO_PASSWORD in banner
        exports = dict(re.findall(r"^\s*export (GRIDPATROL_\w+)=(\S+)$", banner, re.M))
        assert exports["GRIDPATROL_DATA_DIR"] == str((data / "demo").resolve()), exports
        assert exports["GRIDPATROL_ENVIRONMENT"] == "demo"

        def login(user: str) -> dict[str, str]:
            r = httpx.post(f"{base}/api/auth/token", data={"username": user, "password": DEMO_PASSWORD})
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

        def tickets(user: str, **params: Any) -> list[dict[str, Any]]:
            r = httpx.get(f"{base}/api/tickets", headers=login(user), params=params)
            assert r.status_code == 200, r.text
            return list(r.json()["items"])

        # 1. within a minute: leader-qb1's two tickets (the README's own list command shows them)
        def qb1_has_both() -> list[Row]:
            listed = rows(sh(""))
            return listed if {r[2] for r in listed} >= {"fire_lane_blockage", "road_occupation"} else []

        # the cameras are read over RTSP from the gateway's replays, with the demo's service credential
        banner_and_log = log.read_text(errors="replace")
        for i in range(1, 6):
            assert f"reading rtsp://***@127.0.0.1:{rtsp_port}/replay/cam{i}" in banner_and_log, banner_and_log[-3000:]
        # within a minute of the start (clips written, service up)
        listed = poll("leader-qb1's fire-lane and road-occupation tickets", qb1_has_both, within_s=60, log=log)
        by_category = {r[2]: r for r in listed}
        assert by_category["fire_lane_blockage"][1:4] == ("桥北路口-东", "fire_lane_blockage", "dispatched")
        assert by_category["road_occupation"][1:4] == ("桥北农贸市场", "road_occupation", "dispatched")
        assert all(r[4] == "leader-qb1" and r[1] in {"桥北路口-东", "桥北农贸市场"} for r in listed), listed
        for t in tickets("leader-qb1"):
            assert t["evidence_url"], t
        fire_id, road_id = by_category["fire_lane_blockage"][0], by_category["road_occupation"][0]

        # the wall: a leader's cameras give live pictures (the frames the worker decoded from RTSP)
        qb1 = login("leader-qb1")
        cam_ids = {c["name"]: c["id"] for c in httpx.get(f"{base}/api/cameras", headers=qb1).json()["items"]}
        assert set(cam_ids) == {"桥北路口-东", "桥北农贸市场"}, cam_ids
        snap = httpx.get(f"{base}/api/cameras/{cam_ids['桥北路口-东']}/snapshot.jpg", headers=qb1, timeout=30)
        assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg", snap.text[:200]
        picture = cv2.imdecode(np.frombuffer(snap.content, np.uint8), cv2.IMREAD_COLOR)
        assert picture is not None and picture.shape[1] >= 320, snap.headers
        # the browser's live view through the API (fMP4 over the WebSocket the wall's live page opens)
        hello, data = asyncio.run(live_view(f"ws://127.0.0.1:{port}/api/cameras/{cam_ids['桥北路口-东']}/live", qb1))
        assert hello["type"] == "mse" and hello["value"].startswith('video/mp4; codecs="avc1.'), hello
        assert fmp4_frames(data)[:2] == ("h264", 10)
        # the live view: the gateway plays the leader's camera (H.264) with the leader's own login; the
        # quiet street's H.265 stream plays for its leader; another grid's leader is refused
        gateway = f"rtsp://{{}}:{DEMO_PASSWORD}@127.0.0.1:{rtsp_port}/cameras/{{}}"
        assert play(gateway.format("leader-qb1", cam_ids["桥北路口-东"])) == ("h264", 10)
        np1 = {c["name"]: c["id"] for c in httpx.get(f"{base}/api/cameras", headers=login("leader-np1")).json()["items"]}
        assert play(gateway.format("leader-np1", np1["南浦小区北门"])) == ("hevc", 10)
        with pytest.raises(av.error.HTTPNotFoundError):
            play(gateway.format("leader-qb2", cam_ids["桥北路口-东"]))
        # the service user's password is a random one of this start: the published one is not it
        refused = httpx.post(f"{base}/api/auth/token", data={"username": DEMO_FEED_USER, "password": DEMO_PASSWORD})
        assert refused.status_code == 401, refused.text

        qb2 = poll("leader-qb2's fire-lane ticket", lambda: tickets("leader-qb2"), within_s=90, log=log)
        assert {(t["camera_name"], t["category"]) for t in qb2} == {("浦珠路消防通道", "fire_lane_blockage")}
        np1 = poll(
            "leader-np1's crowding ticket",
            lambda: [t for t in tickets("leader-np1") if t["category"] == "crowding"],
            within_s=90,
            log=log,
        )
        assert {t["camera_name"] for t in np1} == {"南浦广场"}
        # nobody sees another grid's tickets; the quiet camera opened none
        assert all(t["camera_name"] in {"浦珠路消防通道"} for t in tickets("leader-qb2"))
        assert all(t["grid_code"] == "G-NP1" and t["camera_name"] == "南浦广场" for t in tickets("leader-np1"))
        escalated_id = qb2[0]["id"]

        # 2. accept and resolve both of leader-qb1's tickets: the README's loop
        moved = rows(sh(blocks[1]))
        assert [(r[0], r[3]) for r in moved] == [
            (fire_id, "accepted"), (fire_id, "resolved"), (road_id, "accepted"), (road_id, "resolved")
        ], moved

        # 3. the stall comes back: reopened and dispatched again; the cart stays away: verified
        def settled() -> dict[int, Row]:
            state = {r[0]: r for r in rows(sh(blocks[2]))}
            done = state.get(fire_id, ())[3:4] == ("verified",) and state.get(road_id, ())[3:4] == ("dispatched",)
            return state if done else {}

        state = poll("verified and reopened", settled, within_s=150, log=log)
        assert state[road_id][4] == "leader-qb1"
        history = httpx.get(f"{base}/api/tickets/{road_id}", headers=login("leader-qb1")).json()["history"]
        assert [h["action"] for h in history][-2:] == ["reopen", "dispatch"], history
        fire = httpx.get(f"{base}/api/tickets/{fire_id}", headers=login("leader-qb1")).json()
        assert fire["history"][-1]["action"] == "verify" and fire["history"][-1]["actor"] is None, fire["history"]

        # 4. the untouched ticket: street first, then the district
        def at_district() -> list[Row]:
            found = [r for r in rows(sh(blocks[3])) if r[0] == escalated_id and r[5] == 2]
            return found

        (row,) = poll("escalation to the district", at_district, within_s=120, log=log)
        assert row[4] == "district-jiangbei", row
        history = httpx.get(f"{base}/api/tickets/{escalated_id}", headers=login("district-jiangbei")).json()["history"]
        notes = [h["note"] for h in history if h["action"] == "escalate"]
        assert len(notes) == 2 and "street-taishan" in notes[0] and "district-jiangbei" in notes[1], history

        # 5. the banner's environment reaches the same database from the CLI
        result = run_cli(["tickets", "list"], {k: v.strip("'") for k, v in exports.items()})
        assert result.returncode == 0, result.stdout + result.stderr
        for name in ("桥北路口-东", "桥北农贸市场", "浦珠路消防通道", "南浦广场"):
            assert name in result.stdout, result.stdout

        # the demo logs no HTTP requests (the walkthrough made dozens)
        text = log.read_text(errors="replace")
        assert '"GET /api/tickets' not in text and '"path": "/api/tickets' not in text
