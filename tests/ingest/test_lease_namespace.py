"""Two installations sharing one Redis (``GRIDPATROL_BUS_NAMESPACE``) must not take each other's cameras:
both count camera ids from 1. Real Redis on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from ingest.leases import RedisLeaseStore
from tests.support.require import require

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    try:
        ok = bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except redis.RedisError:
        ok = False
    require(ok, "Redis on 127.0.0.1:6379")
    run = uuid.uuid4().hex[:8]
    pair = (f"test-{run}-a:", f"test-{run}-b:")
    yield pair
    client = redis.Redis.from_url(REDIS_URL)
    for ns in pair:
        for key in client.scan_iter(f"{ns}*"):
            client.delete(key)
    client.close()


def test_each_installation_owns_its_own_camera_1(namespaces: tuple[str, str]) -> None:
    ns_a, ns_b = namespaces
    city_a = RedisLeaseStore.from_url(REDIS_URL, namespace=ns_a)
    city_a_other_worker = RedisLeaseStore.from_url(REDIS_URL, namespace=ns_a)
    city_b = RedisLeaseStore.from_url(REDIS_URL, namespace=ns_b)

    assert city_a.claim("1", "worker-a", 30) is True
    assert city_b.claim("1", "worker-b", 30) is True  # another installation's camera 1
    assert city_a_other_worker.claim("1", "worker-a2", 30) is False  # same installation: still exclusive
    assert city_a.owners(["1"]) == {"1": "worker-a"}
    assert city_b.owners(["1"]) == {"1": "worker-b"}
    assert city_b.renew(["1"], "worker-b", 30) == {"1"}

    city_a.heartbeat("worker-a", 30, capacity=10)
    city_b.heartbeat("worker-b", 30, capacity=20)
    assert city_a.live_workers() == {"worker-a": 10}  # fair shares are computed per installation
    assert city_b.live_workers() == {"worker-b": 20}

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    assert client.get(f"{ns_a}gridpatrol:lease:1") == "worker-a"
    assert client.get(f"{ns_b}gridpatrol:lease:1") == "worker-b"
    client.close()
    city_a.release(["1"], "worker-a")
    assert city_b.owners(["1"]) == {"1": "worker-b"}
