"""Zone preview benchmark: what one 预览 of the zone editor costs, per clip length, size and backend.

    .venv/bin/python bench/bench_zone_preview.py [--seconds 30 60 120] [--size 640x360 1920x1080] [--backend classic]

Writes the demo's fire-lane clip (a cart left in the lane) at each length and size, then runs
``gridpatrol.zone_preview.ZonePreviewService.preview`` over it at 2 fps (the worker's detect rate), as the
API does for ``POST /api/cameras/{id}/zones/preview``: wall time, CPU time, frames and events, and whether the
preview hit its bounds (600 frames, 30 CPU s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.routes.zone_preview import PreviewSource  # noqa: E402
from gridpatrol.analyze import backend_config  # noqa: E402
from gridpatrol.democlip import FIRE_LANE, LeftObject, write_clip  # noqa: E402
from gridpatrol.zone_preview import ZonePreviewService  # noqa: E402
from models.grid.zonespec import parse_zones  # noqa: E402

LANE = {
    "name": "消防通道",
    "kind": "fire_lane",
    "polygon": FIRE_LANE,
    "dwell_s": 5,
    "coverage": 0.05,
    "clear_s": 3,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 60.0, 120.0])
    parser.add_argument("--size", nargs="+", default=["640x360", "1920x1080"])
    parser.add_argument("--backend", default="classic", choices=["classic", "onnx"])
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    zones = parse_zones({"zones": [LANE]})
    sys.stdout.write(
        "| backend | size | clip s | frames | events | wall s | CPU s (analysis thread) | CPU s (process, with decode) | truncated |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        clips = Path(tmp)
        for size in args.size:
            w, h = (int(v) for v in size.split("x"))
            for seconds in args.seconds:
                name = f"lane-{w}x{h}-{int(seconds)}.mp4"
                write_clip(
                    clips / name, seconds=seconds, fps=5, size=(w, h), left=LeftObject(8.0, seconds - 8.0)
                )
                service = ZonePreviewService(
                    clips_dir=clips, backend=backend_config(args.backend, args.model)
                )
                t0, c0 = time.perf_counter(), time.process_time()
                out = service.preview(
                    camera_id=1, zones=zones, source=PreviewSource(kind="clip", clip=name), fps=2.0
                )
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                sys.stdout.write(
                    f"| {args.backend} | {w}x{h} | {seconds:.0f} | {out.frames} | {len(out.events)} | {wall:.2f} | "
                    f"{out.cpu_s:.2f} | {cpu:.2f} | {'yes' if out.truncated else 'no'} |\n"
                )
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
