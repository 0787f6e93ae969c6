"""From the bus to MQTT, in the ticketer process: ticket notices, detection events, camera status.

Ticket notices (from any process: the ticketer, the API's transitions) and rule events are read with
an ``mqtt`` consumer group of their own, so with several ticketers each message is published by one of
them; it is acknowledged once handed to the publisher's bounded queue (what a full queue drops is said
in ``gridpatrol.mqtt``). Detection events follow Frigate's ``frigate/events`` shape: ``type``
new/update/end with ``before`` and ``after``. Camera status is read from the workers' health board and
published retained on change, and again after every (re)connect (a restarted broker may have lost it).
Topics and payloads: docs/mqtt.md.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from gridpatrol.mqtt import MqttPublisher
from models.bus.health_board import HealthBoard
from models.bus.messages import RULE_EVENTS, TICKET_NOTICES, RuleEvent, TicketNotice
from models.bus.protocol import Bus
from models.errors import BusError

logger = logging.getLogger(__name__)
GROUP = "mqtt"
EVENT_TYPES = {"started": "new", "updated": "update", "ended": "end"}
#: episodes whose last event is remembered for ``before`` (oldest forgotten first)
EPISODES_KEPT = 10_000


def detection_payload(event: RuleEvent) -> dict[str, Any]:
    """The ``after`` object of a detection event."""
    return {
        "id": event.episode_key,
        "event_id": event.event_id,
        "camera_id": event.camera_id,
        "zone": event.zone,
        "label": event.rule,
        "rule": event.rule,
        "start_time": event.episode_start.timestamp(),
        "end_time": event.at.timestamp() if event.type == "ended" else None,
        "at": event.at.isoformat(),
        "count": event.count,
        "score": event.score,
        "boxes": event.boxes,
        "has_snapshot": event.evidence_key is not None,
        "has_clip": event.clip_due is not None,
    }


def ticket_payload(notice: TicketNotice) -> dict[str, Any]:
    return notice.model_dump(mode="json", by_alias=False, exclude={"schema_", "v"})


def publish_camera_notice(publisher: MqttPublisher, payload: dict[str, Any]) -> None:
    """A camera-offline or back-online notice (models/grid/outages.py), raised by one ticketer, on
    ``<prefix>/cameras/<camera id>/events`` (not retained: the status topic holds the current state)."""
    publisher.publish(publisher.topic("cameras", payload["camera_id"], "events"), payload)


class MqttBridge:
    def __init__(
        self,
        publisher: MqttPublisher,
        bus: Bus,
        *,
        consumer: str,
        health_board: HealthBoard,
        camera_ids: Callable[[], list[int]],
        block_ms: int = 500,
    ) -> None:
        self.publisher, self.bus, self.consumer = publisher, bus, consumer
        self.health_board, self.camera_ids, self.block_ms = health_board, camera_ids, block_ms
        self._episodes: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._status: dict[int, tuple[str, str | None]] = {}
        self._status_lock = threading.Lock()
        #: bus messages older than ``mqtt_max_age_s`` when read, acknowledged without publishing
        self.stale = 0
        publisher.on_connected.append(self._forget_status)

    def _forget_status(self) -> None:
        with self._status_lock:
            self._status.clear()  # the next status round re-publishes every camera

    def on_rule_event(self, event: RuleEvent) -> None:
        after = detection_payload(event)
        before = self._episodes.pop(event.episode_key, after)
        if event.type != "ended":
            self._episodes[event.episode_key] = after
            while len(self._episodes) > EPISODES_KEPT:
                self._episodes.popitem(last=False)
        message = {"type": EVENT_TYPES[event.type], "before": before, "after": after}
        self.publisher.publish(self.publisher.topic("events"), message)

    def on_ticket_notice(self, notice: TicketNotice) -> None:
        self.publisher.publish(self.publisher.topic("tickets"), ticket_payload(notice))

    def step(self, topic: str) -> int:
        deliveries = self.bus.consume(
            topic, group=GROUP, consumer=self.consumer, count=200, block_ms=self.block_ms
        )
        oldest = datetime.now(UTC) - timedelta(seconds=self.publisher.settings.mqtt_max_age_s)
        for d in deliveries:
            at = getattr(d.message, "at", None)
            if isinstance(at, datetime) and at < oldest:  # history (a first start on an old stream): not live
                self.stale += 1
                continue
            if isinstance(d.message, RuleEvent):
                self.on_rule_event(d.message)
            elif isinstance(d.message, TicketNotice):
                self.on_ticket_notice(d.message)
        if deliveries:
            self.bus.ack(topic, group=GROUP, ids=[d.id for d in deliveries])
        return len(deliveries)

    def status_round(self) -> int:
        """Publish (retained) the status of each camera whose state changed; returns how many."""
        sent = 0
        ids = list(self.camera_ids())
        snaps = self.health_board.get_many([str(camera_id) for camera_id in ids])
        for camera_id in ids:
            snap = snaps[str(camera_id)]
            state = str(snap.get("state")) if snap else "unknown"  # no worker posting: offline or unowned
            reason = snap.get("reason") if snap else None
            with self._status_lock:
                if self._status.get(camera_id) == (state, reason):
                    continue
                self._status[camera_id] = (state, reason)
            payload = {
                "camera_id": camera_id,
                "state": state,
                "online": state == "streaming",
                "reason": reason,
                "analysed_fps": snap.get("analysed_fps") if snap else None,
                "worker": snap.get("worker") if snap else None,
            }
            self.publisher.publish(self.publisher.topic("cameras", camera_id, "status"), payload, retain=True)
            sent += 1
        return sent

    def _loop(
        self, name: str, stop: threading.Event, step: Callable[[], object], idle_s: float = 0.0
    ) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                step()
                backoff = 0.5
            except BusError as err:  # Redis away: retry; MQTT is a convenience, tickets go on
                logger.warning("mqtt bridge %s: %s; retrying in %.1fs", name, err, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            except Exception:
                logger.exception("mqtt bridge %s: round failed; retrying in %.1fs", name, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if idle_s:
                stop.wait(idle_s)

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        every = self.publisher.settings.mqtt_status_every_s
        loops = [
            ("mqtt-tickets", lambda: self.step(TICKET_NOTICES), 0.0),
            ("mqtt-events", lambda: self.step(RULE_EVENTS), 0.0),
            ("mqtt-status", self.status_round, every),
        ]
        threads = []
        for name, step, idle in loops:
            thread = threading.Thread(
                target=self._loop, args=(name, stop, step, idle), name=name, daemon=True
            )
            thread.start()
            threads.append(thread)
        return threads
