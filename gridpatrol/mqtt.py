"""An MQTT publisher that never holds up the caller: a bounded queue, a sender thread, reconnects.

``publish`` only appends to a queue of ``mqtt_queue_size`` messages and returns; a thread hands them to
paho while the broker is connected. While it is away the queue fills; when full, the **oldest** queued
message is dropped (``gridpatrol_mqtt_dropped_total``), so a broker that is down for long loses the
oldest events, never the newest, and never blocks the ticketer. A message paho already accepted with
QoS 1 or 2 is resent by paho after a reconnect. ``<prefix>/available`` is ``online`` (retained) while
connected and ``offline`` through the last will when the process dies or loses the connection.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import Field, SecretStr, field_validator

from models.errors import ConfigError
from models.secrets import redact_url
from models.settings import PartSettings

logger = logging.getLogger(__name__)


class MqttSettings(PartSettings):
    """Where and how ticket and detection events go to MQTT; off while ``mqtt_url`` is empty."""

    mqtt_url: str = Field(
        default="", description="Broker, mqtt://host:1883 or mqtts://host:8883; empty = off"
    )
    mqtt_username: str = Field(default="", description="Broker user name (GRIDPATROL_MQTT_USERNAME)")
    mqtt_password: SecretStr = Field(
        default=SecretStr(""), description="Broker password (GRIDPATROL_MQTT_PASSWORD)"
    )
    mqtt_topic_prefix: str = Field(default="gridpatrol", description="First level of every topic")
    mqtt_qos: Literal[0, 1, 2] = Field(default=1, description="QoS of every message")
    mqtt_queue_size: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Messages held while the broker is away"
    )
    mqtt_keepalive_s: int = Field(
        default=30, ge=1, le=3600, description="Keep-alive; the last will fires after 1.5x"
    )
    mqtt_max_age_s: float = Field(
        default=600.0,
        gt=0,
        description="Events older than this when read (a backlog, a first start) are not published",
    )
    mqtt_status_every_s: float = Field(
        default=5.0, gt=0, description="How often camera status is checked for changes"
    )

    @field_validator("mqtt_url")
    @classmethod
    def _url(cls, value: str) -> str:
        # ConfigError, not ValueError: pydantic would echo the input (and a password in it) in its message
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(
                f"GRIDPATROL_MQTT_URL must look like mqtt://host:1883 or mqtts://host:8883 (got {redact_url(value)!r})"
            )
        if parts.username or parts.password:
            raise ConfigError(
                "GRIDPATROL_MQTT_URL must not carry credentials: use GRIDPATROL_MQTT_USERNAME and GRIDPATROL_MQTT_PASSWORD"
            )
        return value

    @field_validator("mqtt_topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value or any(c in value for c in "#+\x00") or value.startswith("/") or value.endswith("/"):
            raise ValueError(
                f"GRIDPATROL_MQTT_TOPIC_PREFIX must be a topic without wildcards or outer slashes (got {value!r})"
            )
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.mqtt_url)


@dataclass
class _Message:
    topic: str
    payload: str
    retain: bool


class MqttPublisher:
    """One broker connection of a process; ``publish`` never blocks (see the module's docstring)."""

    def __init__(self, settings: MqttSettings, *, client_id: str) -> None:
        self.settings = settings
        self.prefix = settings.mqtt_topic_prefix
        self._queue: deque[_Message] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.published = 0
        self.dropped = 0
        self.connects = 0
        #: called (from paho's thread) after each connect: re-publish retained state a fresh broker lost
        self.on_connected: list[Any] = []
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        client.will_set(self.topic("available"), "offline", qos=1, retain=True)
        if settings.mqtt_username:
            client.username_pw_set(settings.mqtt_username, settings.mqtt_password.get_secret_value() or None)
        if urlsplit(settings.mqtt_url).scheme == "mqtts":
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self._client = client
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)

    def topic(self, *levels: str | int) -> str:
        return "/".join([self.prefix, *(str(level) for level in levels)])

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def start(self) -> MqttPublisher:
        parts = urlsplit(self.settings.mqtt_url)
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        assert parts.hostname is not None  # checked by MqttSettings
        self._client.connect_async(parts.hostname, port, keepalive=self.settings.mqtt_keepalive_s)
        self._client.loop_start()  # paho's network thread: connects, reconnects with backoff
        self._sender.start()
        logger.info("mqtt: publishing to %s under %s/", redact_url(self.settings.mqtt_url), self.prefix)
        return self

    def publish(self, topic: str, payload: dict[str, Any] | str, *, retain: bool = False) -> None:
        """Queue a message for ``topic`` (a full topic, see :meth:`topic`); drops the oldest when full."""
        text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, default=str)
        with self._cond:
            if len(self._queue) >= self.settings.mqtt_queue_size:
                self._queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    logger.warning(
                        "mqtt: broker away, queue full: %d oldest messages dropped so far", self.dropped
                    )
            self._queue.append(_Message(topic, text, retain))
            self._cond.notify()

    def _on_connect(
        self, client: paho.Client, userdata: object, flags: object, reason: Any, properties: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            logger.warning("mqtt: broker refused the connection: %s", reason)
            return
        self.connects += 1
        client.publish(self.topic("available"), "online", qos=1, retain=True)
        self._connected.set()
        logger.info("mqtt: connected to %s", redact_url(self.settings.mqtt_url))
        for callback in self.on_connected:
            callback()
        with self._cond:
            self._cond.notify_all()

    def _on_disconnect(
        self, client: paho.Client, userdata: object, flags: object, reason: Any, properties: object
    ) -> None:
        if self._connected.is_set():
            logger.warning(
                "mqtt: disconnected from %s (%s); reconnecting", redact_url(self.settings.mqtt_url), reason
            )
        self._connected.clear()

    def _send_loop(self) -> None:
        qos = self.settings.mqtt_qos
        while not self._stop.is_set():
            with self._cond:
                while not self._stop.is_set() and not (self._queue and self._connected.is_set()):
                    self._cond.wait(1.0)
                if self._stop.is_set():
                    return
                message = self._queue.popleft()
            try:
                info = self._client.publish(message.topic, message.payload, qos=qos, retain=message.retain)
                ok = info.rc == paho.MQTT_ERR_SUCCESS
            except (OSError, ValueError, RuntimeError) as err:
                logger.warning("mqtt: publish to %s failed: %s", message.topic, err)
                ok = False
            if ok:
                self.published += 1
                continue
            with self._cond:  # not taken (connection just lost): back to the front, try again soon
                self._queue.appendleft(message)
            self._stop.wait(0.5)

    def close(self, *, timeout_s: float = 2.0) -> None:
        """Flush what can be sent within ``timeout_s``, say ``offline`` and disconnect."""
        deadline = threading.Event()
        waited = 0.0
        while self.queued() and self.connected and waited < timeout_s:
            deadline.wait(0.05)
            waited += 0.05
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self.connected:
            info = self._client.publish(self.topic("available"), "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=1.0)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()


class MqttCollector(Collector):
    """Prometheus view of a publisher: connected, published, dropped, queued."""

    def __init__(self, publisher: MqttPublisher) -> None:
        self._publisher = publisher

    def collect(self) -> Iterator[Metric]:
        p = self._publisher
        connected = GaugeMetricFamily("gridpatrol_mqtt_connected", "1 while connected to the MQTT broker")
        connected.add_metric([], 1.0 if p.connected else 0.0)
        yield connected
        queued = GaugeMetricFamily("gridpatrol_mqtt_queue_depth", "Messages waiting for the MQTT broker")
        queued.add_metric([], p.queued())
        yield queued
        published = CounterMetricFamily("gridpatrol_mqtt_published", "Messages handed to the MQTT broker")
        published.add_metric([], p.published)
        yield published
        dropped = CounterMetricFamily(
            "gridpatrol_mqtt_dropped",
            "Messages dropped (oldest first) because the queue was full while the broker was away",
        )
        dropped.add_metric([], p.dropped)
        yield dropped
