"""Faults the whole system survives, and how long each recovery takes.

The system of tests/system (two workers, two ticketers, the API, the gateway and a camera host, each in
a network namespace of its own, over a dedicated PostgreSQL, Redis and Mosquitto; four replayed
cameras) gets five faults one after the other; each is checked (what recovery means) and timed:

- kill a worker (SIGKILL): its cameras stream on the other worker; time to the first ticket occurrence
  from a moved camera; the worker is started again afterwards
- kill a ticketer (SIGKILL) mid-stream, a third of the way through a burst of 2,000 rule events on top of
  the cameras' own: every event published is an occurrence exactly once, every episode one ticket episode
- restart Redis: no process restarted, all ready again, every camera streams, no event lost
- restart PostgreSQL: no process restarted, all ready again, the events of the outage become occurrences
- stop a camera (its host's gateway): its health leaves ``streaming``, the retained MQTT status says
  ``online: false``; it streams again (``online: true``) once the camera is back

Run as root: ``.venv/bin/python bench/bench_faults.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.bus.messages import RULE_EVENTS, RuleEvent  # noqa: E402
from models.bus.redis_streams import RedisBus  # noqa: E402
from tests.system.cluster import (  # noqa: E402
    CAMERA_HOST,
    CAMERAS,
    OFFLINE_NOTICE_S,
    System,
    running_system,
    wait_until,
)

BOUND_S = 120.0  # how long any recovery may take before the run fails (a bound, not a goal)


class StatusWatcher:
    """The retained MQTT status of one camera and its offline/online notices, as an integration sees them."""

    def __init__(self, system: System, camera_id: int) -> None:
        assert system.mqtt is not None
        self.last: dict[str, Any] | None = None
        self.notices: list[str] = []  # camera.offline / camera.online, in arrival order
        self._lock = threading.Lock()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:8]}")
        topic = f"gridpatrol/cameras/{camera_id}/#"
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect(system.mqtt.host, system.mqtt.port)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            if msg.topic.endswith("/events"):
                self.notices.append(str(json.loads(msg.payload)["event"]))
            else:
                self.last = json.loads(msg.payload)

    def noticed(self) -> list[str]:
        with self._lock:
            return list(self.notices)

    def online(self) -> bool | None:
        with self._lock:
            return None if self.last is None else bool(self.last.get("online"))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def occurrence_after(system: System, cameras: set[int], since: datetime) -> bool:
    done = set(system.occurrence_ids())
    return any(
        e.camera_id in cameras and e.at > since and e.event_id in done for e in system.published_events()
    )


def kill_worker(system: System) -> dict[str, float]:
    holders = system.holders()
    victim = next(w for w in system.workers() if w.pid in holders.values())
    survivor = next(w for w in system.workers() if w is not victim)
    moved = {system.camera_ids[c] for c, pid in holders.items() if pid == victim.pid}
    at, t0 = datetime.now(UTC), time.monotonic()
    victim.kill()
    wait_until(
        lambda: set(system.holders().values()) == {survivor.pid}, timeout=BOUND_S, what="cameras moved"
    )
    moved_s = time.monotonic() - t0
    wait_until(
        lambda: occurrence_after(system, moved, at), timeout=BOUND_S, what="a ticket from a moved camera"
    )
    ticket_s = time.monotonic() - t0
    victim.start()  # back to two workers for the next fault
    wait_until(victim.healthy, timeout=BOUND_S, what="the worker started again")
    wait_until(lambda: len(set(system.holders().values())) == 2, timeout=BOUND_S, what="cameras shared again")
    return {"cameras streaming again s": moved_s, "first ticket occurrence from a moved camera s": ticket_s}


def burst(system: System, episodes: int) -> list[RuleEvent]:
    """Rule events of ``episodes`` short episodes on the real cameras (started, 3 x updated, ended), so
    that a ticketer is killed while it holds entries, not between two events of the clips."""
    t0 = datetime.now(UTC)
    cams = sorted(system.camera_ids.values())
    events = []
    for i in range(episodes):
        start = t0 + timedelta(milliseconds=i)
        for k, kind in enumerate(["started", "updated", "updated", "updated", "ended"]):
            events.append(
                RuleEvent(
                    event_id=f"burst-{t0.timestamp():.0f}-{i}-{k}",
                    type=kind,  # type: ignore[arg-type]
                    camera_id=cams[i % len(cams)],
                    zone=f"burst-{i}",
                    rule="fire_lane_blockage",
                    episode_start=start,
                    at=start + timedelta(seconds=k),
                    count=1,
                )
            )
    return events


def kill_ticketer(system: System, *, episodes: int = 400) -> dict[str, float]:
    bus = RedisBus(system.redis.url)
    events = burst(system, episodes)
    base = len(system.occurrence_ids())
    bus.publish(RULE_EVENTS, events)
    wait_until(
        lambda: len(system.occurrence_ids()) >= base + len(events) // 3,
        timeout=BOUND_S,
        what="a third handled",
    )
    victim = system.procs["ticketer-1"]
    client = redis.Redis.from_url(system.redis.url)
    held = [
        c
        for c in client.xinfo_consumers(RULE_EVENTS, "ticketer")
        if c["name"].decode().endswith(f"-{victim.pid}")
    ]
    client.close()
    t0 = time.monotonic()
    victim.kill()  # mid-stream: events keep arriving, and it may hold some unacknowledged
    published_at_kill = {e.event_id for e in system.published_events()}
    wait_until(
        lambda: published_at_kill <= set(system.occurrence_ids()), timeout=BOUND_S, what="events handled"
    )
    handled_s = time.monotonic() - t0
    victim.start()
    wait_until(victim.healthy, timeout=BOUND_S, what="the ticketer started again")
    wait_until(system.handled, timeout=BOUND_S, what="every event handled")
    occurrences = system.occurrence_ids()
    events = system.published_events()
    assert len(occurrences) == len(set(occurrences)), "an event handled twice"
    assert {e.event_id for e in events} == set(occurrences), "occurrences differ from the events published"
    keys = system.episode_keys()
    assert len(keys) == len(set(keys)) == len({e.episode_key for e in events}), "an episode lost or doubled"
    return {
        "every event published at the kill handled s": handled_s,
        "entries the killed ticketer held": float(sum(int(c["pending"]) for c in held)),
    }


def restart_server(system: System, which: str, outage_s: float) -> dict[str, float]:
    server = system.redis if which == "redis" else system.pg
    pids = {h: p.pid for h, p in system.procs.items()}
    server.stop()
    down_at = datetime.now(UTC)
    time.sleep(outage_s)
    t0 = time.monotonic()
    server.start()
    wait_until(system.all_ready, timeout=BOUND_S, what="every process ready")
    ready_s = time.monotonic() - t0
    wait_until(lambda: None not in system.holders().values(), timeout=BOUND_S, what="every camera streams")
    streaming_s = time.monotonic() - t0
    wait_until(
        lambda: occurrence_after(system, set(system.camera_ids.values()), down_at),
        timeout=BOUND_S,
        what="a ticket",
    )
    ticket_s = time.monotonic() - t0
    wait_until(system.handled, timeout=BOUND_S, what="every event handled")
    assert {h: p.pid for h, p in system.procs.items()} == pids and system.all_alive(), "a process restarted"
    return {
        "every process ready s": ready_s,
        "every camera streaming s": streaming_s,
        "first ticket occurrence after s": ticket_s,
    }


def stop_camera(system: System) -> dict[str, float]:
    name = CAMERAS[-1][0]
    cam = system.camera_ids[name]
    host = system.procs[CAMERA_HOST]
    watcher = StatusWatcher(system, cam)
    headers = system.admin_headers()

    def api_state() -> str:
        return str(
            httpx.get(f"{system.api()}/api/cameras/{cam}/health", headers=headers, timeout=5).json()["state"]
        )

    try:
        wait_until(lambda: watcher.online() is True, timeout=BOUND_S, what="the camera online on MQTT")
        t0 = time.monotonic()
        host.stop()
        wait_until(lambda: api_state() != "streaming", timeout=BOUND_S, what="health shows the camera down")
        health_s = time.monotonic() - t0
        wait_until(lambda: watcher.online() is False, timeout=BOUND_S, what="the MQTT status says offline")
        status_s = time.monotonic() - t0
        # the notice to people comes once the outage outlasts GRIDPATROL_CAMERA_OFFLINE_NOTICE_S (10 s here)
        wait_until(
            lambda: watcher.noticed() == ["camera.offline"], timeout=BOUND_S, what="a camera.offline notice"
        )
        notice_s = time.monotonic() - t0
        t1 = time.monotonic()
        host.start()
        wait_until(lambda: api_state() == "streaming", timeout=BOUND_S, what="the camera streams again")
        back_s = time.monotonic() - t1
        wait_until(lambda: watcher.online() is True, timeout=BOUND_S, what="the MQTT status says online")
        online_s = time.monotonic() - t1
        wait_until(
            lambda: watcher.noticed() == ["camera.offline", "camera.online"],
            timeout=BOUND_S,
            what="one camera.online notice after the one camera.offline",
        )
        back_notice_s = time.monotonic() - t1
    finally:
        watcher.close()
    return {
        "health shows it down s": health_s,
        "MQTT status offline s": status_s,
        f"camera.offline notice s (threshold {OFFLINE_NOTICE_S:g} s)": notice_s,
        "streaming after return s": back_s,
        "MQTT status online after return s": online_s,
        "camera.online notice after return s": back_notice_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=1, help="times to run the whole fault sequence")
    parser.add_argument("--lease-ttl", type=float, default=4.0, help="GRIDPATROL_LEASE_TTL_S of the workers")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_faults needs root (network namespaces)")
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="gp-bench-faults-") as tmp:
        t0 = time.monotonic()
        with running_system(Path(tmp), with_mqtt=True, lease_ttl_s=args.lease_ttl) as system:
            print(f"system up in {time.monotonic() - t0:.1f}s", flush=True)
            wait_until(
                lambda: len(set(system.holders().values()) - {None}) == 2,
                timeout=BOUND_S,
                what="both workers stream",
            )
            wait_until(lambda: system.tickets() >= 1, timeout=BOUND_S, what="a first ticket")
            faults = [
                ("kill a worker", lambda: kill_worker(system)),
                ("kill a ticketer mid-stream", lambda: kill_ticketer(system)),
                ("restart Redis (2 s outage)", lambda: restart_server(system, "redis", 2.0)),
                ("restart PostgreSQL (2 s outage)", lambda: restart_server(system, "postgres", 2.0)),
                ("stop a camera, then start it", lambda: stop_camera(system)),
            ]
            for r in range(args.rounds):
                for fault, run in faults:
                    try:
                        timings = run()
                    except AssertionError as err:
                        print(f"{fault}: FAILED {err}\n{system.logs()}", flush=True)
                        raise
                    for what, seconds in timings.items():
                        results.setdefault(fault, {}).setdefault(what, []).append(seconds)
                    print(
                        f"round {r + 1} {fault}: " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()),
                        flush=True,
                    )
            print(
                f"tickets {system.tickets()}, occurrences {len(system.occurrence_ids())}, events {len(system.published_events())}"
            )
    print("\n| fault | measured | median | max |\n|---|---|---|---|")
    for fault, timings in results.items():
        for what, values in timings.items():
            print(f"| {fault} | {what} | {statistics.median(values):.1f} | {max(values):.1f} |")


if __name__ == "__main__":
    main()
