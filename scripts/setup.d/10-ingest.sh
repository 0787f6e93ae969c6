#!/usr/bin/env bash
# ingest (issue 3): the ipycam ONVIF simulator in its own venv (.venv-ipycam). ipycam pulls the
# non-headless opencv-python, which must not meet the project's opencv-python-headless in .venv.
# Idempotent: a stamp file makes a second run instant.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=.venv-ipycam
STAMP=$VENV/.ipycam-1.3.0
if [ -f "$STAMP" ]; then
  exit 0
fi
PY=$(command -v python3.11 || command -v python3)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
echo "*" > "$VENV/.gitignore"  # keep the venv out of git without touching the shared .gitignore
"$VENV/bin/pip" install -q --disable-pip-version-check "ipycam==1.3.0"
"$VENV/bin/python" -c "import ipycam" && touch "$STAMP"
echo "[setup] ipycam ready in $VENV" >&2
