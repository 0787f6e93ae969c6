"""INT8 versions of YOLO ONNX models: onnxruntime static quantisation, calibrated on real frames.

The body of the network (convolutions, activations, pooling) runs in INT8 with QDQ nodes that
onnxruntime fuses into integer kernels: about twice the frames per second of FP32 on one CPU core
(bench/README.md). Two parts stay in FP32 because their numbers carry the answer: the box decoding
after the last convolutions (sigmoid, exp, anchor and grid arithmetic, whose outputs are pixels) and
the last convolution of each head (its logits become scores and box sizes; 8 bits cost box accuracy).
Weights are quantised per output channel, activations with ranges measured on ``calibration``
blobs, which must be prepared exactly as the backend prepares frames (``backends.onnx.letterbox``).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import DetectorError

logger = logging.getLogger(__name__)
#: metadata key of a quantised model; ``precision()`` reads it
PRECISION_KEY = "precision"


def _fp32_nodes(model: Any) -> list[str]:
    """Names of the nodes kept in FP32: everything after the last convolutions and those convolutions."""
    producer = {out: node for node in model.graph.node for out in node.output}
    feeds_conv: set[str] = set()
    stack = [n for n in model.graph.node if n.op_type == "Conv"]
    while stack:
        node = stack.pop()
        if node.name in feeds_conv:
            continue
        feeds_conv.add(node.name)
        stack.extend(producer[i] for i in node.input if i in producer)
    decode = [n for n in model.graph.node if n.name not in feeds_conv]
    heads = {
        producer[i].name
        for n in decode
        for i in n.input
        if i in producer and producer[i].name in feeds_conv and producer[i].op_type == "Conv"
    }
    return [n.name for n in decode] + sorted(heads)


def precision(model: Any) -> str:
    """``int8`` for a model this module made, ``fp32`` otherwise."""
    meta = {p.key: p.value for p in model.metadata_props}
    return meta.get(PRECISION_KEY, "fp32")


class _DropAdvice(logging.Filter):
    """onnxruntime's quantiser advises (on the root logger) a pre-processing step that only adds shape
    information our models already carry."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


class _Blobs:
    """onnxruntime's CalibrationDataReader protocol over an iterable of NCHW blobs."""

    def __init__(self, name: str, blobs: Iterable[np.ndarray]) -> None:
        self.name = name
        self.blobs: Iterator[np.ndarray] = iter(blobs)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        blob = next(self.blobs, None)
        if blob is None:
            return None
        self.count += 1
        return {self.name: blob}

    def rewind(self) -> None:  # onnxruntime asks for it with some calibration methods; one pass suffices
        pass


def quantize_int8(src: Path, dst: Path, calibration: Iterable[np.ndarray], *, note: str = "") -> Path:
    """Write the INT8 version of the FP32 model ``src`` to ``dst``; returns ``dst``.

    ``calibration`` yields input blobs (1, 3, H, W) float32 as the backend feeds the model. The class
    names and other metadata are carried over; ``precision`` becomes ``int8`` and ``calibration`` says
    what the ranges were measured on (``note``).
    """
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError as err:
        raise DetectorError("quantising needs onnx and onnxruntime: pip install onnx onnxruntime") from err
    try:
        model = onnx.load(str(src))
    except Exception as err:  # onnx raises DecodeError and friends for a file that is no model
        raise DetectorError(f"{src}: not an ONNX model ({err})") from err
    if precision(model) != "fp32":
        raise DetectorError(f"{src} is already {precision(model)}: quantise its FP32 original")
    for k, node in enumerate(model.graph.node):  # our Darknet importer leaves nodes unnamed
        node.name = node.name or f"{node.op_type.lower()}_{k}"
    keep_fp32 = _fp32_nodes(model)
    meta = {p.key: p.value for p in model.metadata_props}
    reader = _Blobs(model.graph.input[0].name, calibration)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gridpatrol-quant-") as tmp:
        named = Path(tmp) / "named.onnx"
        onnx.save(model, str(named))
        partial = Path(tmp) / "int8.onnx"
        quiet = _DropAdvice()
        logging.getLogger().addFilter(quiet)
        try:
            quantize_static(
                str(named),
                str(partial),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=keep_fp32,
            )
        except Exception as err:  # onnxruntime's quantiser raises plain errors for unsupported graphs
            raise DetectorError(f"cannot quantise {src}: {err}") from err
        finally:
            logging.getLogger().removeFilter(quiet)
        if reader.count == 0:
            raise DetectorError("no calibration frames: give clips with at least one decodable frame")
        quantized = onnx.load(str(partial))
    del quantized.metadata_props[:]
    meta[PRECISION_KEY] = "int8"
    meta["calibration"] = f"{reader.count} frames" + (f" from {note}" if note else "")
    for key, value in meta.items():
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(quantized, str(dst))
    logger.info(
        "quantised %s -> %s (%d calibration frames, %d nodes kept in FP32)",
        src,
        dst,
        reader.count,
        len(keep_fp32),
    )
    return dst
