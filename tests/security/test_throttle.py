"""The throttle stores: in-process, and Redis shared by several API processes (real Redis on loopback)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from api.login_throttle import LoginThrottle, MemoryThrottleStore, Throttled, ThrottleStore
from api.login_throttle_redis import RedisThrottleStore
from tests.support.require import require


def _redis_store() -> Iterator[ThrottleStore]:
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        require(False, "Redis on 127.0.0.1:6379")
    prefix = f"gridpatrol:test-throttle:{uuid.uuid4().hex[:8]}:"
    yield RedisThrottleStore(client, prefix=prefix)
    for key in client.scan_iter(prefix + "*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[ThrottleStore]:
    if request.param == "memory":
        yield MemoryThrottleStore()
    else:
        yield from _redis_store()


def test_window_limit_and_retry_after(store: ThrottleStore) -> None:
    now = [5_000.0]
    throttle = LoginThrottle(store=store, max_per_user=2, max_per_address=100, window_s=60, clock=lambda: now[0])
    throttle.failed(username="Zhang", remote_addr="10.0.0.1")
    now[0] += 10
    throttle.failed(username="zhang ", remote_addr="10.0.0.1")  # same user however it is typed
    with pytest.raises(Throttled) as err:
        throttle.check(username="zhang", remote_addr="10.0.0.2")
    assert err.value.retry_after_s == 50  # the first failure leaves the window 60 s after it happened
    now[0] += 50.5
    throttle.check(username="zhang", remote_addr="10.0.0.2")
    throttle.failed(username="zhang", remote_addr="10.0.0.2")
    with pytest.raises(Throttled):
        throttle.check(username="zhang", remote_addr="10.0.0.2")
    throttle.succeeded(username="zhang")
    throttle.check(username="zhang", remote_addr="10.0.0.2")


def test_two_throttles_on_one_store_share_the_counts(store: ThrottleStore) -> None:
    """Two API processes behind a load balancer: failures on one count on the other."""
    a, b = LoginThrottle(store=store, max_per_user=3), LoginThrottle(store=store, max_per_user=3)
    a.failed(username="li", remote_addr="1.2.3.4")
    b.failed(username="li", remote_addr="1.2.3.5")
    a.failed(username="li", remote_addr="1.2.3.6")
    with pytest.raises(Throttled):
        b.check(username="li", remote_addr="9.9.9.9")


def test_memory_store_stays_bounded() -> None:
    store = MemoryThrottleStore(max_keys=100)
    for i in range(1000):
        store.add(f"user:random-{i}", now=float(i), window_s=10_000)
    assert len(store._hits) <= 100
