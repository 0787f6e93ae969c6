"""The tile board, in-process and on a real Redis: demand lapses by itself, tiles reach listeners and
the latest one stays readable, and the worker's publisher encodes only watched cameras at their pace."""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import redis

from models.live.board import MemoryTileBoard, RedisTileBoard, TileBoard, make_tile_board
from models.live.publisher import TilePublisher, tile_detections
from models.live.tiles import Tile, TileDetection, parse_wire, width_bucket
from tests.models.test_bus import REDIS_URL, redis_available
from tests.support.require import require


@pytest.fixture(params=["memory", "redis"])
def board(request: pytest.FixtureRequest) -> Iterator[TileBoard]:
    if request.param == "memory":
        b: TileBoard = MemoryTileBoard()
        yield b
        b.close()
        return
    require(redis_available(), "Redis on 127.0.0.1:6379")
    ns = f"test-tiles-{uuid.uuid4().hex[:8]}:"
    b = make_tile_board(REDIS_URL, namespace=ns)
    assert isinstance(b, RedisTileBoard)
    yield b
    b.close()
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{ns}*"):
        client.delete(key)


def frame(width: int = 640, height: int = 360, shade: int = 90) -> np.ndarray:
    img = np.full((height, width, 3), shade, np.uint8)
    cv2.rectangle(img, (40, 40), (200, 160), (0, 0, 255), -1)
    return img


def test_demand_is_per_camera_the_widest_wins_and_it_lapses(board: TileBoard) -> None:
    assert board.wanted([1, 2, 3]) == {}
    board.want([1, 2], width=300, ttl_s=0.5)
    board.want([2], width=600, ttl_s=0.5)
    assert board.wanted([1, 2, 3]) == {1: 320, 2: 640}
    deadline = time.monotonic() + 10
    while board.wanted([1, 2]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert board.wanted([1, 2]) == {}  # nobody repeated it: the cameras cost nothing again


def test_a_tile_reaches_every_listener_and_stays_the_latest(board: TileBoard) -> None:
    got: queue.Queue[Tile] = queue.Queue()
    other: queue.Queue[Tile] = queue.Queue()
    subs = [board.listen(got.put), board.listen(other.put)]
    det = TileDetection((0.1, 0.2, 0.3, 0.4), "person", 0.87)
    tile = Tile(
        camera_id=7, captured_at=1_700_000_000.25, jpeg=b"\xff\xd8jpeg\xff\xd9", width=480, height=270,
        detections=(det,), rules=("crowding",), worker="w1", source_wh=(1920, 1080),
    )  # fmt: skip
    board.publish(tile)
    for q in (got, other):
        received = q.get(timeout=5)
        assert received == tile
    assert board.latest(7) == tile
    assert board.latest(8) is None
    for s in subs:
        s.close()
    board.publish(Tile(camera_id=7, captured_at=1.0, jpeg=b"x", width=1, height=1))
    assert board.latest(7) is not None and board.latest(7).captured_at == 1.0  # type: ignore[union-attr]
    time.sleep(0.2)
    assert got.empty()  # closed listeners hear nothing more


def test_the_wire_message_carries_id_time_and_jpeg() -> None:
    tile = Tile(
        camera_id=4_000_000_001, captured_at=1_700_000_000.123, jpeg=b"\xff\xd8abc", width=2, height=2
    )
    message = tile.wire()
    assert message[0] == 0x01
    assert parse_wire(message) == (4_000_000_001, 1_700_000_000_123, b"\xff\xd8abc")
    assert Tile.unpack(tile.pack()) == tile


@pytest.mark.parametrize(
    ("asked", "bucket"), [(1, 160), (160, 160), (161, 320), (480, 480), (1000, 1280), (5000, 1920)]
)
def test_widths_round_up_to_a_bucket(asked: int, bucket: int) -> None:
    assert width_bucket(asked) == bucket


def test_publisher_encodes_only_watched_cameras_at_their_pace(board: TileBoard) -> None:
    got: queue.Queue[Tile] = queue.Queue()
    sub = board.listen(got.put)
    pub = TilePublisher(board, worker_id="w1", fps=1.0, alarm_fps=2.0).start()
    try:
        pub.refresh_demand([1, 2], force=True)
        assert pub.due(1) is None and pub.due(2) is None  # nobody watches: nothing to encode
        board.want([2], width=320)
        pub.refresh_demand([1, 2], force=True)
        assert pub.due(1) is None
        width = pub.due(2)
        assert width == 320
        boxes = tile_detections(np.array([[64, 36, 320, 180]]), np.array([0.9]), ["car"], frame_wh=(640, 360))
        pub.offer(
            2,
            frame(),
            captured_at=1_700_000_000.0,
            width=width,
            detections=boxes,
            rules=["fire_lane_blockage"],
        )
        tile = got.get(timeout=5)
        assert (tile.camera_id, tile.width, tile.height, tile.source_wh) == (2, 320, 180, (640, 360))
        assert tile.detections[0].xyxy_norm == pytest.approx((0.1, 0.1, 0.5, 0.5))
        assert tile.rules == ("fire_lane_blockage",) and tile.alarm
        decoded = cv2.imdecode(np.frombuffer(tile.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (180, 320, 3)
        # right after a tile, the next is not due yet (1 per second; an alarm makes it 2 per second)
        assert pub.due(2) is None and pub.due(2, alarm=True) is None
        # a camera narrower than the demand is never scaled up
        small = pub.offer(2, frame(160, 90), captured_at=1_700_000_001.0, width=640)
        assert (small.width, small.height) == (160, 90)
        assert pub.encoded == 2
    finally:
        pub.stop()
        sub.close()
