"""Failed-login counts of two installations sharing one Redis stay apart (``GRIDPATROL_BUS_NAMESPACE``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from api.login_throttle import LoginThrottle, Throttled
from api.login_throttle_redis import KEY_PREFIX, RedisThrottleStore
from tests.support.require import require

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        require(False, "Redis on 127.0.0.1:6379")
    run = uuid.uuid4().hex[:8]
    pair = (f"test-{run}-a:", f"test-{run}-b:")
    yield pair
    for ns in pair:
        for key in client.scan_iter(f"{ns}*"):
            client.delete(key)
    client.close()


def test_installations_keep_their_own_failed_login_counts(namespaces: tuple[str, str]) -> None:
    ns_a, ns_b = namespaces
    now = [5_000.0]

    def throttle(ns: str) -> LoginThrottle:
        store = RedisThrottleStore.from_url(REDIS_URL, namespace=ns)
        return LoginThrottle(store=store, max_per_user=2, max_per_address=100, window_s=60, clock=lambda: now[0])

    city_a, city_b = throttle(ns_a), throttle(ns_b)
    for _ in range(2):
        city_a.failed(username="admin", remote_addr="10.0.0.1")
    with pytest.raises(Throttled):
        city_a.check(username="admin", remote_addr="10.0.0.1")
    city_b.check(username="admin", remote_addr="10.0.0.1")  # the other installation's admin is not locked out
    keys = {k.decode() for k in redis.Redis.from_url(REDIS_URL).scan_iter(f"{ns_a}*")}
    assert keys and all(k.startswith(f"{ns_a}{KEY_PREFIX}") for k in keys)
    assert not list(redis.Redis.from_url(REDIS_URL).scan_iter(f"{ns_b}*"))
