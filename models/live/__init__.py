"""Live pictures for the browser: demand for a camera's tiles, and the tiles themselves.

Workers encode a small JPEG of a frame they already decoded only for cameras someone watches (a demand
with a TTL says which), and post it on the tile board; API processes fan each tile out to every viewer
and keep the newest one per camera for snapshots. In-process when embedded, Redis when distributed.
"""

from models.live.board import MemoryTileBoard, RedisTileBoard, TileBoard, make_tile_board
from models.live.publisher import TilePublisher
from models.live.tiles import Tile, TileDetection, width_bucket

__all__ = [
    "MemoryTileBoard",
    "RedisTileBoard",
    "Tile",
    "TileBoard",
    "TileDetection",
    "TilePublisher",
    "make_tile_board",
    "width_bucket",
]
