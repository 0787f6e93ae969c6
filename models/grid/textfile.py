"""Reading an import file whatever encoding Excel or a Chinese Windows saved it in.

Tried in order: a byte-order mark (UTF-8, UTF-16LE/BE: Excel's "Unicode text"), then strict UTF-8, then
GB18030 (a superset of GBK/GB2312, what Excel writes for "CSV" on a Chinese system). Anything that decodes
to control characters (NUL, ...) is taken for a binary file and refused with an error naming the file.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path

from models.errors import InvalidInput

#: byte-order marks, longest first, with the codec that strips the mark and the name we report
_BOMS: tuple[tuple[bytes, str, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8 with BOM"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16LE with BOM"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16BE with BOM"),
)
_FALLBACKS: tuple[tuple[str, str], ...] = (("utf-8", "UTF-8"), ("gb18030", "GB18030"))

#: C0 controls and DEL except tab, line feed, form feed and carriage return: never in a text file we import
_BINARY = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str  # as shown to people: "UTF-8", "UTF-8 with BOM", "UTF-16LE with BOM", "GB18030"


def decode_text(data: bytes, *, name: str) -> DecodedText:
    """Decode an import file's bytes; ``name`` (the file) is the ``where`` of the error when nothing fits."""
    attempts = [(codec, label) for bom, codec, label in _BOMS if data.startswith(bom)] or list(_FALLBACKS)
    for codec, label in attempts:
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        if not _BINARY.search(text):
            return DecodedText(text=text, encoding=label)
    raise InvalidInput(
        "is not a text file in UTF-8, UTF-16 with a byte-order mark or GB18030/GBK "
        "(save it from Excel as 'CSV UTF-8' or 'Unicode text')",
        where=name,
    )


def read_text_file(path: Path) -> DecodedText:
    """A file's text and the encoding it was read in; OSError passes through (the caller names the file)."""
    return decode_text(path.read_bytes(), name=str(path))
