"""MQTT against a real Mosquitto: ticket and detection events reach a subscriber, camera status is retained,
the last will says ``offline`` when the publisher dies, and a broker that is down neither blocks the
publisher nor loses the newest messages (a Mosquitto of the test's own is stopped and restarted)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from gridpatrol.mqtt import MqttPublisher, MqttSettings
from gridpatrol.mqtt_bridge import MqttBridge
from models.bus.health_board import MemoryHealthBoard
from models.bus.memory import MemoryBus
from models.bus.messages import RULE_EVENTS, TICKET_NOTICES, TicketNotice
from models.errors import ConfigError
from tests.support.events import Episode
from tests.support.procs import free_port
from tests.support.require import require

BROKER = ("127.0.0.1", 1883)
WAIT_S = 20.0


def broker_up(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


class Subscriber:
    """A plain paho client that records every message under ``topic_filter``."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.messages: list[tuple[str, str, bool]] = []
        self._cond = threading.Condition()
        self._filter = topic_filter
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe(self._filter, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))
            self._cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[tuple[str, str, bool]]], bool], what: str
    ) -> list[tuple[str, str, bool]]:
        deadline = time.monotonic() + WAIT_S
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"never saw {what}; got {self.messages}")
                self._cond.wait(left)
            return list(self.messages)

    def payloads(self, topic: str) -> list[Any]:
        with self._cond:
            return [json.loads(p) for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix() -> str:
    return f"gptest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def shared_broker() -> tuple[str, int]:
    require(broker_up(*BROKER), "Mosquitto on 127.0.0.1:1883")
    return BROKER


def clear_retained(port: int, topics: list[str]) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic in topics:
        client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_ticket_and_detection_events_and_retained_camera_status(
    shared_broker: tuple[str, int], prefix: str
) -> None:
    _, port = shared_broker
    sub = Subscriber(port, f"{prefix}/#")
    settings = MqttSettings(mqtt_url=f"mqtt://127.0.0.1:{port}", mqtt_topic_prefix=prefix)
    publisher = MqttPublisher(settings, client_id=f"{prefix}-pub").start()
    bus, board = MemoryBus(), MemoryHealthBoard()
    bridge = MqttBridge(
        publisher, bus, consumer="t1", health_board=board, camera_ids=lambda: [7, 8], block_ms=50
    )
    try:
        sub.wait_for(
            lambda ms: (
                (f"{prefix}/available", "online", False) in ms
                or any(t == f"{prefix}/available" and p == "online" for t, p, _ in ms)
            ),
            "online",
        )
        t0 = datetime.now(UTC) - timedelta(seconds=30)
        history = Episode(7, zone="old", start=t0 - timedelta(hours=2)).event("started")  # older than 600 s
        ep = Episode(7, start=t0)
        events = [ep.event("started"), ep.event("updated", after_s=5), ep.event("ended", after_s=9)]
        bus.publish(RULE_EVENTS, [history, *events])
        notice = TicketNotice(
            ticket_id=42,
            event="opened",
            state="dispatched",
            category="fire_lane_blockage",
            grid_id=3,
            grid_path="/1/2/3",
            camera_id=7,
            at=t0,
        )
        bus.publish(TICKET_NOTICES, [notice])
        assert bridge.step(RULE_EVENTS) == 4
        assert bridge.stale == 1  # read and acknowledged, not published as if it were live
        assert bridge.step(TICKET_NOTICES) == 1
        board.publish("worker-a", {"7": {"state": "streaming", "reason": None, "analysed_fps": 2.0}})
        assert bridge.status_round() == 2  # 7 streaming, 8 unknown (no worker posts it)
        assert bridge.status_round() == 0  # unchanged: nothing re-sent

        sub.wait_for(lambda ms: sum(t == f"{prefix}/events" for t, _, _ in ms) == 3, "three detection events")
        sub.wait_for(lambda ms: any(t == f"{prefix}/tickets" for t, _, _ in ms), "the ticket event")
        sub.wait_for(lambda ms: any(t == f"{prefix}/cameras/8/status" for t, _, _ in ms), "camera status")
        detections = sub.payloads(f"{prefix}/events")
        assert [d["type"] for d in detections] == ["new", "update", "end"]
        assert detections[1]["before"] == detections[0]["after"]  # Frigate's before/after
        assert detections[2]["after"]["end_time"] == events[2].at.timestamp()
        assert {d["after"]["id"] for d in detections} == {events[0].episode_key}
        assert (
            detections[0]["after"]["camera_id"] == 7
            and detections[0]["after"]["label"] == "fire_lane_blockage"
        )
        (ticket,) = sub.payloads(f"{prefix}/tickets")
        assert (ticket["ticket_id"], ticket["event"], ticket["state"], ticket["camera_id"]) == (
            42,
            "opened",
            "dispatched",
            7,
        )

        late = Subscriber(port, f"{prefix}/cameras/+/status")  # a newcomer gets the retained status at once
        try:
            got = late.wait_for(lambda ms: len(ms) == 2, "two retained statuses")
            assert all(retained for _, _, retained in got)
            status = {t: json.loads(p) for t, p, _ in got}
            assert status[f"{prefix}/cameras/7/status"]["state"] == "streaming"
            assert status[f"{prefix}/cameras/7/status"]["online"] is True
            assert status[f"{prefix}/cameras/8/status"]["state"] == "unknown"
        finally:
            late.close()
        assert publisher.dropped == 0 and publisher.published >= 6
    finally:
        publisher.close()
        sub.close()
        clear_retained(
            port, [f"{prefix}/available", f"{prefix}/cameras/7/status", f"{prefix}/cameras/8/status"]
        )


PUBLISHER_SCRIPT = """
import sys, time
from gridpatrol.mqtt import MqttPublisher, MqttSettings
p = MqttPublisher(MqttSettings(mqtt_url=sys.argv[1], mqtt_topic_prefix=sys.argv[2], mqtt_keepalive_s=2), client_id=sys.argv[2]).start()
while True:
    time.sleep(1)
"""


def test_the_last_will_says_offline_when_the_publisher_dies(
    shared_broker: tuple[str, int], prefix: str
) -> None:
    _, port = shared_broker
    sub = Subscriber(port, f"{prefix}/available")
    proc = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER_SCRIPT, f"mqtt://127.0.0.1:{port}", prefix],
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        sub.wait_for(lambda ms: [p for _, p, _ in ms][-1:] == ["online"], "online")
        os.kill(proc.pid, signal.SIGKILL)  # no clean disconnect: the broker sends the will
        proc.wait(timeout=10)
        sub.wait_for(lambda ms: [p for _, p, _ in ms][-1:] == ["offline"], "offline from the last will")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
        clear_retained(port, [f"{prefix}/available"])


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes] | None]]:
    """A Mosquitto of this test's own (the shared one must not be stopped): returns a starter; the
    test stops it with ``terminate``; everything started is stopped at the end."""
    require(Path("/usr/sbin/mosquitto").exists(), "mosquitto (Debian package)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n", encoding="utf-8")
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while not broker_up("127.0.0.1", port):
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)
        return proc

    start.port = port  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


def test_a_broker_that_is_down_never_blocks_and_the_newest_messages_arrive_after_it_comes_back(
    own_broker: Callable[[], subprocess.Popen[bytes]], prefix: str
) -> None:
    port: int = own_broker.port  # type: ignore[attr-defined]
    settings = MqttSettings(mqtt_url=f"mqtt://127.0.0.1:{port}", mqtt_topic_prefix=prefix, mqtt_queue_size=5)
    publisher = MqttPublisher(settings, client_id=f"{prefix}-pub").start()
    board = MemoryHealthBoard()
    bridge = MqttBridge(
        publisher, MemoryBus(), consumer="t1", health_board=board, camera_ids=lambda: [7], block_ms=50
    )
    try:
        for i in range(20):  # broker down: every call returns at once; only the 5 newest are kept
            publisher.publish(publisher.topic("events"), {"n": i})
        assert (publisher.queued(), publisher.dropped, publisher.connected) == (5, 15, False)

        broker = own_broker()
        sub = Subscriber(port, f"{prefix}/#")
        try:
            got = sub.wait_for(
                lambda ms: sum(t == f"{prefix}/events" for t, _, _ in ms) == 5, "the five newest"
            )
            assert [json.loads(p)["n"] for t, p, _ in got if t == f"{prefix}/events"] == [15, 16, 17, 18, 19]
            board.publish("w", {"7": {"state": "streaming"}})
            assert bridge.status_round() == 1
            sub.wait_for(lambda ms: any(t.endswith("/cameras/7/status") for t, _, _ in ms), "camera status")
        finally:
            sub.close()

        broker.terminate()  # restart: no persistence, so the retained status is gone with it
        broker.wait(timeout=10)
        deadline = time.monotonic() + WAIT_S
        while publisher.connected:
            assert time.monotonic() < deadline, "the publisher never noticed the broker going"
            time.sleep(0.05)
        own_broker()
        deadline = time.monotonic() + WAIT_S
        while not publisher.connected:
            assert time.monotonic() < deadline, "the publisher did not reconnect"
            time.sleep(0.05)
        watcher = Subscriber(port, f"{prefix}/cameras/#")
        try:
            assert bridge.status_round() == 1  # a reconnect forgets what was sent: the status goes again
            # once one subscriber has it, the broker holds it: a later subscriber must get it as retained
            watcher.wait_for(lambda ms: any(t.endswith("/cameras/7/status") for t, _, _ in ms), "status resent")
        finally:
            watcher.close()
        late = Subscriber(port, f"{prefix}/#")
        try:
            got = late.wait_for(
                lambda ms: (
                    any(t.endswith("/cameras/7/status") and r for t, _, r in ms)
                    and any(t.endswith("/available") and p == "online" for t, p, _ in ms)
                ),
                "retained status and online after the restart",
            )
            assert publisher.connects == 2
        finally:
            late.close()
    finally:
        publisher.close()


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("mqtt_url", "http://broker:1883", "GRIDPATROL_MQTT_URL must look like mqtt://host:1883"),
        ("mqtt_url", "mqtt://user:secret@broker:1883", "must not carry credentials"),
        ("mqtt_topic_prefix", "grid/#", "GRIDPATROL_MQTT_TOPIC_PREFIX must be a topic without wildcards"),
        ("mqtt_topic_prefix", "/gridpatrol", "GRIDPATROL_MQTT_TOPIC_PREFIX"),
        ("mqtt_qos", 3, "mqtt_qos"),
        ("mqtt_queue_size", 0, "mqtt_queue_size"),
    ],
)
def test_bad_mqtt_settings_are_refused_naming_the_setting(field: str, value: object, error: str) -> None:
    with pytest.raises((ValueError, ConfigError)) as info:
        MqttSettings(**{field: value})
    assert error in str(info.value)
    assert "secret" not in str(info.value)  # a password in a refused URL is not echoed
