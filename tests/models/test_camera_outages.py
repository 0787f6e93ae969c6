"""Camera-offline notices: a camera offline past the threshold raises one notice per outage (webhooks,
its grid leaders' phones, MQTT) and one "back online" notice with the outage's duration; flapping under the
threshold raises nothing; two ticketers racing raise it once. Real PostgreSQL/SQLite, Redis (the health
board the workers post to), a local HTTP server standing in for the webhook receiver and the WeCom robot,
and Mosquitto. Time is an injected clock: no sleeps."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gridpatrol.camera_watch import CameraWatch
from gridpatrol.mqtt import MqttPublisher, MqttSettings
from gridpatrol.mqtt_bridge import publish_camera_notice
from gridpatrol.notify import Notifier, senders_for
from gridpatrol.settings import TicketerSettings
from gridpatrol.ticketer import Ticketer, TicketerCollector
from models.bus.health_board import RedisHealthBoard
from models.bus.memory import MemoryBus
from models.db.engine import make_engine, make_session_factory, transaction
from models.db.tables import Camera, CameraOutage, NotifyDelivery, User, WebhookDelivery
from models.errors import BusError
from models.grid.credentials import CredentialKey, CredentialKeyring
from models.notify.preferences import ChannelSpec, save_preferences
from models.notify.settings import NotifySettings
from models.tickets.desk import TicketDesk
from models.tickets.outbox import deliver_due, verify_signature
from tests.e2e.test_mqtt import BROKER, Subscriber, broker_up
from tests.support.require import require

REDIS_URL = "redis://127.0.0.1:6379/0"
THRESHOLD_S = 60.0
SECRET = "webhook-secret-for-camera-notices"
T0 = datetime(2026, 11, 30, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Recorder:
    """A loopback HTTP server that records every POST (webhook receiver and WeCom robot at once)."""

    seen: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    def posts(self, path: str) -> list[tuple[dict[str, str], Any]]:
        return [(h, json.loads(b)) for p, h, b in self.seen if p.split("?")[0] == path]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            raw = b'{"errcode": 0, "errmsg": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def board() -> RedisHealthBoard:
    """The health board workers post to, in a namespace of this test's own."""
    require(redis_available(), "Redis on 127.0.0.1:6379")
    return RedisHealthBoard(REDIS_URL, namespace=f"gptest-{uuid.uuid4().hex[:10]}:")


@pytest.fixture
def keyring() -> CredentialKeyring:
    return CredentialKeyring(CredentialKey.generate())


def camera_id(factory: sessionmaker[Session], name: str) -> int:
    with factory() as s:
        return int(s.scalars(select(Camera.id).where(Camera.name == name)).one())


def streaming(board: RedisHealthBoard, factory: sessionmaker[Session], *names: str) -> None:
    """A worker posts these cameras streaming (the others: no report, i.e. offline)."""
    board.publish(
        "worker-t", {str(camera_id(factory, n)): {"state": "streaming", "reason": None} for n in names}
    )


def down(board: RedisHealthBoard, factory: sessionmaker[Session], name: str, state: str = "backoff") -> None:
    board.publish(
        "worker-t", {str(camera_id(factory, name)): {"state": state, "reason": "connection refused"}}
    )


ALL = ("cam-g1-a", "cam-g1-b", "cam-g2-a", "cam-g3-a")


def wecom_for(factory: sessionmaker[Session], keyring: CredentialKeyring, username: str) -> None:
    with transaction(factory) as s:
        user = s.scalars(select(User).where(User.username == username)).one()
        save_preferences(
            s, user, version=0, kinds=["assigned", "camera_offline"], quiet_start=None, quiet_end=None,
            timezone="Asia/Shanghai", urgent_in_quiet=True, keyring=lambda: keyring,
            channels=[ChannelSpec(kind="wecom", label="网格群", key=f"robot-key-of-{username}")],
        )  # fmt: skip


def webhook_rows(factory: sessionmaker[Session]) -> list[tuple[str, dict[str, Any]]]:
    with factory() as s:
        return [(r.event, r.payload) for r in s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))]


def notify_rows(factory: sessionmaker[Session]) -> list[tuple[int, str, dict[str, Any]]]:
    with factory() as s:
        return [
            (r.user_id, r.kind, r.payload)
            for r in s.scalars(select(NotifyDelivery).order_by(NotifyDelivery.id))
        ]


def user_id(factory: sessionmaker[Session], username: str) -> int:
    with factory() as s:
        return int(s.scalars(select(User.id).where(User.username == username)).one())


def watch(factory: sessionmaker[Session], board: RedisHealthBoard, clock: Clock, **kw: Any) -> CameraWatch:
    return CameraWatch(factory, board, notice_after_s=THRESHOLD_S, clock=clock, **kw)


def test_one_offline_notice_per_outage_and_one_back_online_notice_with_its_duration(
    seeded: sessionmaker[Session], board: RedisHealthBoard, recorder: Recorder, keyring: CredentialKeyring
) -> None:
    wecom_for(seeded, keyring, "leader-g1")
    wecom_for(seeded, keyring, "leader-g3")  # another grid's leader: must hear nothing about cam-g1-a
    clock = Clock()
    cam = camera_id(seeded, "cam-g1-a")
    w = watch(seeded, board, clock, webhook_urls=[f"{recorder.url}/hook"])
    streaming(board, seeded, *ALL)
    assert w.step() == []

    down(board, seeded, "cam-g1-a")
    clock.advance(5)
    assert w.step() == []  # offline, under the threshold: recorded, nobody told
    clock.advance(THRESHOLD_S - 1)
    assert w.step() == []
    clock.advance(1)  # 60 s since it was first seen offline
    (offline,) = w.step()
    assert (offline.event, offline.camera_id, offline.camera, offline.offline_since) == (
        "camera.offline", cam, "cam-g1-a", T0 + timedelta(seconds=5),
    )  # fmt: skip
    for _ in range(3):  # still offline: no second notice
        clock.advance(25)
        assert w.step() == []

    clock.advance(15)  # back after 150 s offline
    streaming(board, seeded, *ALL)
    (online,) = w.step()
    assert (online.event, online.camera_id, online.duration_s) == ("camera.online", cam, 150.0)
    assert w.step() == []
    assert w.counts == {"offline": 1, "online": 1}

    hooks = webhook_rows(seeded)
    assert [e for e, _ in hooks] == ["camera.offline", "camera.online"]
    assert hooks[1][1]["duration_s"] == 150.0 and hooks[1][1]["camera"] == "cam-g1-a"
    assert hooks[0][1]["place"] == "江北新区/泰山街道/桥北社区/桥北第一网格"
    rows = notify_rows(seeded)
    leader = user_id(seeded, "leader-g1")
    assert [(u, k, p["event"]) for u, k, p in rows] == [
        (leader, "camera_offline", "camera.offline"),
        (leader, "camera_offline", "camera.online"),
    ]
    with seeded() as s:
        (outage,) = s.scalars(select(CameraOutage)).all()
        assert outage.ongoing_camera_id is None and outage.ended_at == T0 + timedelta(seconds=155)

    # what the receivers get: a signed webhook POST per notice, a WeCom message per notice, in Chinese
    with httpx.Client(timeout=5.0) as client:
        assert deliver_due(seeded, client=client, secret=SECRET) == 2
        settings = NotifySettings(
            notify_base_url="https://grid.example.gov.cn",
            notify_wecom_url=f"{recorder.url}/cgi-bin/webhook/send",
        )
        assert (
            Notifier(seeded, settings, senders_for(settings, client), keyring=lambda: keyring).deliver_due()
            == 2
        )
    posted = recorder.posts("/hook")
    assert [h["x-gridpatrol-event"] for h, _ in posted] == ["camera.offline", "camera.online"]
    headers, body = next((h, b) for p, h, b in recorder.seen if p == "/hook")
    assert verify_signature(
        SECRET,
        timestamp=int(headers["x-gridpatrol-timestamp"]),
        body=body,
        signature=headers["x-gridpatrol-signature"],
    )
    assert (
        "url" not in posted[0][1] and posted[0][1]["offline_since"] == (T0 + timedelta(seconds=5)).isoformat()
    )
    texts = [b["markdown"]["content"] for _, b in recorder.posts("/cgi-bin/webhook/send")]
    assert len(texts) == 2
    assert "摄像头离线：cam-g1-a" in texts[0] and "桥北第一网格" in texts[0]
    assert "离线时间：2026-11-30 09:00:05" in texts[0]
    assert "摄像头恢复在线：cam-g1-a" in texts[1] and "离线时长：2分30秒" in texts[1]
    assert f"https://grid.example.gov.cn/#/live/{cam}" in texts[1]
    assert all("rtsp://" not in t and "s3cr3t" not in t for t in texts)
    # both to leader-g1's robot; leader-g3's robot got nothing
    assert all("robot-key-of-leader-g1" in p for p, _, _ in recorder.seen if p.startswith("/cgi-bin"))


def test_flapping_under_the_threshold_raises_nothing(
    seeded: sessionmaker[Session], board: RedisHealthBoard
) -> None:
    clock = Clock()
    w = watch(seeded, board, clock, webhook_urls=["http://127.0.0.1:9/hook"])
    streaming(board, seeded, *ALL)
    for _ in range(10):  # 50 s down, 5 s up, again and again: every outage shorter than 60 s
        down(board, seeded, "cam-g2-a", state="connecting")
        for _ in range(5):
            assert w.step() == []
            clock.advance(10)
        streaming(board, seeded, "cam-g2-a")
        assert w.step() == []
        clock.advance(5)
    assert webhook_rows(seeded) == [] and notify_rows(seeded) == []
    with seeded() as s:
        assert s.scalars(select(CameraOutage)).all() == []  # an outage nobody was told about leaves no row


def test_a_camera_no_worker_reports_is_offline_and_a_redis_outage_is_not(
    seeded: sessionmaker[Session], board: RedisHealthBoard
) -> None:
    clock = Clock()
    w = watch(seeded, board, clock)
    streaming(board, seeded, "cam-g1-a", "cam-g1-b", "cam-g2-a")  # cam-g3-a: no worker posts it
    assert w.step() == []
    clock.advance(THRESHOLD_S)
    (notice,) = w.step()
    assert (notice.camera, notice.state) == ("cam-g3-a", "unknown")

    # Redis away (restarting): no camera is judged, the ongoing outage is neither ended nor joined by others
    dead = CameraWatch(
        seeded, RedisHealthBoard("redis://127.0.0.1:1/0"), notice_after_s=THRESHOLD_S, clock=clock
    )
    clock.advance(THRESHOLD_S)
    with pytest.raises(BusError):
        dead.step()
    stop = threading.Event()
    thread = threading.Thread(target=dead.run, args=(stop,), daemon=True)
    thread.start()  # the loop survives it
    stop.set()
    thread.join(timeout=15)
    assert not thread.is_alive() and dead.counts == {"offline": 0, "online": 0}
    with seeded() as s:
        (outage,) = s.scalars(select(CameraOutage)).all()
        assert outage.ongoing_camera_id == notice.camera_id


def test_a_disabled_camera_ends_its_outage_without_a_back_online_notice(
    seeded: sessionmaker[Session], board: RedisHealthBoard
) -> None:
    clock = Clock()
    w = watch(seeded, board, clock, webhook_urls=["http://127.0.0.1:9/hook"])
    streaming(board, seeded, "cam-g1-b", "cam-g2-a", "cam-g3-a")
    w.step()
    clock.advance(THRESHOLD_S)
    assert [n.camera for n in w.step()] == ["cam-g1-a"]
    with transaction(seeded) as s:
        s.get_one(Camera, camera_id(seeded, "cam-g1-a")).enabled = False
    clock.advance(10)
    assert w.step() == []
    assert [e for e, _ in webhook_rows(seeded)] == ["camera.offline"]
    with seeded() as s:
        (outage,) = s.scalars(select(CameraOutage)).all()
        assert outage.ended_at is not None and outage.online_notice_at is None


def test_two_ticketers_racing_raise_each_notice_once(
    db_url: str, seeded: sessionmaker[Session], board: RedisHealthBoard, keyring: CredentialKeyring
) -> None:
    """Two watches, each with its own engine (two processes), look at the same instants again and again."""
    wecom_for(seeded, keyring, "leader-g1")
    clock = Clock()
    engines = [make_engine(db_url) for _ in range(2)]
    watches = [
        CameraWatch(
            make_session_factory(e),
            board,
            notice_after_s=THRESHOLD_S,
            clock=clock,
            webhook_urls=["http://x/h"],
        )
        for e in engines
    ]
    raised: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def look(w: CameraWatch) -> None:
        try:
            barrier.wait(timeout=30)
            raised.extend(f"{n.event}:{n.camera}" for n in w.step())
        except BaseException as err:  # reported by the test
            errors.append(err)

    def both() -> None:
        threads = [threading.Thread(target=look, args=(w,)) for w in watches]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors

    try:
        streaming(board, seeded, "cam-g2-a")  # three cameras down at once, one up
        for _ in range(4):
            both()
            clock.advance(THRESHOLD_S / 2)
        streaming(board, seeded, *ALL)
        for _ in range(3):
            both()
            clock.advance(5)
    finally:
        for e in engines:
            e.dispose()
    assert sorted(raised) == [
        "camera.offline:cam-g1-a", "camera.offline:cam-g1-b", "camera.offline:cam-g3-a",
        "camera.online:cam-g1-a", "camera.online:cam-g1-b", "camera.online:cam-g3-a",
    ]  # fmt: skip
    events = sorted((e, p["camera"]) for e, p in webhook_rows(seeded))
    assert len(events) == 6 and len(set(events)) == 6
    rows = notify_rows(seeded)  # leader-g1: cam-g1-a and cam-g1-b, offline and online, once each
    assert sorted((p["event"], p["camera"]) for _, _, p in rows) == [
        ("camera.offline", "cam-g1-a"), ("camera.offline", "cam-g1-b"),
        ("camera.online", "cam-g1-a"), ("camera.online", "cam-g1-b"),
    ]  # fmt: skip
    assert sum(w.counts["offline"] for w in watches) == 3


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("120", None),
        ("10", None),
        ("9.5", "between 10 and 86400 seconds"),
        ("0", "between 10 and 86400 seconds"),
        ("100000", "between 10 and 86400 seconds"),
        ("two minutes", "valid number"),
    ],
)
def test_the_threshold_setting_is_validated(
    monkeypatch: pytest.MonkeyPatch, value: str, error: str | None
) -> None:
    monkeypatch.setenv("GRIDPATROL_CAMERA_OFFLINE_NOTICE_S", value)
    if error is None:
        assert TicketerSettings().camera_offline_notice_s == float(value)
        return
    with pytest.raises(ValidationError, match=error):
        TicketerSettings()


def test_cameras_listed_by_the_api_show_since_when_they_are_offline(
    seeded: sessionmaker[Session],
    board: RedisHealthBoard,
    client: TestClient,
    auth_headers: Any,
) -> None:
    clock = Clock()
    w = watch(seeded, board, clock)
    streaming(board, seeded, "cam-g1-b", "cam-g2-a", "cam-g3-a")
    w.step()
    items = {
        c["name"]: c for c in client.get("/api/cameras", headers=auth_headers("leader-g1")).json()["items"]
    }
    assert set(items) == {"cam-g1-a", "cam-g1-b"}
    assert items["cam-g1-a"]["offline_since"] == T0.isoformat().replace("+00:00", "Z")
    assert items["cam-g1-b"]["offline_since"] is None
    cam = items["cam-g1-a"]["id"]
    one = client.get(f"/api/cameras/{cam}", headers=auth_headers("leader-g1")).json()
    assert one["offline_since"] == items["cam-g1-a"]["offline_since"]

    clock.advance(THRESHOLD_S)
    w.step()  # announced
    clock.advance(30)
    streaming(board, seeded, *ALL)
    w.step()  # back
    down(board, seeded, "cam-g1-a")
    w.step()  # a second outage, ongoing
    r = client.get(f"/api/cameras/{cam}/outages", headers=auth_headers("leader-g1"))
    assert r.status_code == 200
    ongoing, past = r.json()
    assert (ongoing["ended_at"], ongoing["offline_notice_at"], ongoing["state"]) == (None, None, "backoff")
    assert (past["state"], past["duration_s"]) == ("unknown", 90.0)
    assert past["offline_notice_at"] is not None and past["online_notice_at"] == past["ended_at"]
    assert client.get(f"/api/cameras/{cam}/outages", headers=auth_headers("leader-g3")).status_code == 404


SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_the_notice_reaches_mqtt_and_the_metrics(
    seeded: sessionmaker[Session], board: RedisHealthBoard, desk: TicketDesk, tmp_path: Any
) -> None:
    require(broker_up(*BROKER), "Mosquitto on 127.0.0.1:1883")
    prefix = f"gptest-{uuid.uuid4().hex[:10]}"
    sub = Subscriber(BROKER[1], f"{prefix}/cameras/+/events")
    publisher = MqttPublisher(
        MqttSettings(mqtt_url=f"mqtt://127.0.0.1:{BROKER[1]}", mqtt_topic_prefix=prefix),
        client_id=f"{prefix}-pub",
    ).start()
    ticketer = Ticketer(
        bus=MemoryBus(), session_factory=seeded, desk=desk, evidence=desk.evidence, consumer="t1"
    )
    clock = Clock()
    w = watch(
        seeded,
        board,
        clock,
        publish=[lambda p: publish_camera_notice(publisher, p)],
        counts=ticketer.stats.camera_notices,
    )
    cam = camera_id(seeded, "cam-g3-a")
    try:
        streaming(board, seeded, *ALL)
        w.step()
        down(board, seeded, "cam-g3-a", state="failed")
        w.step()
        clock.advance(THRESHOLD_S)
        assert len(w.step()) == 1
        clock.advance(20)
        streaming(board, seeded, *ALL)
        assert len(w.step()) == 1
        topic = f"{prefix}/cameras/{cam}/events"
        sub.wait_for(lambda ms: sum(t == topic for t, _, _ in ms) == 2, "the offline and online notices")
        offline, online = sub.payloads(topic)
        assert (offline["event"], offline["camera"], offline["state"]) == (
            "camera.offline",
            "cam-g3-a",
            "failed",
        )
        assert (online["event"], online["duration_s"]) == ("camera.online", 80.0)
        assert all(not retained for _, _, retained in sub.messages)
    finally:
        publisher.close()
        sub.close()
    registry = CollectorRegistry()
    TicketerCollector(ticketer).register(registry)
    assert registry.get_sample_value("gridpatrol_camera_outages_total") == 1.0


@pytest.mark.parametrize("kind", ["redis", "memory"])
def test_the_board_reads_many_cameras_at_once(kind: str) -> None:
    """The camera watch and the MQTT status read every camera each look: one MGET per 500 cameras, the same
    answers as one GET each (a camera nobody posts reads None)."""
    from models.bus.health_board import MemoryHealthBoard

    if kind == "redis":
        require(redis_available(), "Redis on 127.0.0.1:6379")
        health: RedisHealthBoard | MemoryHealthBoard = RedisHealthBoard(
            REDIS_URL, namespace=f"gptest-{uuid.uuid4().hex[:10]}:"
        )
    else:
        health = MemoryHealthBoard()
    health.publish("w1", {str(i): {"state": "streaming" if i % 3 else "backoff"} for i in range(1, 1201)})
    ids = [str(i) for i in range(1, 1206)]  # 1201..1205: nobody posts them
    many = health.get_many(ids)
    assert list(many) == ids
    assert many == {i: health.get(i) for i in ids}
    assert many["3"] == {"state": "backoff", "worker": "w1"} and many["1203"] is None
