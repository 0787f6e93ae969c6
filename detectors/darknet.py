"""Convert Darknet YOLOv3/v4(-tiny) ``.cfg`` + ``.weights`` to ONNX, since OpenCV 5 no longer reads them.

The graph is built with the ``onnx`` helper API: convolution with batch norm folded in, LeakyReLU /
Mish / logistic activations, max-pooling with Darknet's right/bottom padding, nearest upsampling,
route (concatenation and channel groups) and shortcut layers. Each ``[yolo]`` head is decoded inside
the graph, so the output is ``(1, N, 5 + classes)``: cx, cy, w, h in input pixels, objectness and
class probabilities; ``detectors.backends.onnx`` reads that layout. The class names go into the
model's ``names`` metadata.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import DetectorError

logger = logging.getLogger(__name__)
OPSET = 13


def parse_cfg(text: str) -> list[dict[str, str]]:
    """Sections of a Darknet .cfg as dicts with a ``type`` key, in order."""
    sections: list[dict[str, str]] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append({"type": line.strip("[]").strip()})
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1][key.strip()] = value.strip()
    if not sections or sections[0]["type"] not in {"net", "network"}:
        raise DetectorError("Darknet cfg must start with a [net] section")
    return sections


class _Weights:
    def __init__(self, data: bytes) -> None:
        major, minor, _ = np.frombuffer(data[:12], np.int32)
        header = 20 if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000 else 16
        self.values = np.frombuffer(data[header:], np.float32)
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        if self.pos + n > len(self.values):
            raise DetectorError("weights file is shorter than the cfg needs (cfg and weights do not match)")
        out = self.values[self.pos : self.pos + n]
        self.pos += n
        return out


class _Graph:
    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def const(self, value: np.ndarray, base: str = "c") -> str:
        name = self.name(base)
        self.inits.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _activation(g: _Graph, x: str, kind: str) -> str:
    if kind == "linear":
        return x
    if kind == "leaky":
        return g.op("LeakyRelu", [x], alpha=0.1)
    if kind == "relu":
        return g.op("Relu", [x])
    if kind == "logistic":
        return g.op("Sigmoid", [x])
    if kind == "mish":
        return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x])])])
    if kind == "swish":
        return g.op("Mul", [x, g.op("Sigmoid", [x])])
    raise DetectorError(f"Darknet activation {kind!r} is not supported")


def _yolo_head(g: _Graph, x: str, sec: dict[str, str], *, shape: tuple[int, int, int], size: int) -> str:
    _, h, w = shape
    nc = int(sec["classes"])
    mask = [int(v) for v in sec["mask"].split(",")]
    anchors = np.array([float(v) for v in sec["anchors"].split(",")], np.float32).reshape(-1, 2)[mask]
    na = len(mask)
    scale = float(sec.get("scale_x_y", "1"))
    t = g.op("Reshape", [x, g.const(np.array([1, na, 5 + nc, h, w], np.int64))])
    t = g.op("Transpose", [t], perm=[0, 1, 3, 4, 2])

    def part(start: int, end: int) -> str:
        return g.op("Slice", [t, g.const(np.array([start], np.int64)), g.const(np.array([end], np.int64)),
                              g.const(np.array([4], np.int64))])

    gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    grid = np.stack([gx, gy], axis=-1)[None, None]
    stride = np.array([size / w, size / h], np.float32)
    xy = g.op("Sigmoid", [part(0, 2)])
    if scale != 1.0:
        xy = g.op("Add", [g.op("Mul", [xy, g.const(np.float32(scale))]), g.const(np.float32(-(scale - 1) / 2))])
    xy = g.op("Mul", [g.op("Add", [xy, g.const(grid)]), g.const(stride)])
    wh = g.op("Mul", [g.op("Exp", [part(2, 4)]), g.const(anchors.reshape(1, na, 1, 1, 2))])
    rest = g.op("Sigmoid", [part(4, 5 + nc)])
    cat = g.op("Concat", [xy, wh, rest], axis=-1)
    return g.op("Reshape", [cat, g.const(np.array([1, na * h * w, 5 + nc], np.int64))])


def cfg_warnings(sections: list[dict[str, str]]) -> list[str]:
    """Known mistakes in published cfg files that convert without error but give wrong boxes.

    The widely copied ``yolov3-tiny.cfg`` gives its second (26×26) head the anchors of mask ``0,1,2``,
    while the published ``yolov3-tiny.weights`` were trained with ``1,2,3``: boxes come out about half
    their size. Weights trained with the cfg as it stands are right, so this is a warning, not a fix."""
    heads = [sec for sec in sections[1:] if sec.get("type") == "yolo"]
    masks = [sec.get("mask", "").replace(" ", "") for sec in heads]
    anchors = [len(sec.get("anchors", "").split(",")) for sec in heads]
    if masks == ["3,4,5", "0,1,2"] and anchors == [12, 12]:
        return [
            "this looks like the published yolov3-tiny.cfg, whose second [yolo] section says mask = 0,1,2: "
            "the published yolov3-tiny.weights were trained with mask = 1,2,3 and give boxes of half size "
            "with it; set mask = 1,2,3 there unless these weights were trained with this cfg"
        ]
    return []


def convert(
    cfg_text: str, weights: bytes, *, names: list[str] | None = None, input_size: int | None = None
) -> Any:
    """Build the ONNX ``ModelProto`` of a Darknet network."""
    from onnx import TensorProto, checker, helper

    sections = parse_cfg(cfg_text)
    for warning in cfg_warnings(sections):
        logger.warning("Darknet cfg: %s", warning)
    net = sections[0]
    size = int(input_size or net.get("width", 416))
    channels = int(net.get("channels", 3))
    if size % 32:
        raise DetectorError(f"input size {size} must be a multiple of 32")
    g = _Graph()
    w = _Weights(weights)
    outputs: list[str] = []
    shapes: list[tuple[int, int, int]] = []
    names_out: list[str] = []
    x, shape = "images", (channels, size, size)
    classes = None
    for index, sec in enumerate(sections[1:]):
        kind = sec["type"]
        if kind == "convolutional":
            c, h, wd = shape
            n, k = int(sec["filters"]), int(sec["size"])
            stride = int(sec.get("stride", 1))
            groups = int(sec.get("groups", 1))
            pad = int(sec.get("padding", k // 2 if int(sec.get("pad", 0)) else 0))
            if int(sec.get("batch_normalize", 0)):
                bias, gamma, mean, var = (w.take(n) for _ in range(4))
                kernel = w.take(n * (c // groups) * k * k).reshape(n, c // groups, k, k)
                factor = gamma / (np.sqrt(var) + 1e-6)
                kernel = kernel * factor[:, None, None, None]
                bias = bias - mean * factor
            else:
                bias = w.take(n)
                kernel = w.take(n * (c // groups) * k * k).reshape(n, c // groups, k, k)
            x = g.op("Conv", [x, g.const(kernel.astype(np.float32), "w"), g.const(bias.astype(np.float32), "b")],
                     kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=groups)
            x = _activation(g, x, sec.get("activation", "logistic"))
            shape = (n, (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1)
        elif kind == "maxpool":
            c, h, wd = shape
            k = int(sec["size"])
            stride = int(sec.get("stride", 1))
            padding = int(sec.get("padding", k - 1))
            begin, end = padding // 2, padding - padding // 2
            x = g.op("MaxPool", [x], kernel_shape=[k, k], strides=[stride, stride], pads=[begin, begin, end, end])
            shape = (c, (h + padding - k) // stride + 1, (wd + padding - k) // stride + 1)
        elif kind == "upsample":
            s = int(sec.get("stride", 2))
            x = g.op("Resize", [x, "", g.const(np.array([1, 1, s, s], np.float32))], mode="nearest",
                     coordinate_transformation_mode="asymmetric", nearest_mode="floor")
            shape = (shape[0], shape[1] * s, shape[2] * s)
        elif kind == "route":
            refs = [int(v) for v in sec["layers"].split(",")]
            refs = [r if r >= 0 else index + r for r in refs]
            groups, group_id = int(sec.get("groups", 1)), int(sec.get("group_id", 0))
            parts = []
            for r in refs:
                c = shapes[r][0]
                src = names_out[r]
                if groups > 1:
                    step = c // groups
                    src = g.op("Slice", [src, g.const(np.array([group_id * step], np.int64)),
                                         g.const(np.array([(group_id + 1) * step], np.int64)),
                                         g.const(np.array([1], np.int64))])
                parts.append((src, c // groups))
            x = parts[0][0] if len(parts) == 1 else g.op("Concat", [p[0] for p in parts], axis=1)
            shape = (sum(p[1] for p in parts), shapes[refs[0]][1], shapes[refs[0]][2])
        elif kind == "shortcut":
            ref = int(sec["from"])
            ref = ref if ref >= 0 else index + ref
            x = _activation(g, g.op("Add", [x, names_out[ref]]), sec.get("activation", "linear"))
        elif kind == "yolo":
            classes = int(sec["classes"])
            outputs.append(_yolo_head(g, x, sec, shape=shape, size=size))
        else:
            raise DetectorError(f"Darknet layer [{kind}] (section {index + 1}) is not supported")
        names_out.append(x)
        shapes.append(shape)
    if w.pos != len(w.values):
        raise DetectorError(f"weights file has {len(w.values) - w.pos} values the cfg does not use")
    if not outputs or classes is None:
        raise DetectorError("the cfg has no [yolo] layer")
    final = outputs[0] if len(outputs) == 1 else g.op("Concat", outputs, axis=1)
    g.nodes.append(helper.make_node("Identity", [final], ["output"]))
    graph = helper.make_graph(
        g.nodes, "darknet",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, None, 5 + classes])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="gridpatrol")
    model.ir_version = 8
    labels = names if names else [f"class{i}" for i in range(classes)]
    if len(labels) != classes:
        raise DetectorError(f"names file has {len(labels)} names but the model has {classes} classes")
    meta = {"names": repr(dict(enumerate(labels))), "imgsz": repr([size, size]), "format": "darknet"}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    checker.check_model(model)
    return model


def import_darknet(
    cfg_path: Path | str,
    weights_path: Path | str,
    out_path: Path | str,
    *,
    names_path: Path | str | None = None,
    input_size: int = 416,
) -> Path:
    """Convert ``cfg_path`` + ``weights_path`` to an ONNX file at ``out_path`` and return it."""
    try:
        import onnx
    except ImportError as err:
        raise DetectorError("importing Darknet models needs the onnx package: pip install onnx") from err
    cfg_path, weights_path, out_path = Path(cfg_path), Path(weights_path), Path(out_path)
    for p in (cfg_path, weights_path):
        if not p.is_file():
            raise DetectorError(f"Darknet file not found: {p}")
    names = None
    if names_path is not None:
        names = [n.strip() for n in Path(names_path).read_text().splitlines() if n.strip()]
    model = convert(cfg_path.read_text(), weights_path.read_bytes(), names=names, input_size=input_size)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(out_path.suffix + ".part")
    onnx.save(model, str(tmp))
    tmp.replace(out_path)
    logger.info("converted %s + %s to %s", cfg_path, weights_path, out_path)
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert Darknet .cfg + .weights to ONNX.")
    parser.add_argument("cfg")
    parser.add_argument("weights")
    parser.add_argument("out")
    parser.add_argument("--names", default=None)
    parser.add_argument("--input-size", type=int, default=416)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    import_darknet(args.cfg, args.weights, args.out, names_path=args.names, input_size=args.input_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
