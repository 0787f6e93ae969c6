"""Issue 9: the live ticket feed's periodic credential check (a database query) runs off the event loop,
so a slow database stalls neither the stream's loop nor the other requests the process serves."""

from __future__ import annotations

import asyncio
import threading

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.live import TicketFeed
from api.settings import ApiSettings
from models.bus.health_board import MemoryHealthBoard
from models.bus.memory import MemoryBus
from models.db.tables import Role
from models.identity.access import AccessScope
from models.tickets.desk import TicketDesk
from tests.conftest import TEST_SECRET
from tests.support import sample


def test_a_slow_liveness_check_leaves_the_loop_serving_requests(seeded: sessionmaker[Session], desk: TicketDesk) -> None:
    bus = MemoryBus()
    app = create_app(ApiSettings(secret_key=TEST_SECRET), session_factory=seeded, desk=desk, bus=bus)
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    def still_allowed() -> bool:  # a database that answers only when the test lets it
        entered.set()
        released = release.wait(20)
        order.append("check returned" if released else "check timed out (the loop was blocked)")
        return False

    async def scenario() -> None:
        feed = TicketFeed(bus)
        feed.start(asyncio.get_running_loop())
        try:
            stream = feed.stream(AccessScope(user_id=1, role=Role.admin), still_allowed=still_allowed, recheck_s=0.0)
            assert (await anext(stream)).startswith("retry:")
            following = asyncio.create_task(anext(stream))
            # the check is now running: on the loop, it would have frozen this coroutine before here
            assert await asyncio.to_thread(entered.wait, 30)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                r = await http.post("/api/auth/token", data={"username": "admin1", "password": sample.PASSWORD})
            assert r.status_code == 200, r.text
            order.append("request served")
            assert not following.done()
            release.set()
            assert "session ended" in await asyncio.wait_for(following, 30)
            await stream.aclose()
        finally:
            feed.stop()

    asyncio.run(scenario())
    assert order == ["request served", "check returned"]


def test_camera_health_shows_the_worker_outbox(seeded: sessionmaker[Session], desk: TicketDesk) -> None:
    board = MemoryHealthBoard()
    app = create_app(
        ApiSettings(secret_key=TEST_SECRET), session_factory=seeded, desk=desk, bus=MemoryBus(), health_board=board
    )
    outbox = {"outbox_depth": 12, "outbox_dropped": 3, "outbox_state": "full"}
    board.publish("w1", {"1": {"camera_id": "1", "state": "streaming", **outbox}})
    board.publish("w0", {"2": {"camera_id": "2", "state": "streaming"}})  # a worker from before issue 9
    with TestClient(app) as c:
        r = c.post("/api/auth/token", data={"username": "admin1", "password": sample.PASSWORD})
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        body = c.get("/api/cameras/1/health", headers=headers).json()
        assert {k: body[k] for k in outbox} == outbox
        old = c.get("/api/cameras/2/health", headers=headers).json()
        assert old["state"] == "streaming" and old["outbox_depth"] is None
