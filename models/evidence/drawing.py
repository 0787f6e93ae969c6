"""Overlays drawn with Pillow: zone polygons with their (Chinese) names, detection boxes, banners.

Text is drawn in a CJK font from Debian's ``fonts-noto-cjk`` (found by path, a clear
:class:`FontMissing` otherwise) on a dark plate with a light outline, so that a label stays readable on
any background. Coordinates are normalised (0..1), as zones and tile detections are stored.

    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    draw_overlay(image, zones=[ZoneShape("消防通道", "fire_lane", [(0.1, 0.5), ...])],
                 boxes=[BoxShape((0.2, 0.3, 0.4, 0.6), "car", 0.91)])
    draw_banner(image, "消防通道堵塞（开始）\\n摄像头：北门 ｜ 区域：消防通道 ｜ 2026-11-30 12:00:05 +08:00")
    jpeg = to_jpeg(image)
"""

from __future__ import annotations

import glob
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from models.errors import ConfigError

#: where Debian's fonts-noto-cjk puts its fonts (Sans before Serif, Bold before Regular for legibility)
FONT_PATTERNS: tuple[str, ...] = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-*.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-*.ttc",
    "/usr/share/fonts/**/NotoSansCJK*.tt[cf]",
    "/usr/share/fonts/**/NotoSansCJK*.otf",
)
#: the face of a ``.ttc`` collection with Simplified Chinese glyph forms ("Noto Sans CJK SC")
TTC_SC_INDEX = 2
#: RGB colours per zone kind (fire lanes red, roads orange, crowd areas yellow, masks grey)
ZONE_COLOURS: dict[str, tuple[int, int, int]] = {
    "fire_lane": (230, 40, 40),
    "road": (255, 150, 0),
    "crowd_area": (255, 215, 0),
    "mask": (150, 150, 150),
}
BOX_COLOUR = (0, 220, 255)
PLATE = (0, 0, 0, 170)


class FontMissing(ConfigError):
    """No CJK font: Chinese labels would be boxes."""


@dataclass(frozen=True)
class ZoneShape:
    """A zone to draw: its name (shown), kind (colour) and polygon in normalised coordinates."""

    name: str
    kind: str
    polygon_norm: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class BoxShape:
    """A detection box in normalised coordinates with its label and score (None: no score shown)."""

    xyxy_norm: tuple[float, float, float, float]
    label: str
    score: float | None = None


def find_cjk_font(patterns: Sequence[str] = FONT_PATTERNS) -> Path:
    """The first CJK font file found; :class:`FontMissing` naming the package when there is none."""
    for pattern in patterns:
        found = sorted(glob.glob(pattern, recursive=True))
        if found:
            return Path(found[0])
    raise FontMissing(
        "no CJK font found (looked for " + ", ".join(patterns[:2]) + "): install Debian's fonts-noto-cjk "
        "(apt-get install fonts-noto-cjk) so that Chinese zone names and banners can be drawn"
    )


@lru_cache(maxsize=32)
def cjk_font(size: int, path: str | None = None) -> ImageFont.FreeTypeFont:
    """The CJK font at ``size`` pixels (cached); ``path`` overrides the search."""
    font_path = Path(path) if path else find_cjk_font()
    index = TTC_SC_INDEX if font_path.suffix.lower() == ".ttc" else 0
    try:
        return ImageFont.truetype(str(font_path), size, index=index)
    except OSError:
        return ImageFont.truetype(str(font_path), size)


def _font_size(image: Image.Image, scale: float) -> int:
    return max(12, int(round(min(image.size) * scale)))


def draw_label(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    *,
    font: ImageFont.FreeTypeFont,
    colour: tuple[int, int, int] = (255, 255, 255),
    bounds: tuple[int, int] | None = None,
) -> None:
    """``text`` with its top-left at ``xy`` on a dark plate, kept inside ``bounds`` (width, height)."""
    x, y = xy
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=1)
    tw, th = right - left, bottom - top
    pad = max(2, th // 6)
    if bounds is not None:
        x = min(max(0, x), max(0, bounds[0] - tw - 2 * pad))
        y = min(max(0, y), max(0, bounds[1] - th - 2 * pad))
    draw.rectangle((x, y, x + tw + 2 * pad, y + th + 2 * pad), fill=PLATE)
    draw.text(
        (x + pad - left, y + pad - top), text, font=font, fill=colour, stroke_width=1, stroke_fill=(0, 0, 0)
    )


def draw_overlay(
    image: Image.Image,
    *,
    zones: Sequence[ZoneShape] = (),
    boxes: Sequence[BoxShape] = (),
    font_path: str | None = None,
) -> Image.Image:
    """Draw zones (translucent fill, outline, name) and detection boxes (label and score) in place."""
    w, h = image.size
    font = cjk_font(_font_size(image, 0.035), font_path)
    if image.mode != "RGB":
        image = image.convert("RGB")
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    line = max(2, min(w, h) // 180)
    for zone in zones:
        colour = ZONE_COLOURS.get(zone.kind, (0, 200, 0))
        points = [(float(x) * w, float(y) * h) for x, y in zone.polygon_norm]
        if len(points) < 3:
            continue
        draw.polygon(points, fill=(*colour, 50), outline=(*colour, 255), width=line)
        x0, y0 = min(p[0] for p in points), min(p[1] for p in points)
        draw_label(draw, (x0 + line, y0 + line), zone.name, font=font, colour=colour, bounds=(w, h))
    for box in boxes:
        x1, y1, x2, y2 = box.xyxy_norm
        rect = (x1 * w, y1 * h, x2 * w, y2 * h)
        draw.rectangle(rect, outline=(*BOX_COLOUR, 255), width=line)
        text = box.label if box.score is None else f"{box.label} {box.score:.2f}"
        label_h = font.size + 8
        draw_label(
            draw,
            (rect[0], rect[1] - label_h if rect[1] >= label_h else rect[1]),
            text,
            font=font,
            colour=BOX_COLOUR,
            bounds=(w, h),
        )
    base = image.convert("RGBA")
    base.alpha_composite(layer)
    image.paste(base.convert("RGB"))
    return image


def draw_banner(
    image: Image.Image, text: str, *, bottom: bool = False, font_path: str | None = None
) -> Image.Image:
    """A full-width caption (event, zone, time) at the top or bottom of the image, in place.

    ``text`` may hold several lines (``"\\n"``). The font shrinks (not below 12 px) until the widest line
    fits the image's width; a line that still does not fit is cut with an ellipsis.
    """
    w, h = image.size
    lines = text.split("\n")
    size = _font_size(image, 0.045)
    font = cjk_font(size, font_path)
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)

    def width(line: str, f: ImageFont.FreeTypeFont) -> float:
        left, _, right, _ = draw.textbbox((0, 0), line, font=f, stroke_width=1)
        return right - left

    pad = max(4, size // 4)
    while size > 12 and max(width(line, font) for line in lines) > w - 2 * pad:
        size -= 1
        font = cjk_font(size, font_path)
        pad = max(4, size // 4)
    lines = [_fit(line, lambda s: width(s, font), w - 2 * pad) for line in lines]
    ascent, descent = font.getmetrics()
    step = ascent + descent + max(2, size // 6)
    band = step * len(lines) - max(2, size // 6) + 2 * pad
    y0 = h - band if bottom else 0
    draw.rectangle((0, y0, w, y0 + band), fill=PLATE)
    for i, line in enumerate(lines):
        draw.text(
            (pad, y0 + pad + i * step),
            line,
            font=font,
            fill=(255, 255, 255),
            stroke_width=1,
            stroke_fill=(0, 0, 0),
        )
    base = image.convert("RGBA")
    base.alpha_composite(layer)
    image.paste(base.convert("RGB"))
    return image


def _fit(line: str, width: Callable[[str], float], room: float) -> str:
    """``line``, or its longest head that fits ``room`` followed by an ellipsis."""
    if width(line) <= room:
        return line
    while line and width(line + "…") > room:
        line = line[:-1]
    return line + "…"


def open_jpeg(jpeg: bytes) -> Image.Image:
    """Decode JPEG bytes to an RGB image."""
    return Image.open(io.BytesIO(jpeg)).convert("RGB")


def to_jpeg(image: Image.Image, *, quality: int = 85) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
